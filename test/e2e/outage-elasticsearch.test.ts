// Elasticsearch, the audit store, goes away mid-attempt for longer than every
// retry budget. Every record is fsync'd to the spool first and shipped from
// there (SPEC §10), so the attempt goes on and nothing is lost: once
// Elasticsearch is back the backlog is shipped, each record once, and
// `audit verify` finds the chain intact. The operator runs on a PRIVATE
// Elasticsearch, restarted in place (same data dir, same port).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { outage, PrivateComponents, type Component } from './support/faults.ts';
import { eventually } from './support/operator.ts';
import { nothingLost, ReadinessWatch, stillRunning } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const run = promisify(execFile);
const shared = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const WINDOW_MS = 35_000;
const components = new PrivateComponents();
let es: { url: string; component: Component };
beforeAll(async () => { es = await components.elasticsearch(); }, 180_000);
afterAll(() => components.dispose());

/** The audit records of one attempt in Elasticsearch (every index of the pattern). */
async function shipped(url: string, correlationId: string): Promise<string[]> {
  const response = await fetch(`${url}/ai-operator-audit-*/_search?size=1000`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: { term: { correlationId } }, _source: ['eventId'] }),
  });
  if (!response.ok) return [];
  const body = await response.json() as { hits: { hits: Array<{ _source: { eventId: string } }> } };
  return body.hits.hits.map((h) => h._source.eventId);
}

async function fallbackPending(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(/^ai_operator_audit_fallback_pending(?:\{[^}]*\})? (\S+)/m.exec(text)?.[1] ?? 'NaN');
}

describe('Elasticsearch down mid-attempt', () => {
  it('stopped for 35 s from PRCreated: the attempt completes meanwhile, the spool holds the records, and all of them are shipped once when it is back', async () => {
    // Given a staging rollback PR, its audit records so far shipped
    const stack = { ...shared, elasticsearch: es.url };
    const s = await givenRollbackScenario(stack, 'outage-es', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator();
    const pid = operator.child.pid!;
    const since = new Date(Date.now() - 60_000).toISOString();
    await s.release('v2', true);
    const pr = await s.firstPull();
    const created = await s.inState('PRCreated');
    await eventually('first records shipped', async () => (await shipped(es.url, created.correlationId)).length >= 3, 60_000, 500);
    const watch = new ReadinessWatch(operator.httpPort);
    stoppers.push(() => watch.stop());

    // When Elasticsearch stops, and CI turns green while it is away
    const window = await outage(es.component, 'stop', WINDOW_MS);
    s.ci(pr.headSha, 'success');

    // Then the attempt completes without it, its records waiting in the spool
    const done = await s.inState('RollbackComplete', WINDOW_MS - 5000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    await eventually('records waiting in the spool', async () => (await fallbackPending(operator.httpPort)) > 0, 10_000, 250);
    expect(es.component.isDown()).toBe('stop');
    const { downMs, backAt } = await window.end();

    // And once it is back every record of the attempt is in Elasticsearch, once
    const lost = await nothingLost(s, done, shared.nats);
    expect(lost.problems).toEqual([]);
    const spooled = lost.audit.filter((a) => a.correlationId === done.correlationId).map((a) => a.eventId).sort();
    const inIndex = await eventually('backlog shipped', async () => {
      const ids = await shipped(es.url, done.correlationId);
      return ids.length >= spooled.length ? ids.sort() : undefined;
    }, 90_000, 500).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const shippedAfterMs = Date.now() - backAt;
    expect(inIndex).toEqual(spooled);
    await eventually('spool drained', async () => (await fallbackPending(operator.httpPort)) === 0, 30_000, 250);

    // The chain read back from Elasticsearch verifies (the runbook's command)
    const verify = await run(process.execPath, ['src/cli.ts', 'audit', 'verify', '--since', since], { env: { ...process.env, ELASTICSEARCH_URL: es.url }, cwd: new URL('../../', import.meta.url).pathname });
    expect(verify.stdout).toMatch(/intact|ok/i);

    // Readiness is not Elasticsearch's to fail: the spool keeps the operator doing its job.
    await watch.stop();
    expect(watch.samples.filter((x) => x.status !== 200)).toEqual([]);
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, merged: true }]);
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-elasticsearch] stop ${downMs} ms; backlog of ${spooled.length} records of the attempt shipped ${shippedAfterMs} ms after it was back; verify: ${verify.stdout.trim().split('\n').at(-1)}`);
  }, 240_000);
});
