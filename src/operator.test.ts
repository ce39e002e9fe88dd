// Operator.reset (POST /reset) over the in-memory KV and the fake world: the
// leader finds the attempt by its correlationId index key, asks whether the
// caller may update it, and the reconciler takes the annotation's path (PR
// closed, Abort -> Idle).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeWorld, scenarioApp } from '../dev/fakes/world.ts';
import type { AuditLog } from './audit/audit-log.ts';
import type { AuditInput, AuditRecord } from './audit/record.ts';
import { attemptName, type AttemptRecord } from './fsm/record.ts';
import { createLogger } from './observability/log.ts';
import { Metrics } from './observability/metrics.ts';
import { Operator, type OperatorOptions } from './operator.ts';
import { loadConfig, policyDefaults } from './config.ts';
import { settingsFrom } from './policy/settings.ts';
import type { AttemptObjectRef, KubeEvent } from './ports/kubernetes.ts';
import type { ApplicationView } from './ports/argocd.ts';
import { ApplicationReconciler, type ApplicationReconcilerDeps } from './reconcilers/application.ts';
import { AttemptStore, KEYS } from './store/attempt-store.ts';
import { MemoryKV } from './store/memory.ts';
import { StoreUnavailable } from './ports/errors.ts';

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));
const SRE = { username: 'system:serviceaccount:shop:sre', groups: ['system:serviceaccounts'] };
const log = createLogger('ERROR');

class World {
  kv = new MemoryKV();
  world = new FakeWorld(this.kv);
  store = new AttemptStore(this.kv);
  audit: AuditInput[] = [];
  now = Date.now();
  operators: Operator[] = [];

  deps(): Omit<ApplicationReconcilerDeps, 'store'> {
    return {
      argocd: this.world, github: this.world, cluster: this.world, history: this.world, attempts: this.world,
      monitoring: () => ({ settings: settingsFrom(defaults, { merge: { approvers: { users: ['alice'] } } }), environment: 'production', suspended: false }),
      audit: { record: async (input) => { this.audit.push(input); } }, metrics: new Metrics(), log, argocdNamespace: 'argocd',
    };
  }

  /** A reconciler on a clock the test moves. */
  reconciler(): ApplicationReconciler {
    return new ApplicationReconciler({ ...this.deps(), store: this.store, clock: () => new Date(this.now) });
  }

  /** A production attempt of `name` with its PR open: PRCreated, or Abort (AbortRequested) when `abort`. */
  async attempt(name: string, reconciler: ApplicationReconciler, abort: boolean): Promise<AttemptRecord> {
    const s = scenarioApp(name, 'production', this.now);
    await this.world.addApp(s.app);
    await this.world.setCommits(s.app.source!.path, s.commits);
    await this.world.setCi(s.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
    await this.world.setHealth(s.app.ref, 'Degraded');
    for (let i = 0; i < 3; i++) { this.now += 10_000; await reconciler.reconcile(`argocd/${name}`); }
    const record = (await this.store.allAttempts()).find((r) => r.app.name === name)!;
    if (abort) {
      await this.world.setRequests(attemptName(record.app, record.correlationId), { abort: 'investigating' });
      this.now += 10_000;
      await reconciler.reconcile(`argocd/${name}`);
    }
    return (await this.store.getAttempt(name, record.correlationId))!.record;
  }

  async operator(leaderElection = false, options: Partial<OperatorOptions> = {}): Promise<Operator> {
    const auditLog: AuditLog = { record: async (input) => { this.audit.push(input); return {} as AuditRecord; }, flush: async () => {}, close: async () => {} };
    const { audit: _audit, ...deps } = this.deps();
    const operator = new Operator({
      ...deps, kv: this.kv, audit: auditLog, bus: { publish: async () => ({ duplicate: false }), close: async () => {} },
      identity: 'replica-a', leaderElection, resyncIntervalMs: 60_000, ...options,
    });
    this.operators.push(operator);
    await operator.start();
    return operator;
  }
}

let w: World;
afterEach(async () => { for (const o of w.operators) await o.stop(); });

const allow = (asked: AttemptObjectRef[] = [], yes = true, namespaces: 'all' | string[] = 'all') => ({
  caller: SRE, namespaces, mayReset: async (a: AttemptObjectRef) => { asked.push(a); return yes; },
});

describe('Operator.reset', () => {
  it('resets an aborted attempt as the annotation does: its PR closed, Abort -> Idle, the RESET audit record naming the caller', async () => {
    w = new World();
    const aborted = await w.attempt('cart', w.reconciler(), true);
    expect(aborted).toMatchObject({ state: 'Abort', reason: 'AbortRequested' });
    const operator = await w.operator();
    const asked: AttemptObjectRef[] = [];
    const attempt = { namespace: 'argocd', name: attemptName(aborted.app, aborted.correlationId) };

    expect(await operator.reset(aborted.correlationId, allow(asked))).toEqual({ result: 'reset', attempt });
    expect(asked).toEqual([attempt]);
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record).toMatchObject({ state: 'Idle', reason: 'Reset', pullRequest: { state: 'closed' } });
    expect(await w.kv.get(KEYS.active('cart'))).toBeUndefined();
    expect((await w.world.pullRequests())[0]).toMatchObject({ state: 'closed' });
    const reset = w.audit.filter((a) => a.actionType === 'RESET');
    expect(reset).toEqual([expect.objectContaining({
      correlationId: aborted.correlationId, reasoning: `reset by a human: ${SRE.username} through POST /reset/${aborted.correlationId}`,
      metadata: expect.objectContaining({ from: 'Abort', to: 'Idle', resetBy: SRE.username, resetVia: `POST /reset/${aborted.correlationId}` }),
    })]);

    // Once Idle (an ended attempt, found by its index key), a second reset is a conflict, not a second transition.
    expect(await operator.reset(aborted.correlationId, allow())).toEqual({ result: 'not-aborted', attempt, state: 'Idle' });
  });

  it('answers not-found for an unknown id and not-aborted for an attempt still under way, asking the caller\'s right first', async () => {
    w = new World();
    const open = await w.attempt('cart', w.reconciler(), false);
    expect(open.state).toBe('PRCreated');
    const operator = await w.operator();
    const attempt = { namespace: 'argocd', name: attemptName(open.app, open.correlationId) };
    expect(await operator.reset(crypto.randomUUID(), allow())).toEqual({ result: 'not-found' });
    expect(await operator.reset(open.correlationId, allow())).toEqual({ result: 'not-aborted', attempt, state: 'PRCreated' });
    // Someone who may not update it learns nothing of its state.
    expect(await operator.reset(open.correlationId, allow([], false))).toEqual({ result: 'forbidden', attempt });
  });

  it('does nothing for a caller who may not update the attempt', async () => {
    w = new World();
    const aborted = await w.attempt('cart', w.reconciler(), true);
    const operator = await w.operator();
    expect(await operator.reset(aborted.correlationId, allow([], false))).toMatchObject({ result: 'forbidden' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record.state).toBe('Abort');
    expect(w.audit.filter((a) => a.actionType === 'RESET')).toEqual([]);
  });

  it('on a standby: not-leader with the leader key\'s value, and nothing looked up', async () => {
    w = new World();
    await w.kv.txn({ compares: [], puts: [{ key: KEYS.leader, value: 'replica-b' }], deletes: [] });
    const operator = await w.operator(true);
    const asked: AttemptObjectRef[] = [];
    expect(await operator.reset(crypto.randomUUID(), allow(asked))).toEqual({ result: 'not-leader', leader: 'replica-b' });
    expect(asked).toEqual([]);
  });

  it('finds the id by its index key, one get and no scan; an unknown id costs one get too', async () => {
    w = new World();
    const aborted = await w.attempt('cart', w.reconciler(), true);
    const operator = await w.operator();
    // The index key lives as the record does: no lease while the attempt holds its app.
    expect(JSON.parse((await w.kv.get(KEYS.attemptIndex(aborted.correlationId)))!.value)).toEqual({ appKey: 'cart', namespace: 'argocd' });
    expect((await w.kv.get(KEYS.attemptIndex(aborted.correlationId)))!.lease).toBeUndefined();
    const scans = vi.spyOn(w.kv, 'getPrefix');
    const get = vi.spyOn(w.kv, 'get');
    const ids = () => get.mock.calls.filter(([key]) => key.startsWith(KEYS.attemptIndexPrefix));
    expect(await operator.reset(aborted.correlationId, allow())).toMatchObject({ result: 'reset' });
    expect([ids().length, scans.mock.calls.filter(([prefix]) => prefix === KEYS.rollbackPrefix)]).toEqual([1, []]);
    // Ended: the index key is on the record's lease.
    const record = await w.kv.getPrefix(KEYS.attempt('cart', aborted.correlationId));
    expect((await w.kv.get(KEYS.attemptIndex(aborted.correlationId)))!.lease).toBe(record[0]!.lease);
    expect(record[0]!.lease).toBeDefined();
    scans.mockClear();
    get.mockClear();
    // The store was indexed from the start, but this process does not know it: the first miss checks once, the next do not.
    expect(await operator.reset(crypto.randomUUID(), allow())).toEqual({ result: 'not-found' });
    expect(await operator.reset(crypto.randomUUID(), allow())).toEqual({ result: 'not-found' });
    expect(scans.mock.calls.filter(([prefix]) => prefix === KEYS.rollbackPrefix)).toHaveLength(1);
    // The first miss twice (before and after the check), the second once.
    expect(ids()).toHaveLength(2 + 1);
  });

  it('finds an attempt written before the index (no index key) by indexing once, on the record\'s lease', async () => {
    w = new World();
    const aborted = await w.attempt('cart', w.reconciler(), true);
    const ended = await w.attempt('shop', w.reconciler(), true);
    // Reset the second through the annotation: an ended attempt with a lease.
    await w.world.setRequests(attemptName(ended.app, ended.correlationId), { reset: true });
    w.now += 10_000;
    await w.reconciler().reconcile('argocd/shop');
    // As a version before the index wrote them.
    await w.kv.txn({ compares: [], puts: [], deletes: [KEYS.attemptIndex(aborted.correlationId), KEYS.attemptIndex(ended.correlationId)] });
    const operator = await w.operator();
    const scans = vi.spyOn(w.kv, 'getPrefix');
    const attempt = { namespace: 'argocd', name: attemptName(ended.app, ended.correlationId) };
    expect(await operator.reset(ended.correlationId, allow())).toEqual({ result: 'not-aborted', attempt, state: 'Idle' });
    const leased = (await w.kv.getPrefix(KEYS.attempt('shop', ended.correlationId)))[0]!;
    expect(await w.kv.get(KEYS.attemptIndex(ended.correlationId))).toMatchObject({ value: JSON.stringify({ appKey: 'shop', namespace: 'argocd' }), lease: leased.lease });
    expect((await w.kv.get(KEYS.attemptIndex(aborted.correlationId)))?.lease).toBeUndefined();
    expect(await operator.reset(aborted.correlationId, allow())).toMatchObject({ result: 'reset' });
    expect(await operator.reset(crypto.randomUUID(), allow())).toEqual({ result: 'not-found' });
    // One scan for all of it.
    expect(scans.mock.calls.filter(([prefix]) => prefix === KEYS.rollbackPrefix)).toHaveLength(1);
  });

  it('answers an attempt outside the namespaces the caller may update as one that does not exist, asking nothing of it', async () => {
    w = new World();
    const aborted = await w.attempt('cart', w.reconciler(), true);
    const operator = await w.operator();
    const asked: AttemptObjectRef[] = [];
    expect(await operator.reset(aborted.correlationId, allow(asked, true, ['shop']))).toEqual({ result: 'not-found' });
    expect(await operator.reset(crypto.randomUUID(), allow(asked, true, ['shop']))).toEqual({ result: 'not-found' });
    expect(asked).toEqual([]);
    // Nowhere at all: the id is not even looked up (the reconciler's own reads may run meanwhile).
    const get = vi.spyOn(w.kv, 'get');
    const scans = vi.spyOn(w.kv, 'getPrefix');
    expect(await operator.reset(aborted.correlationId, allow(asked, true, []))).toEqual({ result: 'not-found' });
    expect(get.mock.calls.filter(([key]) => key.startsWith(KEYS.attemptIndexPrefix))).toEqual([]);
    expect(scans.mock.calls.filter(([prefix]) => prefix === KEYS.rollbackPrefix)).toEqual([]);
    expect(await operator.reset(aborted.correlationId, allow(asked, true, ['argocd']))).toMatchObject({ result: 'reset' });
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record.state).toBe('Idle');
  });

  it('answers accepted when the reset is still under way at the end of the wait', async () => {
    w = new World();
    const aborted = await w.attempt('cart', w.reconciler(), true);
    const operator = await w.operator();
    // GitHub refuses every close for now: the PR stays open, the attempt in Abort.
    await w.world.failNext('closePullRequest', 'UNAVAILABLE', 1000);
    expect(await operator.reset(aborted.correlationId, allow(), 500)).toMatchObject({ result: 'accepted' });
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record.state).toBe('Abort');
    // The request holds: once GitHub answers, the next reconcile closes the PR and writes the reset.
    await w.world.failNext('closePullRequest', 'UNAVAILABLE', 0);
    await operator.resync();
    await expect.poll(async () => (await w.store.getAttempt('cart', aborted.correlationId))!.record.state, { timeout: 5000 }).toBe('Idle');
    expect(w.audit.find((a) => a.actionType === 'RESET')?.metadata).toMatchObject({ resetBy: SRE.username });
  });
});

describe('ApplicationReconciler.requestReset', () => {
  it('is read as the reset annotation while it is live, and lapses unwritten', async () => {
    w = new World();
    const reconciler = w.reconciler();
    const aborted = await w.attempt('cart', reconciler, true);
    reconciler.requestReset(aborted.correlationId, { username: 'bob', via: 'test' }, 60_000);
    w.now += 61_000;
    await reconciler.reconcile('argocd/cart');
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record.state).toBe('Abort');
    // A lapsed request stays lapsed, and touched nothing: the PR is still open.
    await reconciler.reconcile('argocd/cart');
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record.state).toBe('Abort');
    expect((await w.world.pullRequests())[0]).toMatchObject({ state: 'open' });
    expect(w.audit.filter((a) => a.actionType === 'PR_CLOSED' || a.actionType === 'RESET')).toEqual([]);
    // A live one is taken at the next reconcile.
    reconciler.requestReset(aborted.correlationId, { username: 'bob', via: 'test' }, 60_000);
    w.now += 59_000;
    await reconciler.reconcile('argocd/cart');
    expect((await w.store.getAttempt('cart', aborted.correlationId))!.record).toMatchObject({ state: 'Idle', reason: 'Reset' });
    expect(w.audit.find((a) => a.actionType === 'RESET')?.metadata).toMatchObject({ resetBy: 'bob', resetVia: 'test' });
  });

  it('leaves the annotation\'s reset saying it came by annotation', async () => {
    w = new World();
    const reconciler = w.reconciler();
    const aborted = await w.attempt('cart', reconciler, true);
    await w.world.setRequests(attemptName(aborted.app, aborted.correlationId), { reset: true });
    await reconciler.reconcile('argocd/cart');
    const reset = w.audit.find((a) => a.actionType === 'RESET');
    expect(reset).toMatchObject({ reasoning: 'reset by a human', metadata: { resetVia: 'annotation' } });
    expect(reset!.metadata).not.toHaveProperty('resetBy');
  });
});

describe('a replica whose GITHUB_ORG does not hold the repository of an attempt in flight (issue 19 §3)', () => {
  const settle = () => new Promise((r) => setTimeout(r, 300));
  const recorder = (emitted: KubeEvent[]) => ({ emit: (event: KubeEvent) => { emitted.push(event); }, flush: async () => {} });

  it('leaves it as it is: no GitHub call, no write, said once in a Warning Event; a replica of the right org carries it on', async () => {
    // Given a production attempt of acme/gitops waiting for its approval, started by a replica for acme
    w = new World();
    const open = await w.attempt('cart', w.reconciler(), false);
    expect(open.state).toBe('PRCreated');
    const reads = () => w.world.callCount('getPullRequestStatus');
    const before = await reads();

    // When a replica configured for another org leads and is asked to reconcile it, again and again
    const emitted: KubeEvent[] = [];
    const other = await w.operator(false, { allowedOwner: 'other-org', events: recorder(emitted) });
    for (let i = 0; i < 3; i++) {
      other.enqueue(open.app);
      await other.resync();
      await settle();
    }

    // Then it read nothing of the PR, wrote nothing, and said so once
    expect(await reads()).toBe(before);
    expect((await w.store.getAttempt('cart', open.correlationId))!.record).toEqual(open);
    const left = emitted.filter((e) => e.reason === 'AttemptOutsideGitHubOrg');
    expect(left).toHaveLength(1);
    expect(left[0]).toMatchObject({
      type: 'Warning', action: 'LeaveAlone', regarding: { kind: 'RollbackAttempt', namespace: 'argocd', name: attemptName(open.app, open.correlationId) },
      related: { kind: 'Application', name: 'cart' },
      note: expect.stringMatching(/^Left RollbackAttempt argocd\/cart-\w+ \(PRCreated\) as it is: spec\.source\.repoURL https:\/\/github\.com\/acme\/gitops\.git is outside GITHUB_ORG other-org/),
    });

    // When a replica for acme leads instead
    await other.stop();
    const acme = await w.operator(false, { allowedOwner: 'acme', events: recorder(emitted) });
    acme.enqueue(open.app);
    await settle();
    // Then it carries the attempt on: it reads its PR again
    expect(await reads()).toBeGreaterThan(before);
    expect(emitted.filter((e) => e.reason === 'AttemptOutsideGitHubOrg')).toHaveLength(1);
  });
});

describe('Operator prepare (issue 19 §3)', () => {
  const settle = () => new Promise((r) => setTimeout(r, 300));
  it('runs before an app that may get an attempt is reconciled: Degraded with no attempt of its own; not for a healthy app or one with an attempt', async () => {
    w = new World();
    const prepared: string[] = [];
    const s = scenarioApp('web', 'staging', w.now);
    await w.world.addApp(s.app);
    const open = await w.attempt('cart', w.reconciler(), false);
    const operator = await w.operator(false, { allowedOwner: 'acme', prepare: async (app: ApplicationView) => { prepared.push(app.ref.name); } });

    operator.enqueue({ namespace: 'argocd', name: 'web' });
    operator.enqueue(open.app);
    await settle();
    expect(prepared).toEqual([]);

    // Degraded: prepared before each reconcile while its degradation is counted (the health key's write wakes it again)
    await w.world.setHealth(s.app.ref, 'Degraded');
    operator.enqueue({ namespace: 'argocd', name: 'web' });
    await settle();
    expect(prepared.length).toBeGreaterThan(0);
    expect(new Set(prepared)).toEqual(new Set(['web']));
  });

  it('the resync queues what `resyncs` says, not only what this installation monitors: an app whose claim is still to be taken', async () => {
    // Given a Degraded app nobody has claimed yet: this installation does not monitor it (yet)
    w = new World();
    const s = scenarioApp('web', 'staging', w.now);
    await w.world.addApp({ ...s.app, health: 'Degraded' });
    const prepared: string[] = [];
    const operator = await w.operator(false, {
      monitoring: () => undefined, resyncs: (app: ApplicationView) => app.ref.name === 'web', prepare: async (app: ApplicationView) => { prepared.push(app.ref.name); },
    });
    // When the resync runs, it is reconciled, and so prepared (its claim taken)
    await operator.resync();
    await settle();
    expect(prepared).toContain('web');
  });
});

describe('Operator.resyncSoon', () => {
  it('logs a resync that etcd refuses instead of rejecting: a RollbackPolicy changed during an etcd outage never stops the operator', async () => {
    w = new World();
    const lines: string[] = [];
    const operator = await w.operator(false, { log: createLogger('WARN', {}, (line) => lines.push(line)) });
    vi.spyOn(w.kv, 'getKeys').mockRejectedValue(new StoreUnavailable('etcd unavailable: get /ai-operator/apps/* (keys only): circuit breaker open'));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      operator.resyncSoon('a RollbackPolicy changed');
      await vi.waitFor(() => expect(lines.some((l) => l.includes('Resync failed'))).toBe(true));
      await new Promise((r) => setTimeout(r, 10));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    expect(JSON.parse(lines.find((l) => l.includes('Resync failed'))!)).toMatchObject({
      level: 'WARN', module: 'Operator', why: 'a RollbackPolicy changed', error: expect.stringContaining('etcd unavailable'),
    });
  });
});

describe('the cleanup of ended attempts', () => {
  it('sweeps a few seconds after an attempt lets go of its app, not only after the next resync; one sweep for a burst', async () => {
    w = new World();
    let sweeps = 0;
    const objects = { endedObjects: () => { sweeps++; return []; }, noteBranch: async () => {}, deleteObject: async () => {} };
    await w.kv.txn({ compares: [], deletes: [], puts: [{ key: KEYS.active('argocd_cart'), value: 'c1' }, { key: KEYS.active('argocd_shop'), value: 'c2' }] });
    await w.operator(false, { cleanupObjects: objects, cleanupDelayMs: 20, resyncIntervalMs: 600_000 });
    // The start's resync sweeps once
    await vi.waitFor(() => expect(sweeps).toBe(1));
    // When two attempts end at once
    await w.kv.txn({ compares: [], puts: [], deletes: [KEYS.active('argocd_cart')] });
    await w.kv.txn({ compares: [], puts: [], deletes: [KEYS.active('argocd_shop')] });
    // Then one sweep follows, long before the next resync
    await vi.waitFor(() => expect(sweeps).toBe(2));
    await new Promise((r) => setTimeout(r, 100));
    expect(sweeps).toBe(2);
  });
});
