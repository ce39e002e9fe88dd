// Claims on Applications that no RollbackPolicy governs (policy/installation.ts):
// one Lease per claimed app, in its namespace, held by the installation that
// first saw it Degraded. A mark in the cluster, so installations with separate
// etcd prefixes both read it; the API server lets exactly one create it.
import type { AppRef } from '../fsm/record.ts';

export interface AppClaimPort {
  /**
   * The installation holding the app's claim, creating the claim for `installation` when there is none
   * (owned by the Application, so it goes with it). Reads it when someone else created it first.
   */
  claim(app: { ref: AppRef; uid?: string }, installation: string): Promise<string>;
}
