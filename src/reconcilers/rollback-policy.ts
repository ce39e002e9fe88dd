// RollbackPolicies, as declared in Git: read through RollbackPolicyPort (whose
// watch, integrations/rollback-policies.ts, keeps them in a cache) and consulted
// by the application reconciler (which policy governs an app, with what
// settings). Each policy's status says how many Applications it matches and
// whether it is Ready. Level-based: the status is recomputed from the cache on
// every resync, never accumulated.
import type { Logger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { PolicyCondition, PolicyObject, RollbackPolicyPort, RollbackPolicyStatus } from '../ports/rollback-policies.ts';
import { applicationRefusal, type RefusalReason } from '../governance/repository.ts';
import { monitoringFor, type Defaults, type RollbackPolicy } from '../policy/settings.ts';
import type { MonitoredApp } from './application.ts';

/** Which policy governs the app: the first by namespace/name that names or selects it. Pure. */
export function governingPolicy(app: ApplicationView, policies: RollbackPolicy[], defaults: Defaults): RollbackPolicy | undefined {
  const monitored = monitoringFor(app, policies, defaults);
  return monitored?.policyRef ? policies.find((p) => p.name === monitored.policyRef!.name && p.namespace === monitored.policyRef!.namespace) : undefined;
}

/** What a policy's status says of the Applications it governs. */
export interface PolicyTally {
  matched: number;
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
  const [outside, shape] = [names('RepositoryOutsideOrg'), names('UnsupportedShape')];
  const refused = [...outside, ...shape];
  const refusal = refused.length === 0
    ? 'every governed Application\'s repository is within GITHUB_ORG'
    : [
      ...(outside.length > 0 ? [`${outside.length} governed Application(s) refused, their repository outside GITHUB_ORG ${tally.allowedOwner}: ${list(outside)}`] : []),
      ...(shape.length > 0 ? [`${shape.length} governed Application(s) refused, their shape not handled yet (multi-source or source hydrator): ${list(shape)}`] : []),
    ].join('; ');
  const refusedReason = outside.length > 0 && shape.length > 0 ? 'RepositoryOutsideOrgAndUnsupportedShape' : outside.length > 0 ? 'RepositoryOutsideOrg' : 'UnsupportedShape';
  const current = policy.status;
  const previous = (type: string) => current?.conditions?.find((c) => c.type === type);
  if (current?.matchedApplications === tally.matched && current.observedGeneration === generation && previous('ApplicationsRefused')?.message === refusal) return undefined;
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
    })],
  };
}

export interface RollbackPoliciesOptions {
  /** GITHUB_ORG, whose repositories alone the operator may open PRs on. */
  allowedOwner?: string;
  /** The hosts of that GitHub's repositories (governance/repository.ts githubHosts). */
  githubHosts?: readonly string[];
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
  private readonly namespaces: ReadonlySet<string> | undefined;
  private readonly clock: () => Date;

  constructor(objects: RollbackPolicyPort, defaults: Defaults, log: Logger, onChange: () => void, options: RollbackPoliciesOptions = {}) {
    this.objects = objects;
    this.defaults = defaults;
    this.allowedOwner = options.allowedOwner;
    this.githubHosts = options.githubHosts;
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
    const policies = this.policies();
    const tallies = new Map<string, PolicyTally>();
    for (const app of apps) {
      const policy = governingPolicy(app, policies, this.defaults);
      if (!policy) continue;
      const key = `${policy.namespace}/${policy.name}`;
      const tally = tallies.get(key) ?? { matched: 0, refused: [] };
      tally.matched++;
      const refusal = applicationRefusal(app, this.allowedOwner, this.githubHosts);
      if (refusal) tally.refused.push({ name: app.ref.name, reason: refusal.reason });
      tallies.set(key, tally);
    }
    const now = this.clock();
    for (const policy of this.owned()) {
      const key = `${policy.namespace}/${policy.name}`;
      const status = policyStatus(policy, { ...(tallies.get(key) ?? { matched: 0, refused: [] }), ...(this.allowedOwner ? { allowedOwner: this.allowedOwner } : {}) }, now);
      if (!status) continue;
      await this.objects.writeStatus(policy, status)
        .catch((error: Error) => this.log.warn('Could not write RollbackPolicy status', { policy: key, error: error.message }));
    }
  }
}
