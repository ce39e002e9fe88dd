import { describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { PolicyObject, RollbackPolicyPort, RollbackPolicyStatus } from '../ports/rollback-policies.ts';
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
  private listener?: () => void;
  readonly objects: PolicyObject[];
  constructor(objects: PolicyObject[]) {
    this.objects = objects;
  }
  async start() {}
  async stop() {}
  list() { return this.objects; }
  onChange(listener: () => void) { this.listener = listener; return () => (this.listener = undefined); }
  change() { this.listener?.(); }
  async writeStatus(ref: { namespace: string; name: string }, status: RollbackPolicyStatus) {
    this.writes.push({ name: ref.name, status });
    const object = this.objects.find((o) => o.namespace === ref.namespace && o.name === ref.name)!;
    object.status = status;
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
