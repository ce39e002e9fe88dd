import { describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { PolicyObject, RollbackPolicyPort, RollbackPolicyStatus } from '../ports/rollback-policies.ts';
import type { AppClaimPort } from '../ports/app-claims.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { KubeEvent } from '../ports/kubernetes.ts';
import type { Defaults } from '../policy/settings.ts';
import { policyStatus, RollbackPolicies } from './rollback-policy.ts';

const T0 = new Date('2026-03-01T10:00:00.123Z');
const T1 = new Date('2026-03-01T11:00:00.456Z');
const T2 = new Date('2026-03-01T12:00:00Z');

const policy = (status?: RollbackPolicyStatus, generation = 3, spec: PolicyObject['spec'] = { applications: ['payments'] }): PolicyObject =>
  ({ namespace: 'argocd', name: 'payments', generation, spec, ...(status ? { status } : {}) });

const conditionTimes = (status: RollbackPolicyStatus | undefined) => Object.fromEntries((status?.conditions ?? []).map((c) => [c.type, c.lastTransitionTime]));

const outside = (name: string) => ({ name, reason: 'RepositoryOutsideOrg' as const });

describe('policyStatus', () => {
  it('writes the count, both conditions and observedGeneration from the object\'s generation, timed by the injected clock', () => {
    const status = policyStatus(policy(undefined, 7), { matched: 2, refused: [] }, T0);
    expect(status).toEqual({
      observedGeneration: 7, matchedApplications: 2,
      conditions: [
        { type: 'Ready', status: 'True', reason: 'ApplicationsMatched', message: '2 Application(s) governed by this policy', lastTransitionTime: '2026-03-01T10:00:00Z', observedGeneration: 7 },
        { type: 'ApplicationsRefused', status: 'False', reason: 'NoneRefused', message: 'every governed Application\'s repository is within GITHUB_ORG', lastTransitionTime: '2026-03-01T10:00:00Z', observedGeneration: 7 },
        { type: 'PolicyConflict', status: 'False', reason: 'NoConflict', message: 'no Application this policy selects is selected by another RollbackPolicy', lastTransitionTime: '2026-03-01T10:00:00Z', observedGeneration: 7 },
      ],
    });
  });

  it('writes nothing when the status is up to date', () => {
    const written = policyStatus(policy(), { matched: 2, refused: [] }, T0)!;
    expect(policyStatus(policy(written), { matched: 2, refused: [] }, T1)).toBeUndefined();
  });

  it('moves lastTransitionTime only when a condition\'s status changes, not when a count in its message does', () => {
    const first = policyStatus(policy(), { matched: 2, refused: [] }, T0)!;
    // When a third Application is governed: Ready stays True
    const second = policyStatus(policy(first), { matched: 3, refused: [] }, T1)!;
    expect(second.matchedApplications).toBe(3);
    expect(second.conditions?.[0]?.message).toBe('3 Application(s) governed by this policy');
    expect(conditionTimes(second)).toEqual({ Ready: '2026-03-01T10:00:00Z', ApplicationsRefused: '2026-03-01T10:00:00Z', PolicyConflict: '2026-03-01T10:00:00Z' });
    // When one of them is refused: ApplicationsRefused turns True, Ready does not change
    const third = policyStatus(policy(second), { matched: 3, refused: [outside('billing')], allowedOwner: 'acme' }, T2)!;
    expect(third.conditions?.[1]).toMatchObject({ status: 'True', reason: 'RepositoryOutsideOrg', message: '1 governed Application(s) refused, their repository outside GITHUB_ORG acme: billing' });
    expect(conditionTimes(third)).toEqual({ Ready: '2026-03-01T10:00:00Z', ApplicationsRefused: '2026-03-01T12:00:00Z', PolicyConflict: '2026-03-01T10:00:00Z' });
    // A second refused app changes the message only
    const fourth = policyStatus(policy(third), { matched: 3, refused: [outside('search'), outside('billing')], allowedOwner: 'acme' }, T1)!;
    expect(fourth.conditions?.[1]?.message).toContain('2 governed Application(s) refused');
    expect(conditionTimes(fourth)).toEqual({ Ready: '2026-03-01T10:00:00Z', ApplicationsRefused: '2026-03-01T12:00:00Z', PolicyConflict: '2026-03-01T10:00:00Z' });
  });

  it('names each refusal by its reason: outside GITHUB_ORG, a shape not handled yet, or both', () => {
    const shape = { name: 'hydrated', reason: 'UnsupportedShape' as const };
    const onlyShape = policyStatus(policy(), { matched: 2, refused: [shape] }, T0)!;
    expect(onlyShape.conditions?.[1]).toMatchObject({ status: 'True', reason: 'UnsupportedShape',
      message: '1 governed Application(s) refused, their shape not handled yet (sources in several repositories, or a source hydrator): hydrated' });
    const both = policyStatus(policy(), { matched: 3, refused: [shape, outside('billing')], allowedOwner: 'acme' }, T0)!;
    expect(both.conditions?.[1]).toMatchObject({ reason: 'RepositoryOutsideOrgAndUnsupportedShape',
      message: '1 governed Application(s) refused, their repository outside GITHUB_ORG acme: billing; 1 governed Application(s) refused, their shape not handled yet (sources in several repositories, or a source hydrator): hydrated' });
  });

  it('names apps whose targetRevision is no branch, found by reading GitHub, with the others (issue 18 §5)', () => {
    const tag = { name: 'pinned', reason: 'TargetNotBranch' as const };
    const status = policyStatus(policy(), { matched: 3, refused: [tag, outside('billing')], allowedOwner: 'acme' }, T0)!;
    expect(status.conditions?.[1]).toMatchObject({ status: 'True', reason: 'RepositoryOutsideOrgAndTargetNotBranch',
      message: '1 governed Application(s) refused, their repository outside GITHUB_ORG acme: billing; 1 governed Application(s) refused, their spec.source.targetRevision a tag or a commit, not a branch: pinned' });
  });

  it('names each app another policy also selects, with the others, and turns PolicyConflict True', () => {
    const first = policyStatus(policy(), { matched: 1, refused: [] }, T0)!;
    const conflicted = policyStatus(policy(first), { matched: 1, refused: [], conflicts: [{ name: 'q-y', others: ['canary'] }, { name: 'cart', others: ['canary', 'prod'] }] }, T1)!;
    expect(conflicted.conditions?.[2]).toEqual({
      type: 'PolicyConflict', status: 'True', reason: 'SelectedByAnotherPolicy', lastTransitionTime: '2026-03-01T11:00:00Z', observedGeneration: 3,
      message: '2 Application(s) also selected by another RollbackPolicy of this namespace get no rollback until only one policy selects them: cart (also canary, prod), q-y (also canary)',
    });
    expect(conditionTimes(conflicted).Ready).toBe('2026-03-01T10:00:00Z');
    // Resolved: back to False, written again
    expect(policyStatus(policy(conflicted), { matched: 2, refused: [] }, T2)?.conditions?.[2]).toMatchObject({ status: 'False', reason: 'NoConflict', lastTransitionTime: '2026-03-01T12:00:00Z' });
  });

  it('rewrites the status of a new generation (a spec edit) with that generation', () => {
    const written = policyStatus(policy(undefined, 3), { matched: 1, refused: [] }, T0)!;
    const edited = policyStatus(policy(written, 4, { applications: ['payments'], suspend: true }), { matched: 1, refused: [] }, T1)!;
    expect(edited.observedGeneration).toBe(4);
    expect(edited.conditions?.map((c) => c.observedGeneration)).toEqual([4, 4, 4]);
    expect(edited.conditions?.[0]?.message).toBe('1 Application(s) governed by this policy (suspended: no new attempts)');
    expect(conditionTimes(edited).Ready).toBe('2026-03-01T10:00:00Z');
  });
});

/** The port in memory: policies as the watch would hold them, status writes recorded and applied. */
class FakePolicies implements RollbackPolicyPort {
  readonly writes: Array<{ name: string; status: RollbackPolicyStatus }> = [];
  /** Writes refused for a stale resourceVersion, as the API server refuses them (409). */
  readonly refused: string[] = [];
  private listener?: () => void;
  readonly objects: PolicyObject[];
  constructor(objects: PolicyObject[]) {
    this.objects = objects;
  }
  async start() {}
  async stop() {}
  list() { return this.objects.map((o) => ({ ...o })); }
  onChange(listener: () => void) { this.listener = listener; return () => (this.listener = undefined); }
  change() { this.listener?.(); }
  async writeStatus(ref: { namespace: string; name: string; resourceVersion?: string }, status: RollbackPolicyStatus) {
    const object = this.objects.find((o) => o.namespace === ref.namespace && o.name === ref.name)!;
    if (ref.resourceVersion !== undefined && ref.resourceVersion !== object.resourceVersion) {
      this.refused.push(ref.name);
      throw new IntegrationError('patchRollbackPolicyStatus', 'CONFLICT', 'HTTP 409: the object has been modified');
    }
    this.writes.push({ name: ref.name, status });
    object.status = { ...object.status, ...status };
    if (object.resourceVersion !== undefined) object.resourceVersion = String(Number(object.resourceVersion) + 1);
  }
}

const defaults = { monitoredApps: [] } as unknown as Defaults;
const app = (name: string, repoURL = 'https://github.com/acme/gitops.git'): ApplicationView =>
  ({ ref: { namespace: 'argocd', name }, labels: {}, history: [], resources: [], source: { repoURL, path: name, targetRevision: 'main' } });

describe('RollbackPolicies', () => {
  it('writes each out-of-date status of its own namespaces once, at the injected clock\'s time', async () => {
    const port = new FakePolicies([
      policy(undefined, 5, { applications: ['payments', 'billing'] }),
      { namespace: 'elsewhere', name: 'theirs', generation: 1, spec: { applications: ['payments'] } },
    ]);
    let now = T0;
    const changes: string[] = [];
    const policies = new RollbackPolicies(port, defaults, createLogger('ERROR'), () => changes.push('changed'), { allowedOwner: 'acme', namespaces: ['argocd'], clock: () => now });
    await policies.writeStatuses([app('payments'), app('billing', 'https://github.com/other/gitops.git')]);
    expect(port.writes).toEqual([{ name: 'payments', status: expect.objectContaining({ observedGeneration: 5, matchedApplications: 2 }) }]);
    expect(conditionTimes(port.writes[0]!.status)).toEqual({ Ready: '2026-03-01T10:00:00Z', ApplicationsRefused: '2026-03-01T10:00:00Z', PolicyConflict: '2026-03-01T10:00:00Z' });

    now = T1;
    await policies.writeStatuses([app('payments'), app('billing', 'https://github.com/other/gitops.git')]);
    expect(port.writes).toHaveLength(1);

    // The port's changes reach the reconciler's listener
    port.change();
    expect(changes).toEqual(['changed']);
  });

  it('counts an app two policies select on neither, and names it with the other policy on both', async () => {
    const port = new FakePolicies([
      { namespace: 'argocd', name: 'production', generation: 1, spec: { selector: { matchLabels: { environment: 'production' } }, environment: 'production' } },
      { namespace: 'argocd', name: 'canary', generation: 1, spec: { environment: 'staging' } },
      { namespace: 'argocd', name: 'named', generation: 1, spec: { applications: ['q-x'], environment: 'staging' } },
    ]);
    const policies = new RollbackPolicies(port, defaults, createLogger('ERROR'), () => {}, { clock: () => T0 });
    const labelled = (name: string, labels: Record<string, string>): ApplicationView => ({ ...app(name), labels });
    await policies.writeStatuses([
      labelled('cart', { 'ai-operator.enabled': 'true', environment: 'production' }),
      labelled('q-x', {}),
      labelled('q-y', { 'ai-operator.enabled': 'true', environment: 'production' }),
      labelled('web', { environment: 'production' }),
    ]);
    const statusOf = (name: string) => port.writes.find((w) => w.name === name)!.status;
    expect(statusOf('production')).toMatchObject({ matchedApplications: 1 });
    expect(statusOf('production').conditions?.[2]?.message).toMatch(/: cart \(also canary\), q-y \(also canary\)$/);
    expect(statusOf('canary')).toMatchObject({ matchedApplications: 0 });
    expect(statusOf('canary').conditions?.[2]?.message).toMatch(/: cart \(also production\), q-y \(also production\)$/);
    // Naming q-x alone, the third policy selects neither labelled app
    expect(statusOf('named')).toMatchObject({ matchedApplications: 1, conditions: [expect.anything(), expect.anything(), expect.objectContaining({ status: 'False' })] });
  });

  it('logs a status it could not write and goes on with the next policy', async () => {
    const port = new FakePolicies([policy(), { ...policy(), name: 'second' }]);
    const lines: string[] = [];
    const failing = Object.assign(Object.create(port) as FakePolicies, {
      writeStatus: async (ref: { namespace: string; name: string }, status: RollbackPolicyStatus) => {
        if (ref.name === 'payments') throw new Error('patchRollbackPolicyStatus: PERMISSION_DENIED: HTTP 403');
        return port.writeStatus(ref, status);
      },
    });
    const policies = new RollbackPolicies(failing, defaults, createLogger('WARN', {}, (l) => lines.push(l)), () => {});
    await policies.writeStatuses([app('payments')]);
    expect(port.writes.map((w) => w.name)).toEqual(['second']);
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([expect.objectContaining({ message: 'Could not write RollbackPolicy status', policy: 'argocd/payments' })]);
  });
});

describe('RollbackPolicies with two installations on one namespace (issue 19 §3)', () => {
  const named = (name: string, spec: PolicyObject['spec'], status?: RollbackPolicyStatus): PolicyObject =>
    ({ namespace: 'argocd', name, generation: 1, resourceVersion: '10', uid: `uid-${name}`, spec, ...(status ? { status } : {}) });
  const labelled = (name: string): ApplicationView => ({ ...app(name), labels: { 'ai-operator.enabled': 'true' } });
  const setup = (port: FakePolicies, installation: string, claims?: AppClaimPort, clock = () => T0) => {
    const events: KubeEvent[] = [];
    const lines: Array<Record<string, unknown>> = [];
    const policies = new RollbackPolicies(port, defaults, createLogger('INFO', {}, (l) => lines.push(JSON.parse(l) as Record<string, unknown>)), () => {}, {
      installation, clock, events: { emit: (e) => { events.push(e); }, flush: async () => {} }, ...(claims ? { claims } : {}),
    });
    return { policies, events, lines };
  };

  it('claims a policy nobody claimed, with the resourceVersion it read; the installation that loses the race writes nothing', async () => {
    const port = new FakePolicies([named('cart', { applications: ['cart'] })]);
    const a = setup(port, 'team-a');
    const b = setup(port, 'team-b');
    // Both read the unclaimed policy; team-a writes first
    const bView = port.list();
    await a.policies.writeStatuses([app('cart')]);
    expect(port.writes).toEqual([{ name: 'cart', status: expect.objectContaining({ installation: 'team-a', matchedApplications: 1 }) }]);
    // team-b's claim carries the version it read: refused
    const stale = Object.assign(Object.create(port) as FakePolicies, { list: () => bView });
    await setup(stale, 'team-b').policies.writeStatuses([app('cart')]);
    expect(port.refused).toEqual(['cart']);
    expect(port.writes).toHaveLength(1);
    // Read again: theirs. Said once, never written
    await b.policies.writeStatuses([app('cart')]);
    await b.policies.writeStatuses([app('cart')]);
    expect(port.writes).toHaveLength(1);
    expect(b.events).toEqual([{
      regarding: { apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', namespace: 'argocd', name: 'cart', uid: 'uid-cart' },
      type: 'Normal', reason: 'ActedOnByAnotherInstallation', action: 'Ignore',
      note: 'Ignored RollbackPolicy argocd/cart: installation team-a acts on it (status.installation); installation team-b neither acts on its Applications nor writes its status',
    }]);
    expect(b.lines.filter((l) => String(l.message).startsWith('Ignored'))).toHaveLength(1);
    // And who monitors cart: team-a alone
    expect(a.policies.monitoring(app('cart'))?.policyRef).toEqual({ name: 'cart', namespace: 'argocd' });
    expect(b.policies.monitoring(app('cart'))).toBeUndefined();
  });

  it('acts on the policy spec.installation names, whoever claimed it, and says it again only when who acts changes', async () => {
    const port = new FakePolicies([named('cart', { applications: ['cart'], installation: 'team-b' }, { installation: 'team-a' })]);
    const a = setup(port, 'team-a');
    const b = setup(port, 'team-b');
    expect(a.policies.monitoring(app('cart'))).toBeUndefined();
    expect(b.policies.monitoring(app('cart'))).toBeDefined();
    await a.policies.writeStatuses([app('cart')]);
    expect(port.writes).toEqual([]);
    expect(a.events.map((e) => e.note)).toEqual([expect.stringContaining('installation team-b acts on it (spec.installation)')]);
    // team-b writes the status, naming itself
    await b.policies.writeStatuses([app('cart')]);
    expect(port.writes).toEqual([{ name: 'cart', status: expect.objectContaining({ installation: 'team-b' }) }]);
    // Moved back to team-a by a human: team-a acts and writes; team-b says so
    port.objects[0]!.spec = { applications: ['cart'] , installation: 'team-a' };
    await a.policies.writeStatuses([app('cart')]);
    await b.policies.writeStatuses([app('cart')]);
    expect(port.writes.map((w) => w.status.installation)).toEqual(['team-b', 'team-a']);
    expect(b.events.map((e) => e.note)).toEqual([expect.stringContaining('installation team-a acts on it (spec.installation)')]);
  });

  it('claims a policy of a namespace WATCH_NAMESPACES names at once; watching every namespace, only once it selects an app', async () => {
    const port = new FakePolicies([named('empty', { applications: ['nothing-yet'] })]);
    // Watching every namespace: another team's policy that selects none of our apps is left unclaimed
    await setup(port, 'team-a').policies.writeStatuses([app('cart')]);
    expect(port.writes).toEqual([]);
    // Naming its namespace: ours, its status written (0 Applications)
    const watching = new RollbackPolicies(port, defaults, createLogger('ERROR'), () => {}, { installation: 'team-b', namespaces: ['argocd'], clock: () => T0 });
    await watching.writeStatuses([app('cart')]);
    expect(port.writes).toEqual([{ name: 'empty', status: expect.objectContaining({ installation: 'team-b', matchedApplications: 0 }) }]);
  });

  it('acts on no app of a policy nobody claimed yet', () => {
    const port = new FakePolicies([named('cart', { applications: ['cart'] })]);
    expect(setup(port, 'team-a').policies.monitoring(app('cart'))).toBeUndefined();
  });

  it('says a conflict whoever owns the two policies: nobody acts on the app', () => {
    const port = new FakePolicies([
      named('mine', { applications: ['cart'], installation: 'team-a' }),
      named('theirs', { applications: ['cart'], installation: 'team-b' }),
    ]);
    expect(setup(port, 'team-a').policies.monitoring(app('cart'))?.conflict?.policies).toEqual(['mine', 'theirs']);
    expect(setup(port, 'team-b').policies.monitoring(app('cart'))?.conflict?.policies).toEqual(['mine', 'theirs']);
  });

  it('claims an app no policy governs through its Lease before acting, and ignores one another installation holds', async () => {
    const holders = new Map<string, string>();
    const calls: string[] = [];
    const claims: AppClaimPort = { claim: async (target, installation) => {
      calls.push(`${target.ref.name}:${installation}`);
      if (!holders.has(target.ref.name)) holders.set(target.ref.name, installation);
      return holders.get(target.ref.name)!;
    } };
    const port = new FakePolicies([]);
    let now = T0.getTime();
    const clock = () => new Date(now);
    const a = setup(port, 'team-a', claims, clock);
    const b = setup(port, 'team-b', claims, clock);
    // Before a claim is read, neither acts; both resync it, so that the claim gets taken
    expect(a.policies.monitoring(labelled('cart'))).toBeUndefined();
    expect([a.policies.selects(labelled('cart')), b.policies.selects(labelled('cart')), a.policies.selects(app('unlabelled'))]).toEqual([true, true, false]);
    await a.policies.prepare(labelled('cart'));
    await b.policies.prepare(labelled('cart'));
    // Each reconcile of a Degraded app asks again: the holder read 29 s ago stands, at 30 s it is read again
    now += 29_000;
    await b.policies.prepare(labelled('cart'));
    expect(calls).toEqual(['cart:team-a', 'cart:team-b']);
    now += 1_000;
    await b.policies.prepare(labelled('cart'));
    expect(calls).toEqual(['cart:team-a', 'cart:team-b', 'cart:team-b']);
    expect(a.policies.monitoring(labelled('cart'))).toMatchObject({ environment: 'production', suspended: false });
    expect(b.policies.monitoring(labelled('cart'))).toBeUndefined();
    expect(b.events).toEqual([expect.objectContaining({
      regarding: expect.objectContaining({ kind: 'Application', name: 'cart' }), reason: 'ActedOnByAnotherInstallation',
      note: 'Ignored Application argocd/cart: installation team-a acts on it (Lease); installation team-b does not act on it',
    })]);
    // An app a policy governs, or that is not monitored at all, takes no claim
    await a.policies.prepare(app('unlabelled'));
    expect(calls).toHaveLength(3);
    // Gone from the cluster: forgotten
    await b.policies.writeStatuses([]);
    expect(b.policies.monitoring(labelled('cart'))).toBeUndefined();
  });

  it('without claims (alone), acts on every app no policy governs, as before', () => {
    const port = new FakePolicies([]);
    expect(setup(port, 'team-a').policies.monitoring(labelled('cart'))).toBeDefined();
  });
});
