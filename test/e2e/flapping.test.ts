// A flapping production app (issue 19 §2), with the real operator on the
// simulators: Degraded, a rollback PR opened, Healthy again before CI finished
// (the PR closed), and again. Without a bound every flap opens and closes a PR
// and leaves a RollbackAttempt; with maxAttemptsPerHour the next degradation in
// the hour holds the app in Abort (AttemptLimitReached) — a Warning Event, the
// ai_operator_apps_held gauge the AIOperatorAppHeld alert reads — and nothing
// more happens until a human resets the held attempt.
import { EventsV1Api } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { attemptName } from '../../src/fsm/record.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const MAX_ATTEMPTS = 2;

describe('a flapping app', () => {
  it(`opens ${MAX_ATTEMPTS} PRs in the hour, then is held for a human until a reset`, async () => {
    // Given a production app whose rollback PRs never get CI in time, bound to 2 attempts an hour
    const s = await givenRollbackScenario(stack, 'flapping', { environment: 'production', startOperator: false, env: { CI_WAIT_TIMEOUT: '600', MAX_ATTEMPTS_PER_HOUR: String(MAX_ATTEMPTS) } }, stoppers);
    const operator = await s.startOperator();
    const pulls = () => s.github.control.pulls(REPO);

    // When it flaps: Degraded (a PR opens), Healthy again (the PR is closed), twice
    for (let flap = 1; flap <= MAX_ATTEMPTS; flap++) {
      await s.release(`v${2 * flap}`, true);
      await eventually(`rollback PR ${flap}`, async () => pulls().length === flap && pulls().every((p) => p.number !== undefined), 60_000, 200)
        .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
      await s.release(`v${2 * flap + 1}`, false);
      await eventually(`PR ${flap} closed, the attempt Idle`, async () => {
        const attempts = await s.attempts();
        return attempts.length === flap && attempts.every((a) => a.state === 'Idle' && a.reason === 'HealthRestoredBeforeMerge') && pulls().every((p) => p.state === 'closed');
      }, 60_000, 250).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    }

    // And degrades a third time within the hour
    await s.release('v9', true);

    // Then the app is held: the attempt is in Abort (AttemptLimitReached) and no third PR opens
    const held = await eventually('the held attempt', async () => (await s.attempts()).find((a) => a.state === 'Abort'), 60_000, 250)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(held.reason).toBe('AttemptLimitReached');
    expect(held.message).toMatch(new RegExp(`${MAX_ATTEMPTS} attempt\\(s\\) already started for this app within the hour \\(maxAttemptsPerHour ${MAX_ATTEMPTS}, first at .*\\): .*held for a human; reset`));
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect(pulls()).toHaveLength(MAX_ATTEMPTS);
    expect((await s.attempts()).filter((a) => a.state === 'Abort')).toHaveLength(1);

    // A Warning Event on the Application says so, the RollbackAttempt shows it, and the held gauge is 1
    const events = kubeConfig(stack).makeApiClient(EventsV1Api);
    const event = await eventually('the AttemptLimitReached Event', async () => (await events.listNamespacedEvent({ namespace: s.namespace })).items
      .find((e) => e.reason === 'AttemptLimitReached' && e.regarding?.kind === 'Application'), 15_000, 250);
    expect(event.type).toBe('Warning');
    expect(event.note).toContain('held for a human');
    const name = attemptName(held.app, held.correlationId);
    await eventually('RollbackAttempt status', async () => {
      const status = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', s.namespace, '-o', 'json'])).status;
      return status?.phase === 'Abort' && status.reason === 'AttemptLimitReached';
    }, 15_000, 250);
    await eventually('ai_operator_apps_held 1', async () => (await operator.metrics()).includes(`ai_operator_apps_held{app_name="${s.app}"} 1`), 15_000, 250);

    // When a human resets the held attempt (the app still Degraded)
    await kubectlOk(stack, ['annotate', 'rollbackattempt', '-n', s.namespace, name, 'ai-operator.io/reset=true']);

    // Then the count is forgotten: a new attempt opens a third PR, and the app is no longer held
    await eventually('a PR after the reset', async () => pulls().length === MAX_ATTEMPTS + 1, 60_000, 250)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect((await s.attempts()).find((a) => a.correlationId === held.correlationId)).toMatchObject({ state: 'Idle', reason: 'Reset' });
    await eventually('no ai_operator_apps_held series', async () => !(await operator.metrics()).includes('ai_operator_apps_held{'), 15_000, 250);
  }, 300_000);
});

