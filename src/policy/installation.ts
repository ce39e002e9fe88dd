// Which installation acts on an Application, when several watch its namespace
// (README "Two installations on one cluster"). Exactly one may: two would each
// open a rollback PR, each fail I7 on the other's, and both abort. What decides
// is a mark both can read in the cluster, never in etcd (each has its own prefix):
//
// - an app a RollbackPolicy governs belongs to the installation the policy
//   names in spec.installation, else to the one its status.installation says
//   claimed it (the first to write it, with the resourceVersion it read: the API
//   server lets one of two racing claims through; an installation claims the
//   policies of the namespaces WATCH_NAMESPACES names, and, watching every
//   namespace, those that select one of its Applications);
// - an app no policy governs (the opt-in label, MONITORED_APPS) belongs to the
//   holder of its claim Lease, taken by the first installation that sees it
//   Degraded (integrations/app-claims.ts).
//
// A claim is never taken over on its own: the other installation cannot see
// the claimer's attempts, so a takeover while one is in flight would be the
// double PR this prevents. A human moves a policy with spec.installation, an
// app by deleting its Lease. Pure.
import type { RollbackPolicy } from './settings.ts';

/** Who acts on an app or a policy, as this installation sees it. */
export type Ownership =
  | { kind: 'ours' }
  | { kind: 'theirs'; installation: string; via: OwnerMark }
  /** Nobody has claimed it yet: nobody acts until a claim lands (this installation tries to take it). */
  | { kind: 'unclaimed' };

/** Where the owner was read: a policy's spec.installation or status.installation, or an app's claim Lease. */
export type OwnerMark = 'spec.installation' | 'status.installation' | 'Lease';

/** The installation that acts on a policy's apps, and where that was read; undefined while nobody has claimed it. */
export function policyOwner(policy: Pick<RollbackPolicy, 'spec' | 'claimedBy'>): { installation: string; via: OwnerMark } | undefined {
  if (policy.spec.installation) return { installation: policy.spec.installation, via: 'spec.installation' };
  if (policy.claimedBy) return { installation: policy.claimedBy, via: 'status.installation' };
  return undefined;
}

/** The policy's ownership as `installation` sees it. */
export function policyOwnership(policy: Pick<RollbackPolicy, 'spec' | 'claimedBy'>, installation: string): Ownership {
  return ownership(policyOwner(policy), installation);
}

/** An app no policy governs, by the holder of its claim Lease (undefined: no Lease, or not read yet). */
export function claimOwnership(holder: string | undefined, installation: string): Ownership {
  return ownership(holder === undefined ? undefined : { installation: holder, via: 'Lease' }, installation);
}

function ownership(owner: { installation: string; via: OwnerMark } | undefined, installation: string): Ownership {
  if (!owner) return { kind: 'unclaimed' };
  return owner.installation === installation ? { kind: 'ours' } : { kind: 'theirs', installation: owner.installation, via: owner.via };
}

/**
 * What the installation that does not act says, once: the Event's and the log line's words, e.g. "Ignored
 * RollbackPolicy shop/apps: installation team-a acts on it (status.installation); installation team-b neither
 * acts on its Applications nor writes its status".
 */
export function ignoredMessage(object: { kind: 'RollbackPolicy' | 'Application'; namespace: string; name: string }, owner: Extract<Ownership, { kind: 'theirs' }>, installation: string): string {
  const what = object.kind === 'RollbackPolicy' ? 'neither acts on its Applications nor writes its status' : 'does not act on it';
  return `Ignored ${object.kind} ${object.namespace}/${object.name}: installation ${owner.installation} acts on it (${owner.via}); installation ${installation} ${what}`;
}
