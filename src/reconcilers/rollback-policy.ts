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
import { API_VERSION, KINDS } from '../api/group.ts';
import { DEFAULT_INSTALLATION } from '../fsm/cloud-events.ts';
import { claimOwnership, ignoredMessage, policyOwnership, type Ownership } from '../policy/installation.ts';
import { monitoringFor, selectingPolicies, type Defaults, type RollbackPolicy } from '../policy/settings.ts';
import type { AppClaimPort } from '../ports/app-claims.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { EventObjectRef, EventRecorderPort } from '../ports/kubernetes.ts';
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
export function policyStatus(policy: PolicyObject, tally: PolicyTally, now: Date, installation?: string): RollbackPolicyStatus | undefined {
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
    && previous('PolicyConflict')?.message === conflict && (installation === undefined || current.installation === installation)) return undefined;
  const condition = (next: Omit<PolicyCondition, 'lastTransitionTime' | 'observedGeneration'>): PolicyCondition => {
    const before = previous(next.type);
    const since = before?.status === next.status && before.lastTransitionTime ? before.lastTransitionTime : apiTime(now);
    return { ...next, lastTransitionTime: since, observedGeneration: generation };
  };
  return {
    ...(installation !== undefined ? { installation } : {}),
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
  /**
   * INSTALLATION_NAME: this installation acts on the apps of the policies it owns (spec.installation, or its
   * claim in status.installation) and writes only their status (policy/installation.ts). `default` when absent.
   */
  installation?: string;
  /** Claims on the apps no policy governs; without it this installation acts on them all (it is the only one). */
  claims?: AppClaimPort;
  /** Where this installation says, once, that it ignores a policy or an app another installation acts on. */
  events?: EventRecorderPort;
  clock?: () => Date;
  /**
   * How long a claim's holder, once read, is taken as it was (default 30 s). A claim is never taken over, only
   * lifted by a human; and a Degraded app is reconciled many times while its degradation is counted: reading its
   * Lease each time was the operator's most frequent request in a 1,000-app burst (issue 23).
   */
  claimRecheckMs?: number;
}

export class RollbackPolicies {
  private readonly objects: RollbackPolicyPort;
  private readonly defaults: Defaults;
  private readonly log: Logger;
  private readonly allowedOwner: string | undefined;
  private readonly githubHosts: readonly string[] | undefined;
  private readonly knownRefusal: KnownRefusal | undefined;
  private readonly namespaces: ReadonlySet<string> | undefined;
  private readonly installation: string;
  private readonly claims: AppClaimPort | undefined;
  private readonly events: EventRecorderPort | undefined;
  private readonly clock: () => Date;
  /** Holders of the claims of apps no policy governs, by `namespace/name`, as last read (prepare), and when. */
  private readonly holders = new Map<string, { holder: string; readAt: number }>();
  private readonly claimRecheckMs: number;
  /** What was said about a policy or an app another installation acts on, by object: said again only when it changes. */
  private readonly ignoredSaid = new Map<string, string>();

  constructor(objects: RollbackPolicyPort, defaults: Defaults, log: Logger, onChange: () => void, options: RollbackPoliciesOptions = {}) {
    this.objects = objects;
    this.defaults = defaults;
    this.allowedOwner = options.allowedOwner;
    this.githubHosts = options.githubHosts;
    this.knownRefusal = options.knownRefusal;
    this.namespaces = options.namespaces?.length ? new Set(options.namespaces) : undefined;
    this.installation = options.installation ?? DEFAULT_INSTALLATION;
    this.claims = options.claims;
    this.events = options.events;
    this.clock = options.clock ?? (() => new Date());
    this.claimRecheckMs = options.claimRecheckMs ?? 30_000;
    this.log = log;
    objects.onChange(onChange);
  }

  start(): Promise<void> {
    return this.objects.start();
  }

  stop(): Promise<void> {
    return this.objects.stop();
  }

  /**
   * Every policy of the watched namespaces, whoever owns it: an app two policies select is a conflict even when
   * two installations own them (each alone would act on it).
   */
  policies(): RollbackPolicy[] {
    return this.watched().map(asPolicy);
  }

  /** The RollbackPolicy objects of the watched namespaces. */
  private watched(): PolicyObject[] {
    return this.objects.list().filter((o) => !this.namespaces || this.namespaces.has(o.namespace));
  }

  /**
   * How this installation monitors the app: undefined when another installation acts on it (its policy's, or
   * its claim's), or while nobody has claimed it yet. A conflict is said by every installation: nobody acts.
   */
  monitoring(app: ApplicationView): MonitoredApp | undefined {
    const policies = this.policies();
    const monitored = monitoringFor(app, policies, this.defaults);
    if (!monitored || monitored.conflict) return monitored;
    return this.ownershipOf(app, monitored, policies).kind === 'ours' ? monitored : undefined;
  }

  /**
   * Whether a label, a list or a policy selects the app, whoever acts on it: what the resync queues, so that an
   * app whose claim is still to be taken (or read again) gets the reconcile that takes it.
   */
  selects(app: ApplicationView): boolean {
    return monitoringFor(app, this.policies(), this.defaults) !== undefined;
  }

  private ownershipOf(app: ApplicationView, monitored: MonitoredApp, policies: RollbackPolicy[]): Ownership {
    const ref = monitored.policyRef;
    if (ref) {
      const policy = policies.find((p) => p.namespace === ref.namespace && p.name === ref.name);
      return policy ? policyOwnership(policy, this.installation) : { kind: 'unclaimed' };
    }
    // Alone, with nothing to claim against: every app no policy governs is ours, as before installations had names.
    if (!this.claims) return { kind: 'ours' };
    return claimOwnership(this.holders.get(`${app.ref.namespace}/${app.ref.name}`)?.holder, this.installation);
  }

  /**
   * Before an app that may get an attempt is reconciled (Degraded, or its degradation being counted, with no
   * attempt of ours yet): an app no policy governs is claimed, or its claim read, so monitoring() knows who acts.
   * An app of a policy needs nothing here: its policy's claim is taken with the status (writeStatuses).
   */
  async prepare(app: ApplicationView): Promise<void> {
    if (!this.claims) return;
    const monitored = monitoringFor(app, this.policies(), this.defaults);
    if (!monitored || monitored.conflict || monitored.policyRef) return;
    const key = `${app.ref.namespace}/${app.ref.name}`;
    const now = this.clock().getTime();
    const known = this.holders.get(key);
    if (known && now - known.readAt < this.claimRecheckMs) return;
    const holder = await this.claims.claim({ ref: app.ref, ...(app.uid ? { uid: app.uid } : {}) }, this.installation);
    this.holders.set(key, { holder, readAt: now });
    const ownership = claimOwnership(holder, this.installation);
    if (ownership.kind === 'theirs') {
      this.sayIgnored(ownership, { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', ...app.ref, ...(app.uid ? { uid: app.uid } : {}) });
    } else {
      this.ignoredSaid.delete(`Application/${key}`);
    }
  }

  /**
   * Claims the policies nobody claimed yet, and writes matchedApplications and the conditions on every policy this
   * installation owns whose status is out of date. A policy another installation owns is never written: it is
   * said, once, to be ignored.
   */
  async writeStatuses(apps: ApplicationView[]): Promise<void> {
    const counted = tallies(apps, this.policies(), this.allowedOwner, this.githubHosts, this.knownRefusal);
    const now = this.clock();
    for (const policy of this.watched()) {
      const key = `${policy.namespace}/${policy.name}`;
      const ownership = policyOwnership(asPolicy(policy), this.installation);
      if (ownership.kind === 'theirs') {
        this.sayIgnored(ownership, { apiVersion: API_VERSION, kind: KINDS.policy, namespace: policy.namespace, name: policy.name, ...(policy.uid ? { uid: policy.uid } : {}) });
        continue;
      }
      this.ignoredSaid.delete(`RollbackPolicy/${key}`);
      const tally = counted.get(key) ?? { matched: 0, refused: [] };
      // Claimed in a namespace WATCH_NAMESPACES names; watching every namespace, only once it selects an
      // Application: a policy in some other team's namespace that selects nothing yet is not ours to take.
      if (ownership.kind === 'unclaimed' && !this.namespaces && tally.matched === 0 && (tally.conflicts ?? []).length === 0) continue;
      const status = policyStatus(policy, { ...tally, ...(this.allowedOwner ? { allowedOwner: this.allowedOwner } : {}) }, now, this.installation);
      if (!status) continue;
      // Carries the resourceVersion read: a claim that lost the race to another installation's gets 409,
      // and so does a write made before this watch saw spec.installation move the policy elsewhere.
      await this.objects.writeStatus(policy, status).then(() => {
        if (ownership.kind === 'unclaimed') this.log.info('Claimed RollbackPolicy', { policy: key, installation: this.installation });
      }, (error: Error) => {
        // Changed since this watch read it: claimed by another installation first, moved by spec.installation, or
        // only our own last write not seen yet. The watch's change brings a resync that decides again.
        if (error instanceof IntegrationError && error.code === 'CONFLICT') {
          this.log.info(ownership.kind === 'unclaimed' ? 'Did not claim RollbackPolicy: it changed since it was read' : 'Did not write RollbackPolicy status: it changed since it was read', { policy: key, installation: this.installation });
          return;
        }
        this.log.warn('Could not write RollbackPolicy status', { policy: key, error: error.message });
      });
    }
    // What is remembered of apps and policies gone is forgotten with them.
    const live = new Set([...apps.map((a) => `Application/${a.ref.namespace}/${a.ref.name}`), ...this.watched().map((p) => `RollbackPolicy/${p.namespace}/${p.name}`)]);
    for (const id of this.ignoredSaid.keys()) if (!live.has(id)) this.ignoredSaid.delete(id);
    for (const key of this.holders.keys()) if (!live.has(`Application/${key}`)) this.holders.delete(key);
  }

  /** Says once (a log line and a Normal Event on the object) that another installation acts on it; again only if that changes. */
  private sayIgnored(owner: Extract<Ownership, { kind: 'theirs' }>, regarding: EventObjectRef): void {
    const id = `${regarding.kind}/${regarding.namespace}/${regarding.name}`;
    const message = ignoredMessage({ kind: regarding.kind as 'RollbackPolicy' | 'Application', namespace: regarding.namespace, name: regarding.name }, owner, this.installation);
    if (this.ignoredSaid.get(id) === message) return;
    this.ignoredSaid.set(id, message);
    this.log.info(message, { object: id, installation: this.installation, actingInstallation: owner.installation, via: owner.via });
    this.events?.emit({ regarding, type: 'Normal', reason: 'ActedOnByAnotherInstallation', action: 'Ignore', note: message });
  }
}

function asPolicy(o: PolicyObject): RollbackPolicy {
  return { name: o.name, namespace: o.namespace, spec: o.spec, ...(o.status?.installation ? { claimedBy: o.status.installation } : {}) };
}
