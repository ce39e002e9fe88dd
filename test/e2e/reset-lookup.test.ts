// POST /reset/{correlationId}: who may ask is decided before the id is looked
// at, and the id is looked up by its index key, not by a scan (issue 19 §4).
// The operator (src/main.ts) runs on an etcd of this test's own that logs every
// request it serves with its keys (etcd's debug "request stats"), so what the
// operator read for a request is read off etcd itself; the callers are real
// ServiceAccounts, the SubjectAccessReviews the real API server's.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startEtcd } from '../../dev/stack/etcd.ts';
import { appKey, attemptName, type AttemptRecord } from '../../src/fsm/record.ts';
import type { ResetBody } from '../../src/server/reset.ts';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

async function postReset(port: number, correlationId: string, token: string, who: string): Promise<{ status: number; body: ResetBody }> {
  const res = await fetch(`http://127.0.0.1:${port}/reset/${correlationId}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  const body = await res.json() as ResetBody;
  console.log(`POST /reset/${correlationId} (${who}) -> ${res.status} ${JSON.stringify(body)}`);
  return { status: res.status, body };
}

/** One unary request etcd served, from its debug log. */
interface EtcdRequest { type: string; content: string }

/**
 * What etcd served others while `run` ran, from its log: a marker read of the
 * test's own afterwards shows the log has caught up, and which connection is the
 * test's (left out). etcd's logger samples each message: past 100 "request
 * stats" lines in a second it keeps one in a hundred. The window starts after a
 * second's pause, so that what came before has not used that budget up, and a
 * window whose second held 100 lines is refused: its count would not be etcd's.
 */
async function servedDuring<T>(logFile: string, kv: EtcdKV, run: () => Promise<T>): Promise<{ result: T; requests: EtcdRequest[]; until: number }> {
  await new Promise((r) => setTimeout(r, 1100));
  const from = Date.now() - 1;
  const result = await run();
  const to = Date.now() + 1;
  const marker = `/marker/${crypto.randomUUID()}`;
  await kv.get(marker);
  const served = await eventually(`etcd logged the marker read (if it served 100 requests in that second, its log sampler dropped the line)`, async () => {
    const all = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"request stats"')).map((l) => JSON.parse(l) as Record<string, string>);
    return all.some((r) => r['request content']!.includes(marker)) ? all : undefined;
  });
  const markerRead = served.find((r) => r['request content']!.includes(marker))!;
  // The sampler goes by when a line is logged (`ts`): any second of it that dropped a line logged 100 before.
  const logged = served.map((r) => Date.parse(r.ts!)).filter((at) => at >= from - 1000 && at <= Date.parse(markerRead.ts!));
  const busiest = Math.max(...logged.map((at) => logged.filter((other) => other >= at && other < at + 1000).length));
  expect(busiest, 'etcd logged 100 requests within a second of this window: its log sampler may have dropped some').toBeLessThan(100);
  const requests = served
    .filter((r) => { const at = Date.parse(r['start time']!); return at >= from && at <= to && r.remote !== markerRead.remote; })
    .map((r) => ({ type: r['response type']!, content: r['request content']! }));
  return { result, requests, until: to };
}

/**
 * Waits until etcd has served a read whose content has `what`, started after `since`: the leader's cleanup
 * sweep (after each resync) reads the index key of an aborted attempt that holds its app once, and again only
 * when its RollbackAttempt object changes (or ten minutes on), so no window after that read holds another.
 */
async function untilServed(logFile: string, what: string, since: number): Promise<void> {
  await eventually(`etcd serving a read of ${what}`, async () => readFileSync(logFile, 'utf8').split('\n')
    .filter((l) => l.includes('"request stats"'))
    .map((l) => JSON.parse(l) as Record<string, string>)
    .some((r) => r['response type']!.endsWith('/Range') && r['request content']!.includes(what) && Date.parse(r['start time']!) >= since) || undefined, 45_000, 100);
}

describe('POST /reset/{correlationId}: authorized before the id is read, found through its index', () => {
  it('the same 403 for an existing and an unknown id with no etcd read for it; the reset by the index key, no scan; an attempt written before the index found', async () => {
    // Given an etcd that logs every request with its keys, for the operator and this test
    const etcd = await startEtcd(mkdtempSync(join(tmpdir(), 'ai-operator-reset-lookup-')), 'etcd-reset-lookup', { logLevel: 'debug' });
    stoppers.push(() => etcd.process.stop());
    const s = await givenRollbackScenario({ ...stack, etcd: etcd.endpoint }, 'reset-lookup', { environment: 'staging', startOperator: false }, stoppers);
    const ns = s.namespace;
    const prefix = `/e2e/${ns}`;
    const kv = new EtcdKV([etcd.endpoint], { prefix });
    stoppers.push(() => kv.close());
    const rollbackScan = `key:"${prefix}${KEYS.rollbackPrefix}" range_end:`;
    const indexRead = (id: string) => `key:"${prefix}${KEYS.attemptIndex(id)}"`;
    const anyIndexRead = `key:"${prefix}${KEYS.attemptIndexPrefix}`;
    const reads = (requests: EtcdRequest[], what: string) => requests.filter((r) => r.type.endsWith('/Range') && r.content.includes(what));

    // And an attempt an earlier version wrote, ended (on its 7-day lease), without an index key
    const legacy = crypto.randomUUID();
    const legacyApp = { namespace: ns, name: 'legacy' };
    const legacyKey = appKey(legacyApp, 'argocd');
    const lease = await kv.grantLease(3600);
    const now = new Date().toISOString();
    const legacyRecord = {
      correlationId: legacy, app: legacyApp, environment: 'staging', state: 'Idle', reason: 'Reset', message: 'reset by a human',
      since: now, version: 4, createdAt: now, degradation: { firstSeenAt: now, checks: 3 }, invariants: [],
    } satisfies Partial<AttemptRecord>;
    await kv.txn({ compares: [], deletes: [], puts: [
      { key: KEYS.state(legacyKey, legacy), value: JSON.stringify({ state: 'Idle', since: now, reason: 'Reset', version: 4 }), lease: lease.id },
      { key: KEYS.attempt(legacyKey, legacy), value: JSON.stringify(legacyRecord), lease: lease.id },
    ] });

    // And the operator, watching this namespace; a ServiceAccount that may update RollbackAttempts here, one that has no role
    const operator = await s.startOperator();
    await kubectlOk(stack, ['create', 'serviceaccount', 'resetter', '-n', ns]);
    await kubectlOk(stack, ['create', 'serviceaccount', 'bystander', '-n', ns]);
    await kubectlOk(stack, ['create', 'role', 'rollbackattempt-resetter', '-n', ns, '--verb=update', '--resource=rollbackattempts.ai-operator.io']);
    await kubectlOk(stack, ['create', 'rolebinding', 'rollbackattempt-resetter', '-n', ns, '--role=rollbackattempt-resetter', `--serviceaccount=${ns}:resetter`]);
    const resetter = (await kubectlOk(stack, ['create', 'token', 'resetter', '-n', ns])).trim();
    const bystander = (await kubectlOk(stack, ['create', 'token', 'bystander', '-n', ns])).trim();

    // And an attempt aborted by failing CI
    await s.release('v2', true);
    const pr = await s.firstPull();
    const open = await s.inState('PRCreated');
    const cid = open.correlationId;
    const attempt = { namespace: ns, name: attemptName(open.app, cid) };
    s.ci(pr.headSha, 'failure');
    const abortedAt = Date.now();
    await s.inState('Abort');
    await eventually('the operator serving HTTP', async () => (await fetch(`http://127.0.0.1:${operator.httpPort}/healthz`)).ok);
    const unknown = crypto.randomUUID();
    // The cleanup sweep reads the aborted attempt's index key once (it holds its app; the branch waits), then
    // not again while its object is unchanged: the windows below start after that read.
    await untilServed(etcd.process.logFile, indexRead(cid), abortedAt);

    // When the bystander asks for the aborted attempt and for an id no attempt has
    const whileAborted = await servedDuring(etcd.process.logFile, kv, async () => [
      await postReset(operator.httpPort, cid, bystander, 'bystander, aborted attempt'),
      await postReset(operator.httpPort, unknown, bystander, 'bystander, unknown id'),
    ]);
    const count = (what: string) => reads(whileAborted.requests, what).length;
    console.log(`etcd reads by the operator for the two bystander requests: ${count(rollbackScan)} scans of ${KEYS.rollbackPrefix}, ${count(anyIndexRead)} of index keys, ${count(unknown)} naming the unknown id, ${count(cid)} naming the aborted one (the reconciler's own included)`);
    // Then both answers are the same 403, naming nothing of an attempt
    const [existing, missing] = whileAborted.result;
    const sameBody = (b: ResetBody) => ({ ...b, correlationId: '(the id asked)' });
    expect([existing!.status, missing!.status]).toEqual([403, 403]);
    expect(sameBody(existing!.body)).toEqual(sameBody(missing!.body));
    expect(Object.keys(existing!.body).sort()).toEqual(['correlationId', 'message', 'result', 'user']);
    // And the operator neither scanned the attempts nor read an index key for them (the reconciler's own
    // reads of the active attempt may fall in the window: the ended attempt below shows none at all)
    expect(reads(whileAborted.requests, rollbackScan)).toEqual([]);
    expect(reads(whileAborted.requests, anyIndexRead)).toEqual([]);
    expect(reads(whileAborted.requests, unknown)).toEqual([]);

    // When the resetter resets the aborted attempt
    const reset = await servedDuring(etcd.process.logFile, kv, () => postReset(operator.httpPort, cid, resetter, 'resetter, aborted attempt'));
    // Then it is reset, found by its index key without a scan
    expect(reset.result).toMatchObject({ status: 200, body: { result: 'reset', state: 'Idle', attempt } });
    expect(reads(reset.requests, indexRead(cid))).toHaveLength(1);
    expect(reads(reset.requests, rollbackScan)).toEqual([]);
    // And the index key lives on the ended record's lease
    const key = appKey(open.app, 'argocd');
    const [indexKey, attemptKey] = [await kv.get(KEYS.attemptIndex(cid)), await kv.get(KEYS.attempt(key, cid))];
    expect(attemptKey?.lease).toBeDefined();
    expect(indexKey).toMatchObject({ value: JSON.stringify({ appKey: key, namespace: ns }), lease: attemptKey!.lease });

    // The cleanup sweep that follows an attempt's end reads it once more; then its object says what became of its
    // branch, and nothing reads it again: the next window starts after that read.
    await untilServed(etcd.process.logFile, indexRead(cid), reset.until);

    // When the bystander asks for the ended attempt (nothing of the operator reads it any more) and an unknown id
    const ended = await servedDuring(etcd.process.logFile, kv, async () => [
      await postReset(operator.httpPort, cid, bystander, 'bystander, ended attempt'),
      await postReset(operator.httpPort, unknown, bystander, 'bystander, unknown id'),
    ]);
    // Then the same 403 again, and etcd served no read that names either id, no index key, no scan
    expect(ended.result.map((a) => a.status)).toEqual([403, 403]);
    expect(sameBody(ended.result[0]!.body)).toEqual(sameBody(missing!.body));
    expect(sameBody(ended.result[1]!.body)).toEqual(sameBody(missing!.body));
    const forIds = ended.requests.filter((r) => r.type.endsWith('/Range') && [cid, unknown, anyIndexRead, rollbackScan].some((what) => r.content.includes(what)));
    expect(forIds).toEqual([]);
    console.log(`etcd requests served while the bystander asked twice: ${ended.requests.length} in all, ${forIds.length} reads for the ids [${ended.requests.map((r) => `${r.type} ${r.content.slice(0, 90)}`).join(' | ')}]`);

    // When the resetter asks for the attempt the earlier version wrote
    const found = await servedDuring(etcd.process.logFile, kv, () => postReset(operator.httpPort, legacy, resetter, 'resetter, attempt without an index key'));
    // Then it is found (ended: nothing to reset) by the one scan of this leadership term, which indexes it on its own lease
    expect(found.result).toMatchObject({ status: 409, body: { result: 'not-aborted', state: 'Idle', attempt: { namespace: ns, name: attemptName(legacyApp, legacy) } } });
    expect(reads(found.requests, rollbackScan)).toHaveLength(1);
    expect(await kv.get(KEYS.attemptIndex(legacy))).toMatchObject({ value: JSON.stringify({ appKey: legacyKey, namespace: ns }), lease: lease.id });
    // And from then on it, and an unknown id, cost one read of the index key each, no scan
    const after = await servedDuring(etcd.process.logFile, kv, async () => [
      await postReset(operator.httpPort, legacy, resetter, 'resetter, attempt indexed since'),
      await postReset(operator.httpPort, unknown, resetter, 'resetter, unknown id'),
    ]);
    expect(after.result).toMatchObject([{ status: 409, body: { result: 'not-aborted' } }, { status: 404, body: { result: 'not-found' } }]);
    expect([reads(after.requests, indexRead(legacy)).length, reads(after.requests, indexRead(unknown)).length, reads(after.requests, rollbackScan).length]).toEqual([1, 1, 0]);
  }, 180_000);
});
