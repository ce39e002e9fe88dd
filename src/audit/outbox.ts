// The audit outbox (SPEC §14.6: every transition has its audit record). A
// transition's audit inputs are written into its own fenced etcd transaction,
// under the chain that is to record them; the writer records them in its chain
// and then deletes the entry. A kill between the commit and the record leaves
// the entry, and the same chain records it at its next start: its log
// remembers the eventIds it already holds, so an entry recorded before the kill
// and not yet deleted is not recorded twice.
//
// Another replica's entries are left to it (its spool is its own chain), unless
// one has waited longer than `adoptAfterMs`: its chain has not come back, and
// the leader records it in its own chain, saying whose it was.
import type { AuditInput } from './record.ts';

/** The audit records of one committed write, as etcd keeps them until they are recorded. */
export interface AuditOutboxEntry {
  /** The chain (AuditLog.chainId) that is to record them. */
  chainId: string;
  /** When the write committed (ISO 8601). */
  committedAt: string;
  records: AuditInput[];
}

export interface StoredAuditOutboxEntry {
  key: string;
  modRevision: string;
  entry?: AuditOutboxEntry;
  /** Why the stored value is not an entry (it stays, for a person to look at). */
  unreadable?: string;
}

/** Where the entries live: AttemptStore in etcd. */
export interface AuditOutboxStore {
  /** Entries of one chain, or of every chain when `chainId` is undefined, oldest key first. */
  pendingAuditOutbox(chainId: string | undefined, limit: number): Promise<StoredAuditOutboxEntry[]>;
  /** Deletes an entry if it is still the one read (another adopter may have taken it). */
  removeAuditOutbox(entry: Pick<StoredAuditOutboxEntry, 'key' | 'modRevision'>): Promise<boolean>;
}

export interface AuditOutboxLog {
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface AuditOutboxOptions {
  store: AuditOutboxStore;
  audit: { record(input: AuditInput): Promise<unknown> };
  chainId: string;
  log: AuditOutboxLog;
  now?: () => Date;
  /** How long another chain's entry waits before the leader adopts it. */
  adoptAfterMs?: number;
  batchSize?: number;
}

export const DEFAULT_ADOPT_AFTER_MS = 10 * 60_000;

/** Records one entry's inputs in the chain, then deletes the entry; false when the chain could not record them yet. */
export async function recordEntry(options: Pick<AuditOutboxOptions, 'store' | 'audit'>, stored: StoredAuditOutboxEntry, adoptedFrom?: string): Promise<boolean> {
  const { entry } = stored;
  if (!entry) return false;
  for (const input of entry.records) {
    await options.audit.record(adoptedFrom === undefined ? input
      : { ...input, metadata: { ...input.metadata, adoptedFromChain: adoptedFrom, committedAt: entry.committedAt } });
  }
  return options.store.removeAuditOutbox(stored);
}

export class AuditOutbox {
  readonly #options: AuditOutboxOptions;
  readonly #said = new Set<string>();
  #running: Promise<number> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: AuditOutboxOptions) {
    this.#options = options;
  }

  /**
   * Records this chain's entries and, when `adopt` (the leader), other chains'
   * entries older than adoptAfterMs. Resolves to how many entries it recorded.
   * One drain at a time; a failure of the audit log stops it (the entries stay).
   */
  drain(adopt = false): Promise<number> {
    this.#running ??= this.#drain(adopt).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Drains every `intervalMs`; `adopt()` says whether this replica may adopt (leads). */
  start(intervalMs: number, adopt: () => boolean): void {
    const tick = (): void => {
      this.#timer = setTimeout(() => {
        void this.drain(adopt())
          .catch((error: Error) => this.#options.log.warn('Could not record the audit outbox; retrying', { error: error.message }))
          .finally(tick);
      }, intervalMs);
      this.#timer.unref?.();
    };
    tick();
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  async #drain(adopt: boolean): Promise<number> {
    const { store, chainId, batchSize = 100 } = this.#options;
    let recorded = 0;
    for (const stored of await store.pendingAuditOutbox(chainId, batchSize)) {
      if (this.#readable(stored) && (await recordEntry(this.#options, stored))) recorded++;
    }
    if (!adopt) return recorded;
    const now = (this.#options.now ?? (() => new Date()))().getTime();
    const adoptAfter = this.#options.adoptAfterMs ?? DEFAULT_ADOPT_AFTER_MS;
    for (const stored of await store.pendingAuditOutbox(undefined, batchSize)) {
      if (!this.#readable(stored) || stored.entry!.chainId === chainId) continue;
      if (now - Date.parse(stored.entry!.committedAt) < adoptAfter) continue;
      if (await recordEntry(this.#options, stored, stored.entry!.chainId)) {
        recorded++;
        this.#options.log.warn('Adopted another chain\'s audit records: its replica has not recorded them', {
          key: stored.key, chainId: stored.entry!.chainId, committedAt: stored.entry!.committedAt,
        });
      }
    }
    return recorded;
  }

  /** An unreadable entry is said once and left in place: nothing may silently drop an audit record. */
  #readable(stored: StoredAuditOutboxEntry): boolean {
    if (stored.entry) return true;
    if (!this.#said.has(stored.key)) {
      this.#said.add(stored.key);
      this.#options.log.error('Audit outbox entry is unreadable; left in etcd for a person to look at', { key: stored.key, problem: stored.unreadable });
    }
    return false;
  }
}
