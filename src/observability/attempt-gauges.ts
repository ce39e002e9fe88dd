// What the attempt gauges (ai_operator_active_rollbacks, ai_operator_fsm_state)
// are computed from (storedGauges in metrics.ts): the etcd record, the source of
// truth, rather than the transitions this process happened to see — so a
// restarted operator shows them at once, and an app whose attempt ended loses
// its series.
//
// What it reads, per refresh, for A active attempts: A state keys (the small
// `{state, since, reason, version}` value) — never the ended attempts' records,
// never a write. What never changes about an attempt (its app's name and
// environment) is read once per correlationId from its record and kept; the
// active correlationId of an app comes from the caller's full read of the apps
// index, or is read (one key) for an app whose active key changed since.
import type { Environment } from '../fsm/record.ts';
import type { AttemptStore } from '../store/attempt-store.ts';
import type { StoredAttemptState } from './metrics.ts';

interface AttemptMeta {
  app: string;
  environment: Environment;
}

export class AttemptGauges {
  readonly #store: Pick<AttemptStore, 'getState' | 'getAttempt' | 'activeId'>;
  readonly #meta = new Map<string, AttemptMeta>();
  readonly #activeId = new Map<string, string>();
  /** Bumped by forget(): an id read while it moved is not kept. */
  #changes = 0;

  constructor(store: Pick<AttemptStore, 'getState' | 'getAttempt' | 'activeId'>) {
    this.#store = store;
  }

  /** Active correlationIds from a full read of the apps index. */
  learn(active: ReadonlyArray<{ appKey: string; correlationId: string }>): void {
    this.#activeId.clear();
    for (const { appKey, correlationId } of active) this.#activeId.set(appKey, correlationId);
  }

  /** The app's active key changed: its correlationId is read again. */
  forget(appKey: string): void {
    this.#changes++;
    this.#activeId.delete(appKey);
  }

  /** Reads the state of the active attempt of each app key. */
  async read(appKeys: Iterable<string>): Promise<StoredAttemptState[]> {
    const before = this.#changes;
    const found = await Promise.all([...appKeys].map(async (appKey): Promise<StoredAttemptState | undefined> => {
      const known = this.#activeId.get(appKey);
      const correlationId = known ?? (await this.#store.activeId(appKey));
      if (correlationId === undefined) return undefined;
      if (known === undefined && this.#changes === before) this.#activeId.set(appKey, correlationId);
      const meta = this.#meta.get(correlationId);
      if (meta) {
        const state = await this.#store.getState(appKey, correlationId);
        return state ? { ...meta, state: state.state, reason: state.reason } : undefined;
      }
      const stored = await this.#store.getAttempt(appKey, correlationId);
      if (!stored) return undefined;
      const { record } = stored;
      this.#meta.set(correlationId, { app: record.app.name, environment: record.environment });
      return { app: record.app.name, environment: record.environment, state: record.state, reason: record.reason };
    }));
    // Keep what is known of the attempts still active only.
    const live = new Set(this.#activeId.values());
    for (const id of this.#meta.keys()) if (!live.has(id)) this.#meta.delete(id);
    return found.filter((a): a is StoredAttemptState => a !== undefined);
  }
}
