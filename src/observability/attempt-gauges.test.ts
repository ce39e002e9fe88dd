// The attempt gauges from the etcd record: what reading them costs for 10,000
// apps with 100 active attempts, and an operator that shows them from etcd —
// at start-up without any transition, after an abort, and without an app whose
// attempt ended.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeWorld, scenarioApp } from '../../dev/fakes/world.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { AuditRecord } from '../audit/record.ts';
import { attemptName, type AttemptRecord } from '../fsm/record.ts';
import type { State } from '../fsm/table.ts';
import { Operator } from '../operator.ts';
import { loadConfig, policyDefaults } from '../config.ts';
import { settingsFrom } from '../policy/settings.ts';
import { ApplicationReconciler } from '../reconcilers/application.ts';
import { AttemptStore, KEYS } from '../store/attempt-store.ts';
import type { KV } from '../store/kv.ts';
import { MemoryKV } from '../store/memory.ts';
import { AttemptGauges } from './attempt-gauges.ts';
import { createLogger } from './log.ts';
import { METRIC, Metrics } from './metrics.ts';

const log = createLogger('ERROR');

/** A KV that counts the calls made to it and the keys its reads return. */
function counting(kv: KV) {
  const calls = { get: 0, getPrefix: 0, getKeys: 0, keysRead: 0, txn: 0, grantLease: 0 };
  const counted: KV = {
    get: async (key) => { calls.get++; const kv1 = await kv.get(key); if (kv1) calls.keysRead++; return kv1; },
    getPrefix: async (prefix, limit) => { calls.getPrefix++; const all = await kv.getPrefix(prefix, limit); calls.keysRead += all.length; return all; },
    getKeys: async (prefix) => { calls.getKeys++; return kv.getKeys(prefix); },
    txn: async (t) => { calls.txn++; return kv.txn(t); },
    grantLease: async (ttl) => { calls.grantLease++; return kv.grantLease(ttl); },
    watchPrefix: (prefix, onChange, onError) => kv.watchPrefix(prefix, onChange, onError),
    close: () => kv.close(),
  };
  const reset = () => { for (const k of Object.keys(calls) as Array<keyof typeof calls>) calls[k] = 0; };
  return { kv: counted, calls, reset };
}

function record(name: string, i: number, state: State): AttemptRecord {
  return {
    correlationId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, app: { namespace: 'argocd', name },
    environment: i % 2 === 0 ? 'staging' : 'production', state, reason: 'DegradationConfirmed', message: '', since: new Date(0).toISOString(),
    version: 1, createdAt: new Date(0).toISOString(), degradation: { firstSeenAt: new Date(0).toISOString(), checks: 3 }, invariants: [], transitions: [],
    settings: {} as AttemptRecord['settings'],
  };
}

describe('AttemptGauges', () => {
  it('reads, for 10,000 apps with 100 active attempts, the 100 state keys per refresh and writes nothing', async () => {
    const memory = new MemoryKV();
    const store = new AttemptStore(memory);
    // 10,000 apps that have all been rolled back once (their attempts ended, records kept 7 days) ...
    const puts = Array.from({ length: 10_000 }, (_, i) => [
      { key: KEYS.lastRollback(`app-${i}`), value: new Date(0).toISOString() },
      { key: KEYS.state(`app-${i}`, `old-${i}`), value: JSON.stringify({ state: 'RollbackComplete' }) },
      { key: KEYS.attempt(`app-${i}`, `old-${i}`), value: JSON.stringify(record(`app-${i}`, i, 'RollbackComplete')) },
    ]).flat();
    await memory.txn({ compares: [], puts, deletes: [] });
    // ... and 100 of them with an attempt under way, one of them aborted.
    for (let i = 0; i < 100; i++) {
      const r = record(`app-${i}`, i, i === 0 ? 'Abort' : 'PRCreated');
      const result = await store.commit({ appKey: `app-${i}`, record: r, expectedModRevision: null, events: [] });
      expect(result.ok).toBe(true);
    }
    const { kv, calls, reset } = counting(memory);
    const counted = new AttemptStore(kv);
    const gauges = new AttemptGauges(counted);

    // The resync's one read of the apps index gives the active ids (the operator does it anyway): the keys of
    // the index without values, then the 100 active keys' values (it read all 10,200 values before).
    reset();
    const { active } = await counted.appsWithState();
    gauges.learn(active);
    expect(active).toHaveLength(100);
    expect(calls).toEqual({ get: 100, getPrefix: 0, getKeys: 1, keysRead: 100, txn: 0, grantLease: 0 });
    reset();
    // The first refresh reads each attempt's record once (app name and environment never change) ...
    const first = await gauges.read(active.map((a) => a.appKey));
    expect(first).toHaveLength(100);
    expect(calls).toEqual({ get: 300, getPrefix: 0, getKeys: 0, keysRead: 200, txn: 0, grantLease: 0 }); // getAttempt: state, attempt, health (absent)
    reset();
    // ... every later one only the 100 state keys.
    const later = await gauges.read(active.map((a) => a.appKey));
    expect(calls).toEqual({ get: 100, getPrefix: 0, getKeys: 0, keysRead: 100, txn: 0, grantLease: 0 });
    expect(later).toEqual(first);
    expect(later.filter((a) => a.state === 'PRCreated')).toHaveLength(99);

    // An app whose active key changed is asked for its id again: one more key.
    gauges.forget('app-1');
    reset();
    await gauges.read(active.map((a) => a.appKey));
    expect(calls).toEqual({ get: 101, getPrefix: 0, getKeys: 0, keysRead: 101, txn: 0, grantLease: 0 });
  });

  it('drops an app whose active key is gone', async () => {
    const memory = new MemoryKV();
    const store = new AttemptStore(memory);
    await store.commit({ appKey: 'cart', record: record('cart', 0, 'PRCreated'), expectedModRevision: null, events: [] });
    const gauges = new AttemptGauges(store);
    expect(await gauges.read(['cart'])).toMatchObject([{ app: 'cart', environment: 'staging', state: 'PRCreated' }]);
    await store.commit({ appKey: 'cart', record: { ...record('cart', 0, 'RollbackComplete'), version: 2 }, expectedModRevision: (await store.getAttempt('cart', record('cart', 0, 'PRCreated').correlationId))!.modRevision, events: [] });
    gauges.forget('cart');
    expect(await gauges.read(['cart'])).toEqual([]);
  });
});

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));

describe('Operator: the attempt gauges from etcd', () => {
  const operators: Operator[] = [];
  afterEach(async () => { for (const o of operators.splice(0)) await o.stop(); });

  it('shows a stored attempt at start-up without a transition, stops counting it once aborted, and drops it once reset', async () => {
    const kv = new MemoryKV();
    const world = new FakeWorld(kv);
    const store = new AttemptStore(kv);
    let now = Date.now();
    const deps = {
      argocd: world, github: world, cluster: world, history: world, attempts: world,
      monitoring: () => ({ settings: settingsFrom(defaults, { merge: { approvers: { users: ['alice'] } } }), environment: 'production' as const, suspended: false }),
      audit: { record: async () => {} }, log, argocdNamespace: 'argocd',
    };
    // An attempt a previous process left in PRCreated (CI still pending on its PR).
    const s = scenarioApp('cart', 'production', now);
    await world.addApp(s.app);
    await world.setCommits(s.app.source!.path, s.commits);
    await world.setCi(s.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
    await world.setHealth(s.app.ref, 'Degraded');
    const previous = new ApplicationReconciler({ ...deps, store, metrics: new Metrics(), clock: () => new Date(now) });
    for (let i = 0; i < 3; i++) { now += 10_000; await previous.reconcile('argocd/cart'); }
    const before = (await store.allAttempts())[0]!;
    expect(before.state).toBe('PRCreated');

    // A new process: nothing in its registry but what it reads from etcd.
    const metrics = new Metrics();
    const auditLog: AuditLog = { record: async () => ({}) as AuditRecord, flush: async () => {}, close: async () => {} };
    const operator = new Operator({
      ...deps, metrics, kv, audit: auditLog, bus: { publish: async () => ({ duplicate: false }), close: async () => {} },
      identity: 'replica-a', leaderElection: false, resyncIntervalMs: 600_000,
    });
    operators.push(operator);
    const gauges = async () => {
      const text = await metrics.registry.metrics();
      const line = (name: string, labels: string) => new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1];
      return {
        production: line(METRIC.activeRollbacks, 'environment="production"'),
        state: statesOf(text),
      };
    };
    await operator.start();
    await expect.poll(gauges, { timeout: 3000 }).toEqual({ production: '1', state: { cart: 'PRCreated' } });
    expect((await store.getAttempt('cart', before.correlationId))!.record.version).toBe(before.version);

    // Aborted by a human: no longer in flight (long before the next resync), still shown in Abort.
    await world.setRequests(attemptName(before.app, before.correlationId), { abort: 'investigating' });
    operator.enqueue(before.app);
    await expect.poll(gauges, { timeout: 3000 }).toEqual({ production: '0', state: { cart: 'Abort' } });

    // Reset: the attempt has ended, its app has no state series any more.
    expect(await operator.reset(before.correlationId, { caller: { username: 'sre', groups: [] }, namespaces: 'all', mayReset: async () => true })).toMatchObject({ result: 'reset' });
    await expect.poll(gauges, { timeout: 3000 }).toEqual({ production: '0', state: {} });
  });
});

/** The app -> state the fsm_state series say (the one at 1 per app). */
function statesOf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^ai_operator_fsm_state\{app_name="([^"]+)",state="([^"]+)"\} 1$/gm)) out[m[1]!] = m[2]!;
  return out;
}
