// The audit outbox (SPEC §14.6: every transition has its audit record). A
// transition's audit inputs are written into its own fenced etcd transaction,
// under the chain that is to record them; the writer records them in its chain
// and then deletes the entry. A kill between the commit and the record leaves
// the entry, and the same chain records it at its next start: its log
// remembers the eventIds it already holds, so an entry recorded before the kill
// and not yet deleted is not recorded twice.
//
// An entry that cannot be read (or holds a record the chain must not take) is
// moved to the audit outbox's dead letters, so it never holds the others back.
//
// Another replica's entries are left to it (its spool is its own chain), unless
// one has waited longer than `adoptAfterMs`: its chain has not come back, and
// the leader records it in its own chain, saying whose it was.
import { ACTION_TYPES, LEVELS, MODULES } from './record.ts';
import type { AuditInput, AuditOutboxEntry, AuditOutboxStore, StoredAuditOutboxEntry } from '../ports/audit.ts';

export type { AuditOutboxEntry, AuditOutboxStore, StoredAuditOutboxEntry } from '../ports/audit.ts';


const isString = (value: unknown): value is string => typeof value === 'string';

/** Why `input` cannot be recorded as it is, naming the field; undefined when it can. */
function recordProblem(input: unknown, at: string): string | undefined {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return `${at}: not an object`;
  const r = input as Record<string, unknown>;
  if (!MODULES.includes(r.module as never)) return `${at}.module: not one of the audit modules`;
  if (!ACTION_TYPES.includes(r.actionType as never)) return `${at}.actionType: not one of the audit action types`;
  if (!isString(r.message)) return `${at}.message: not a string`;
  if (!isString(r.eventId)) return `${at}.eventId: not a string (an outbox record must be idempotent)`;
  if (r.level !== undefined && !LEVELS.includes(r.level as never)) return `${at}.level: not one of ${LEVELS.join(', ')}`;
  for (const field of ['correlationId', 'reasoning', 'trace_id', 'span_id'] as const) {
    if (r[field] !== undefined && !isString(r[field])) return `${at}.${field}: not a string`;
  }
  if (r.metadata !== undefined && (r.metadata === null || typeof r.metadata !== 'object' || Array.isArray(r.metadata))) return `${at}.metadata: not an object`;
  return undefined;
}

/** Reads a stored entry: the entry, or why it cannot be recorded (a bad value must not reach the hash chain). */
export function readAuditOutboxEntry(raw: string): { entry: AuditOutboxEntry } | { unreadable: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return { unreadable: `value: not JSON (${err instanceof Error ? err.message : String(err)})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { unreadable: 'value: not an object' };
  const v = value as Record<string, unknown>;
  if (!isString(v.chainId)) return { unreadable: 'chainId: not a string' };
  if (!isString(v.committedAt) || Number.isNaN(Date.parse(v.committedAt))) return { unreadable: 'committedAt: not a date' };
  if (!Array.isArray(v.records)) return { unreadable: 'records: not a list' };
  for (const [i, record] of v.records.entries()) {
    const problem = recordProblem(record, `records[${i}]`);
    if (problem) return { unreadable: problem };
  }
  return { entry: value as AuditOutboxEntry };
}

/** Where the entries live: AttemptStore in etcd. */

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
  #running: Promise<number> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

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
    this.#stopped = false;
    const tick = (): void => {
      // A drain that was running when stop() came must not arm the next one.
      if (this.#stopped) return;
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
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  async #drain(adopt: boolean): Promise<number> {
    const { store, chainId, batchSize = 100 } = this.#options;
    let recorded = 0;
    for (const stored of await store.pendingAuditOutbox(chainId, batchSize)) {
      if ((await this.#readable(stored)) && (await recordEntry(this.#options, stored))) recorded++;
    }
    if (!adopt) return recorded;
    const now = (this.#options.now ?? (() => new Date()))().getTime();
    const adoptAfter = this.#options.adoptAfterMs ?? DEFAULT_ADOPT_AFTER_MS;
    for (const stored of await store.pendingAuditOutbox(undefined, batchSize)) {
      if (!(await this.#readable(stored)) || stored.entry!.chainId === chainId) continue;
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

  /**
   * An unreadable entry is moved aside to the audit outbox's dead letters and
   * said as an error, so it never fills a drain's page and holds the others
   * back; nothing may silently drop an audit record, so the value is kept.
   */
  async #readable(stored: StoredAuditOutboxEntry): Promise<boolean> {
    if (stored.entry) return true;
    const at = (this.#options.now ?? (() => new Date()))().toISOString();
    const reason = stored.unreadable ?? 'value: unreadable';
    const deadKey = await this.#options.store.deadLetterAuditOutbox({ key: stored.key, raw: stored.raw ?? '', reason, at, modRevision: stored.modRevision });
    if (deadKey) this.#options.log.error('Audit outbox entry is unreadable; moved aside for a person to look at', { key: stored.key, deadKey, problem: reason });
    return false;
  }
}
