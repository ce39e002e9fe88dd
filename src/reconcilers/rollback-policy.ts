// RollbackPolicies, as declared in Git: read through RollbackPolicyPort (whose
// watch, integrations/rollback-policies.ts, keeps them in a cache) and consulted
// by the application reconciler (which policy governs an app, with what
// settings). Each policy's status says how many Applications it matches,
// whether it is Ready, and which apps another policy also selects (a conflict:
// those get no attempt until a human resolves it). Level-based: the status is recomputed from the cache on
// every resync, never accumulated.
import type { Logger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { PolicyCondition, PolicyObject, RollbackPolicyPort, RollbackPolicyStatus } from '../ports/rollback-policies.ts';
import { applicationRefusal, type RefusalReason } from '../governance/repository.ts';
import { monitoringFor, selectingPolicies, type Defaults, type RollbackPolicy } from '../policy/settings.ts';
import type { MonitoredApp } from './application.ts';

/**
 * The policies that select each app, tallied per policy: an app one policy
 * selects is that policy's; one that several select is a conflict on each of
 * them, naming the others. Pure.
 */
export function tallies(apps: ApplicationView[], policies: RollbackPolicy[], allowedOwner?: string, githubHosts?: readonly string[], knownRefusal?: KnownRefusal): Map<string, PolicyTally> {
  const result = new Map<string, PolicyTally>();
  const tallyOf = (policy: RollbackPolicy) => {
    const key = `${policy.namespace}/${policy.name}`;
    const tally = result.get(key) ?? { matched: 0, refused: [], conflicts: [] };
    result.set(key, tally);
    return tally;
  };
  for (const app of apps) {
    const selecting = selectingPolicies(app, policies);
    if (selecting.length > 1) {
      for (const policy of selecting) tallyOf(policy).conflicts!.push({ name: app.ref.name, others: selecting.filter((p) => p !== policy).map((p) => p.name) });
      continue;
    }
    if (!selecting[0]) continue;
    const tally = tallyOf(selecting[0]);
    tally.matched++;
    const refusal = applicationRefusal(app, allowedOwner, githubHosts) ?? knownRefusal?.(app);
    if (refusal) tally.refused.push({ name: app.ref.name, reason: refusal.reason });
  }
  return result;
}

/** A refusal found by a read (the app's targetRevision resolved on GitHub), remembered by whoever read it. */
export type KnownRefusal = (app: ApplicationView) => { reason: RefusalReason; message: string } | undefined;

/** What a policy's status says of the Applications it governs. */
export interface PolicyTally {
  /** Applications this policy alone selects: it governs them. */
  matched: number;
  /** Applications this policy selects with others of its namespace: nobody governs them (SPEC §3). */
  conflicts?: Array<{ name: string; others: string[] }>;
  /** Governed Applications refused before any attempt: their repository is outside GITHUB_ORG, or their shape is not handled. */
  refused: Array<{ name: string; reason: RefusalReason }>;
  allowedOwner?: string;
}

const apiTime = (at: Date) => at.toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * The status a policy should have, or undefined when it has it already. A
 * condition's lastTransitionTime moves only when its status does. Pure.
 */
export function policyStatus(policy: PolicyObject, tally: PolicyTally, now: Date): RollbackPolicyStatus | undefined {
  const generation = policy.generation ?? 0;
  const names = (reason: RefusalReason) => tally.refused.filter((r) => r.reason === reason).map((r) => r.name).sort();
  const list = (apps: string[]) => `${apps.slice(0, 20).join(', ')}${apps.length > 20 ? ', …' : ''}`;
  const why: Record<RefusalReason, string> = {
    RepositoryOutsideOrg: `their repository outside GITHUB_ORG ${tally.allowedOwner}`,
    UnsupportedShape: 'their shape not handled yet (sources in several repositories, or a source hydrator)',
    TargetNotBranch: 'their spec.source.targetRevision a tag or a commit, not a branch',
    RepositoryNotFound: 'their repository not found on GitHub',
  };
  const present = (Object.keys(why) as RefusalReason[]).filter((reason) => names(reason).length > 0);
  const refused = present.flatMap(names);
  const refusal = refused.length === 0
    ? 'every governed Application\'s repository is within GITHUB_ORG'
    : present.map((reason) => `${names(reason).length} governed Application(s) refused, ${why[reason]}: ${list(names(reason))}`).join('; ');
  const refusedReason = present.join('And');
  const conflicts = [...tally.conflicts ?? []].sort((a, b) => a.name.localeCompare(b.name));
  const conflict = conflicts.length === 0
    ? 'no Application this policy selects is selected by another RollbackPolicy'
    : `${conflicts.length} Application(s) also selected by another RollbackPolicy of this namespace get no rollback until only one policy selects them: ${list(conflicts.map((c) => `${c.name} (also ${c.others.join(', ')})`))}`;
  const current = policy.status;
  const previous = (type: string) => current?.conditions?.find((c) => c.type === type);
  if (current?.matchedApplications === tally.matched && current.observedGeneration === generation && previous('ApplicationsRefused')?.message === refusal
    && previous('PolicyConflict')?.message === conflict) return undefined;
  const condition = (next: Omit<PolicyCondition, 'lastTransitionTime' | 'observedGeneration'>): PolicyCondition => {
    const before = previous(next.type);
    const since = before?.status === next.status && before.lastTransitionTime ? before.lastTransitionTime : apiTime(now);
    return { ...next, lastTransitionTime: since, observedGeneration: generation };
  };
  return {
    observedGeneration: generation,
    matchedApplications: tally.matched,
    conditions: [condition({
      type: 'Ready', status: 'True', reason: tally.matched > 0 ? 'ApplicationsMatched' : 'NoApplicationsMatched',
      message: `${tally.matched} Application(s) governed by this policy${policy.spec.suspend ? ' (suspended: no new attempts)' : ''}`,
    }), condition({
      type: 'ApplicationsRefused', status: refused.length > 0 ? 'True' : 'False',
      reason: refused.length > 0 ? refusedReason : 'NoneRefused', message: refusal,
    }), condition({
      type: 'PolicyConflict', status: conflicts.length > 0 ? 'True' : 'False',
      reason: conflicts.length > 0 ? 'SelectedByAnotherPolicy' : 'NoConflict', message: conflict,
    })],
  };
}

export interface RollbackPoliciesOptions {
  /** GITHUB_ORG, whose repositories alone the operator may open PRs on. */
  allowedOwner?: string;
  /** The hosts of that GitHub's repositories (governance/repository.ts githubHosts). */
  githubHosts?: readonly string[];
  /** Refusals the operator found by reading GitHub (a targetRevision that is no branch): counted as the others. */
  knownRefusal?: KnownRefusal;
  /** WATCH_NAMESPACES; policies elsewhere belong to another installation, which alone may judge and write their status. */
  namespaces?: string[];
  clock?: () => Date;
}

export class RollbackPolicies {
  private readonly objects: RollbackPolicyPort;
  private readonly defaults: Defaults;
  private readonly log: Logger;
  private readonly allowedOwner: string | undefined;
  private readonly githubHosts: readonly string[] | undefined;
  private readonly knownRefusal: KnownRefusal | undefined;
  private readonly namespaces: ReadonlySet<string> | undefined;
  private readonly clock: () => Date;

  constructor(objects: RollbackPolicyPort, defaults: Defaults, log: Logger, onChange: () => void, options: RollbackPoliciesOptions = {}) {
    this.objects = objects;
    this.defaults = defaults;
    this.allowedOwner = options.allowedOwner;
    this.githubHosts = options.githubHosts;
    this.knownRefusal = options.knownRefusal;
    this.namespaces = options.namespaces?.length ? new Set(options.namespaces) : undefined;
    this.clock = options.clock ?? (() => new Date());
    this.log = log;
    objects.onChange(onChange);
  }

  start(): Promise<void> {
    return this.objects.start();
  }

  stop(): Promise<void> {
    return this.objects.stop();
  }

  policies(): RollbackPolicy[] {
    return this.owned().map((o) => ({ name: o.name, namespace: o.namespace, spec: o.spec }));
  }

  /** The RollbackPolicy objects of the watched namespaces. */
  private owned(): PolicyObject[] {
    return this.objects.list().filter((o) => !this.namespaces || this.namespaces.has(o.namespace));
  }

  monitoring(app: ApplicationView): MonitoredApp | undefined {
    return monitoringFor(app, this.policies(), this.defaults);
  }

  /** Writes matchedApplications and the conditions on every policy whose status is out of date. */
  async writeStatuses(apps: ApplicationView[]): Promise<void> {
    const counted = tallies(apps, this.policies(), this.allowedOwner, this.githubHosts, this.knownRefusal);
    const now = this.clock();
    for (const policy of this.owned()) {
      const key = `${policy.namespace}/${policy.name}`;
      const status = policyStatus(policy, { ...(counted.get(key) ?? { matched: 0, refused: [] }), ...(this.allowedOwner ? { allowedOwner: this.allowedOwner } : {}) }, now);
      if (!status) continue;
      await this.objects.writeStatus(policy, status)
        .catch((error: Error) => this.log.warn('Could not write RollbackPolicy status', { policy: key, error: error.message }));
    }
  }
}
