// The last confirmation that the API server enforces who may approve
// (ports/kubernetes.ts EnforcementConfirmation), kept in etcd: a restarted
// operator picks up since when enforcement has held instead of starting the clock
// again, which would make every approval written before the restart look
// unchecked. Written by whichever replica sees a change (not fenced: any replica's
// reading of the same objects is as good as another's), read once at start.
import { KEYS } from '../api/etcd.ts';
import type { EnforcementConfirmation, EnforcementMemoryPort } from '../ports/kubernetes.ts';
import type { KV } from './kv.ts';

export class EnforcementMemory implements EnforcementMemoryPort {
  readonly #kv: KV;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  async load(): Promise<EnforcementConfirmation | undefined> {
    const kept = await this.#kv.get(KEYS.approvalEnforcement);
    if (!kept) return undefined;
    try {
      const value = JSON.parse(kept.value) as EnforcementConfirmation;
      // Anything unreadable is no confirmation: enforcement is confirmed afresh (later, never wrongly earlier).
      return typeof value.since === 'string' && typeof value.policy?.uid === 'string' && typeof value.binding?.uid === 'string' && typeof value.namespaces === 'object'
        ? value : undefined;
    } catch {
      return undefined;
    }
  }

  async save(confirmation: EnforcementConfirmation | undefined): Promise<void> {
    await this.#kv.txn(confirmation === undefined
      ? { compares: [], puts: [], deletes: [KEYS.approvalEnforcement] }
      : { compares: [], puts: [{ key: KEYS.approvalEnforcement, value: JSON.stringify(confirmation) }], deletes: [] });
  }
}
