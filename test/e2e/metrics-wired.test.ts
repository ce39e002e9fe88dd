// The metrics an on-call reads, on the real operator process during a real
// staging rollback: the attempt gauges come from the etcd record (so a restarted
// operator shows them before any transition, and they fall back once the attempt
// ends), and the reconcile and work-queue metrics are controller-runtime's. A
// reconcile that cannot succeed is counted as terminal and not retried; the
// installation's event consumer is counted when it has to be opened again.
import { DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { PER_POD_CONSUMER_PREFIX, wakeConsumerName } from '../../src/bus/jetstream.ts';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type OperatorHandle, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

/** Every sample of /metrics, as `name{labels}` -> value. */
async function scrape(operator: OperatorHandle): Promise<Map<string, number>> {
  const samples = new Map<string, number>();
  for (const line of (await operator.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** What the attempt gauges say: staging's count, and the state at 1 of each app. */
async function attemptGauges(operator: OperatorHandle): Promise<{ staging: number | undefined; states: Record<string, string> }> {
  const samples = await scrape(operator);
  const states: Record<string, string> = {};
  for (const [series, value] of samples) {
    const m = /^ai_operator_fsm_state\{app_name="([^"]+)",state="([^"]+)"\}$/.exec(series);
    if (m && value === 1) states[m[1]!] = m[2]!;
  }
  return { staging: samples.get('ai_operator_active_rollbacks{environment="staging"}'), states };
}

const gaugesAre = (operator: OperatorHandle, want: { staging: number; states: Record<string, string> }) =>
  eventually(`gauges ${JSON.stringify(want)}`, async () => {
    const got = await attemptGauges(operator);
    return JSON.stringify(got) === JSON.stringify(want) ? got : undefined;
  }, 20_000, 200);

describe('metrics that are wired', () => {
  it('shows the attempt gauges from etcd while in flight, after a restart before any transition, and back to none once complete; reconcile and queue metrics count', async () => {
    // Given a staging app watched by the operator, nothing in flight
    const s = await given('metrics-wired', { environment: 'staging', startOperator: false });
    const first = await s.startOperator();
    await gaugesAre(first, { staging: 0, states: {} });

    // When a bad release degrades it and the rollback PR is open (CI not reported yet)
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    // Then one staging rollback is in flight, and the app's state is PRCreated
    await gaugesAre(first, { staging: 1, states: { [s.app]: 'PRCreated' } });

    // When the operator restarts mid-attempt
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGTERM');
    await exited;
    const [before] = await s.attempts();
    const second = await s.startOperator();
    // Then the new process shows the gauges at once, read from etcd: no transition has happened since
    await gaugesAre(second, { staging: 1, states: { [s.app]: 'PRCreated' } });
    const [after] = await s.attempts();
    expect(after!.transitions).toHaveLength(before!.transitions.length);
    expect(after!.state).toBe('PRCreated');

    // When CI goes green and the rollback completes
    s.ci(pr.headSha, 'success');
    await s.inState('RollbackComplete', 90_000);
    // Then nothing is in flight and the ended attempt's app has no state series (well before the 30 s resync)
    await gaugesAre(second, { staging: 0, states: {} });

    // And the reconcile and work-queue metrics, under controller-runtime's names and labels, have counted
    const samples = await scrape(second);
    const c = 'controller="application"';
    const q = 'name="application",controller="application"';
    console.log([...samples].filter(([k]) => /^(controller_runtime_reconcile_(total|errors_total)|workqueue_(adds|retries)_total|workqueue_depth|controller_runtime_reconcile_time_seconds_count|workqueue_(queue|work)_duration_seconds_count)\{/.test(k)).map(([k, v]) => `${k} ${v}`).join('\n'));
    expect(samples.get(`controller_runtime_reconcile_total{${c},result="success"}`)).toBeGreaterThan(0);
    expect(samples.get(`controller_runtime_reconcile_total{${c},result="requeue_after"}`)).toBeGreaterThan(0);
    expect(samples.get(`controller_runtime_reconcile_errors_total{${c}}`)).toBeGreaterThanOrEqual(0);
    expect(samples.get(`controller_runtime_reconcile_time_seconds_count{${c}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_adds_total{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_retries_total{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_queue_duration_seconds_count{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_work_duration_seconds_count{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_depth{${q},priority="0"}`)).toBeGreaterThanOrEqual(0);
    expect(samples.get(`workqueue_depth{${q},priority="-100"}`)).toBeGreaterThanOrEqual(0);
  }, 240_000);

  it('counts a reconcile that retrying cannot fix as terminal and does not retry it; counts the event consumer opened again after its deletion', async () => {
    // Given an operator watching a healthy staging app, nothing stored
    const s = await given('metrics-terminal', { environment: 'staging', startOperator: false });
    const operator = await s.startOperator();
    const c = 'controller="application"';
    await eventually('terminal errors at 0', async () => (await scrape(operator)).get(`controller_runtime_terminal_reconcile_errors_total{${c}}`) === 0, 30_000, 200);

    // And its JetStream consumer: the installation's (named from its etcd prefix, rollback-scenario's `/e2e/{namespace}`),
    // in the installation's own stream, from new messages
    const prefix = `/e2e/${s.namespace}`;
    const durable = wakeConsumerName(prefix);
    const nc = await connect({ servers: stack.nats });
    stoppers.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    stoppers.push(async () => { await jsm.consumers.delete(s.stream, durable).catch(() => undefined); });
    const info = await eventually('the installation\'s consumer', () => jsm.consumers.info(s.stream, durable).catch(() => undefined), 30_000, 200);
    expect(info.config.deliver_policy).toBe(DeliverPolicy.New);
    // Not one per pod any more (POD_NAME is metrics-terminal-1)
    await expect(jsm.consumers.info(s.stream, `${PER_POD_CONSUMER_PREFIX}metrics-terminal-1`)).rejects.toThrow(/consumer not found/);

    // When the app's stored attempt is overwritten with something that is not JSON
    const kv = new EtcdKV([stack.etcd], { prefix });
    stoppers.push(() => kv.close());
    const appKey = `${s.namespace}_${s.app}`;
    const cid = '0b7a1f7e-8e0c-4d58-9a59-6a1f4b2f8c11';
    const garbage = [KEYS.active(appKey), KEYS.state(appKey, cid), KEYS.attempt(appKey, cid)];
    stoppers.push(async () => { await kv.txn({ compares: [], puts: [], deletes: garbage }); });
    await kv.txn({ compares: [], deletes: [], puts: [
      { key: KEYS.active(appKey), value: cid },
      { key: KEYS.state(appKey, cid), value: '{"state":"PRCreated"' },
      { key: KEYS.attempt(appKey, cid), value: '{"state":"PRCreated", trunc' },
    ] });

    // Then the reconcile stops with a terminal error, counted
    await eventually('a terminal error', async () => ((await scrape(operator)).get(`controller_runtime_terminal_reconcile_errors_total{${c}}`) ?? 0) >= 1, 30_000, 200)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    // And is not retried with backoff: 6 s later (backoffs of 0.5, 1, 2 s would have run), every error was a terminal one
    await new Promise((resolve) => setTimeout(resolve, 6000));
    const samples = await scrape(operator);
    const terminal = samples.get(`controller_runtime_terminal_reconcile_errors_total{${c}}`)!;
    console.log(`terminal ${terminal}, errors ${samples.get(`controller_runtime_reconcile_errors_total{${c}}`)}, retries ${samples.get('workqueue_retries_total{name="application",controller="application"}')}`);
    expect(samples.get(`controller_runtime_reconcile_errors_total{${c}}`)).toBe(terminal);
    expect(s.logs()).toContain('retrying cannot fix');
    expect(s.logs()).toContain(`${KEYS.attempt(appKey, cid)} in etcd is not JSON`);
    expect(s.logs()).not.toContain('Reconcile failed; retrying with backoff');

    // When the installation's consumer is deleted on the server
    const before = samples.get('ai_operator_event_consumer_restarts_total{reason="ConsumerDeleted"}');
    expect(before).toBe(0);
    await jsm.consumers.delete(s.stream, durable);
    // Then the operator opens it again and counts why
    await eventually('consumer restarted', async () => (await scrape(operator)).get('ai_operator_event_consumer_restarts_total{reason="ConsumerDeleted"}') === 1, 30_000, 200)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    await eventually('the consumer back', () => jsm.consumers.info(s.stream, durable).catch(() => undefined), 30_000, 200);
    expect(s.logs()).toContain('Event consumer stopped; opening it again');
  }, 240_000);
});
