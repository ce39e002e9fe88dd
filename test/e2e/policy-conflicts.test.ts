// Issue 17 §6: who decides an app's merge is never changed by accident. A policy that
// names applications governs only those (the default selector is not added to it by
// anyone: not the operator, not the API server's schema defaulting), and two policies
// selecting one app are a conflict a human resolves, not a precedence by name.
// The real operator process, the real API server, the Argo CD and GitHub simulators.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

type Json = Record<string, any>;
const apply = (object: Json) => kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify(object));
const policy = (namespace: string, name: string, spec: Json) => ({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name, namespace }, spec });
const getPolicy = async (namespace: string, name: string) => JSON.parse(await kubectlOk(stack, ['get', 'rollbackpolicy', name, '-n', namespace, '-o', 'json'])) as Json;
const conditionOf = (object: Json, type: string) => (object.status?.conditions ?? []).find((c: Json) => c.type === type) as Json | undefined;
const production = (namespace: string) => policy(namespace, 'prod', {
  selector: { matchLabels: { environment: 'production' } }, environment: 'production',
  detection: { intervalSeconds: 1, persistenceChecks: 3 }, merge: { approvers: { users: ['alice@example.com'] } },
});

describe('a RollbackPolicy naming applications', () => {
  it('governs only those: a production-labelled app it does not name stays production', async () => {
    // Given the opted-in app cart, labelled environment: production, and a staging policy that names only q-x
    const s = await given('policy-named', { environment: 'production', startOperator: false });
    await apply(policy(s.namespace, 'staging-q', { applications: ['q-x'], environment: 'staging', detection: { intervalSeconds: 1, persistenceChecks: 3 } }));
    await s.startOperator();

    // When cart degrades
    await s.release('v2', true);

    // Then its attempt is production under the environment defaults, not the staging policy's
    const record = await eventually('an attempt for cart', async () => (await s.attempts())[0], 60_000);
    expect({ environment: record.environment, policyRef: record.policyRef }).toEqual({ environment: 'production', policyRef: undefined });
    // The API server stored the policy as written: no selector added by schema defaulting
    expect((await getPolicy(s.namespace, 'staging-q')).spec.selector).toBeUndefined();
    // And the policy counts no Application
    await eventually('staging-q counts nothing', async () => (await getPolicy(s.namespace, 'staging-q')).status?.matchedApplications === 0, 70_000);
    // And the rollback PR waits for an approval: nothing merges
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    await s.inState('AwaitingMergeApproval');
    await new Promise((r) => setTimeout(r, 3000));
    expect(s.github.control.pulls({ owner: 'acme', repo: 'gitops' })[0]!.merged).toBe(false);
  }, 180_000);
});

describe('two RollbackPolicies selecting one app', () => {
  it('start no attempt: both policies name the app and the other, the app gets an Event; removing one lets the other govern', async () => {
    // Given the production app cart under a production policy, and a canary staging policy with the default selector
    const s = await given('policy-conflict', { environment: 'production', startOperator: false });
    await apply(production(s.namespace));
    await apply(policy(s.namespace, 'canary', { environment: 'staging', detection: { intervalSeconds: 1, persistenceChecks: 3 } }));
    await s.startOperator();

    // When cart degrades
    await s.release('v2', true);

    // Then the Application gets a Warning Event naming both policies, and no attempt starts
    const refusedEvent = async () => {
      const list = JSON.parse(await kubectlOk(stack, ['get', 'events.v1.events.k8s.io', '-n', s.namespace, '-o', 'json'])) as { items: Json[] };
      return list.items.find((e) => e.reportingController === 'ai-operator.io/operator' && e.regarding?.kind === 'Application' && e.reason === 'ApplicationRefused');
    };
    // Whichever comes first: the Event, or an attempt (a policy chosen by name)
    await eventually('the Event or an attempt', async () => (await refusedEvent()) ?? (await s.attempts())[0], 60_000);
    const attempt = (await s.attempts())[0];
    expect(attempt && { environment: attempt.environment, policyRef: attempt.policyRef?.name }).toBeUndefined();
    expect((await refusedEvent())).toMatchObject({
      type: 'Warning', regarding: { name: 'cart' },
      note: `Application cart is selected by 2 RollbackPolicies in ${s.namespace} (canary, prod): no rollback is attempted until only one selects it`,
    });
    // Persistence (3 checks, 1 s apart) would have started one by now
    await new Promise((r) => setTimeout(r, 5000));
    expect(await s.attempts()).toEqual([]);
    expect(s.github.control.pulls({ owner: 'acme', repo: 'gitops' })).toEqual([]);

    // And each policy names the app and the other policy, and counts it as governed by neither
    const conflicts = await eventually('PolicyConflict on both', async () => {
      const [prod, canary] = await Promise.all([getPolicy(s.namespace, 'prod'), getPolicy(s.namespace, 'canary')]);
      return conditionOf(prod, 'PolicyConflict')?.status === 'True' && conditionOf(canary, 'PolicyConflict')?.status === 'True' ? { prod, canary } : undefined;
    }, 70_000);
    expect(conditionOf(conflicts.prod, 'PolicyConflict')).toMatchObject({ reason: 'SelectedByAnotherPolicy', message: expect.stringMatching(/: cart \(also canary\)$/) });
    expect(conditionOf(conflicts.canary, 'PolicyConflict')).toMatchObject({ reason: 'SelectedByAnotherPolicy', message: expect.stringMatching(/: cart \(also prod\)$/) });
    expect([conflicts.prod.status.matchedApplications, conflicts.canary.status.matchedApplications]).toEqual([0, 0]);

    // When a human deletes the canary policy
    await kubectlOk(stack, ['delete', 'rollbackpolicy', 'canary', '-n', s.namespace]);
    // Then the production policy governs cart: a production attempt under it
    const record = await eventually('an attempt for cart', async () => (await s.attempts())[0], 60_000);
    expect(record).toMatchObject({ environment: 'production', policyRef: { name: 'prod', namespace: s.namespace } });
  }, 240_000);
});
