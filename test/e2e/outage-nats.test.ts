// NATS JetStream goes away mid-attempt for longer than every retry budget. The
// operator's events go through the transactional outbox in etcd, so an attempt
// needs NATS for nothing but waking up early: it goes on (the resync and the
// etcd watch drive it), and every event written meanwhile is published once
// NATS is back — once. The operator runs on a PRIVATE nats-server, restarted in
// place (same port, same JetStream store) so the events from before the outage
// are still there to be counted.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { outage, PrivateComponents, type Component } from './support/faults.ts';
import { eventually } from './support/operator.ts';
import { attemptEvents, nothingLost, readyz, ReadinessWatch, stillRunning } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const shared = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const WINDOW_MS = 35_000;
const components = new PrivateComponents();
let nats: { url: string; component: Component };
beforeAll(async () => { nats = await components.nats(); }, 60_000);
afterAll(() => components.dispose());

describe('NATS down mid-attempt', () => {
  it('stopped for 35 s from PRCreated: the attempt completes meanwhile, /readyz names NATS, and every event lands in JetStream once when it is back', async () => {
    // Given a staging rollback PR, its first events already in JetStream
    const stack = { ...shared, nats: nats.url };
    const s = await givenRollbackScenario(stack, 'outage-nats', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator();
    const pid = operator.child.pid!;
    await s.release('v2', true);
    const pr = await s.firstPull();
    const created = await s.inState('PRCreated');
    await eventually('the first events published', async () => (await attemptEvents(nats.url, created.correlationId, s.stream)).some((e) => e.type === 'io.ai-operator.pr.created'), 30_000, 250);
    const watch = new ReadinessWatch(operator.httpPort);
    stoppers.push(() => watch.stop());

    // When NATS stops, and CI turns green while it is away
    const window = await outage(nats.component, 'stop', WINDOW_MS);
    s.ci(pr.headSha, 'success');

    // Then the attempt still completes (the outbox holds its events)
    const done = await s.inState('RollbackComplete', WINDOW_MS - 5000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const completedAtMs = Date.now() - window.startedAt;
    expect(nats.component.isDown()).toBe('stop');
    const { downMs, backAt } = await window.end();

    // And once NATS is back, every transition's event is in JetStream once
    await eventually('outbox drained', async () => (await attemptEvents(nats.url, done.correlationId, s.stream)).some((e) => e.type === 'io.ai-operator.rollback.completed'), 60_000, 500)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const drainedAfterMs = Date.now() - backAt;
    await eventually('ready again', async () => (await readyz(operator.httpPort)).status === 200, 30_000, 250);
    await watch.stop();
    const lost = await nothingLost(s, done, nats.url);
    expect(lost.problems).toEqual([]);
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, merged: true }]);

    // /readyz named NATS while it was away, and came back by itself
    const during = watch.between(window.startedAt + 3000, window.startedAt + downMs - 500);
    expect(during.length).toBeGreaterThan(20);
    expect(during.filter((x) => x.status !== 503 || !/^NATS: /m.test(x.body) || x.ms >= 2000)).toEqual([]);
    const ready = watch.readyAgain(backAt);
    expect(ready).toBeDefined();
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-nats] stop ${downMs} ms; RollbackComplete ${completedAtMs} ms into the outage; ready ${ready!.afterMs} ms and all events published ${drainedAfterMs} ms after NATS was back`);
  }, 180_000);
});
