// The application reconciler end to end over the in-memory KV and the fake
// world: observe → decide → commit → execute, with a controllable clock.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeWorld, scenarioApp } from '../../dev/fakes/world.ts';
import { AuditOutbox } from '../audit/outbox.ts';
import type { AuditInput } from '../audit/record.ts';
import type { CloudEvent } from '../fsm/cloud-events.ts';
import { attemptName, type AttemptRecord } from '../fsm/record.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { loadConfig, policyDefaults } from '../config.ts';
import { monitoringFor, settingsFrom } from '../policy/settings.ts';
import { AttemptStore, KEYS } from '../store/attempt-store.ts';
import { StoreUnavailable } from '../store/kv.ts';
import { MemoryKV } from '../store/memory.ts';
import { TerminalError } from '../ports/errors.ts';
import type { KubeEvent } from '../ports/kubernetes.ts';
import { statusOf } from '../integrations/rollback-attempts.ts';
import { ApplicationReconciler, type ApplicationReconcilerDeps } from './application.ts';

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));

class Harness {
  kv = new MemoryKV();
  world = new FakeWorld(this.kv);
  store = new AttemptStore(this.kv);
  audit: AuditInput[] = [];
  now = Date.parse('2026-11-22T03:00:00Z');
  metrics = new Metrics();
  reconciler: ApplicationReconciler;

  events: KubeEvent[] = [];

  constructor(spec: Parameters<typeof settingsFrom>[1] = {}, extra: { allowedOwner?: string; monitoring?: ApplicationReconcilerDeps['monitoring'] } = {}) {
    this.reconciler = new ApplicationReconciler({
      ...extra,
      events: { emit: (event) => { this.events.push(event); }, flush: async () => {} },
      store: this.store, argocd: this.world, github: this.world, cluster: this.world, history: this.world, attempts: this.world, approvalEnforcement: this.world,
      monitoring: extra.monitoring ?? ((app) => ({ settings: settingsFrom(defaults, { ...spec, merge: { approvers: { users: ['alice'] }, ...spec.merge } }), environment: app.labels.environment === 'staging' ? 'staging' : 'production', suspended: false })),
      audit: { record: async (input) => { this.audit.push(input); } },
      metrics: this.metrics,
      log: createLogger('ERROR'),
      argocdNamespace: 'argocd',
      clock: () => new Date(this.now),
    });
  }

  async reconcileEvery(seconds: number, times: number, key: string): Promise<void> {
    for (let i = 0; i < times; i++) {
      this.now += seconds * 1000;
      await this.reconciler.reconcile(key);
    }
  }

  async record(name: string): Promise<AttemptRecord | undefined> {
    const all = await this.store.allAttempts();
    return all.filter((r) => r.app.name === name).sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1);
  }

  async outboxTypes(): Promise<string[]> {
    return (await this.store.pendingOutbox(1000)).map((e) => (e.event as CloudEvent).type.replace('io.ai-operator.', ''));
  }
}

describe('ApplicationReconciler', () => {
  let h: Harness;
  beforeEach(() => { h = new Harness(); });

  async function given(name: string, env: 'staging' | 'production') {
    const s = scenarioApp(name, env, h.now);
    await h.world.addApp(s.app);
    await h.world.setCommits(s.app.source!.path, s.commits);
    await h.world.setCi(s.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
    return s;
  }

  it('rolls a degraded staging app back to its last stable revision and confirms recovery', async () => {
    const s = await given('payment-service', 'staging');
    const key = 'argocd/payment-service';
    await h.world.setHealth(s.app.ref, 'Degraded', [{ name: 'payment-service', desired: 3, updated: 3, available: 1, unavailable: 2, progressDeadlineExceeded: true }]);

    await h.reconcileEvery(10, 3, key);
    let record = await h.record('payment-service');
    expect(record?.state).toBe('PRCreated');
    expect(record?.candidate).toMatchObject({ revision: s.good, mode: 'metrics', uptime: 0.997 });
    const [pr] = await h.world.pullRequests();
    expect(pr).toMatchObject({ title: `Rollback payment-service (staging) to ${s.good.slice(0, 7)}`, branch: `ai-operator/rollback/${attemptName(s.app.ref, record!.correlationId)}`, labels: ['ai-operator', 'rollback', 'staging'] });
    expect(pr!.spec).toMatchObject({ paths: ['apps/payment-service/manifest.yaml'], targetSha: s.good, base: 'main' });
    expect(pr!.spec.body).toContain(record!.correlationId);
    expect(pr!.spec.body).toContain('## Invariants');
    // The commits undone are listed from what the candidate search read: the set's history is read once per
    // attempt (the target is one of its commits, so what it reaches needs no second read).
    expect(pr!.spec.body).toMatch(new RegExp(`- \\[\`${s.commits[0]!.sha.slice(0, 7)}\`\\]`));
    expect(await h.world.callCount('readRepositoryContent')).toBe(1);

    await h.world.setCiOfOpenPullRequests('success');
    await h.reconcileEvery(10, 1, key);
    record = await h.record('payment-service');
    expect(record?.state).toBe('RollbackMerged');
    expect(record?.invariants.every((i) => i.result === 'PASS')).toBe(true);
    expect((await h.world.pullRequests())[0]).toMatchObject({ merged: true });

    await h.reconcileEvery(10, 7, key);
    record = await h.record('payment-service');
    expect(record?.state).toBe('RollbackComplete');
    expect(record?.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(await h.kv.get(KEYS.active('payment-service'))).toBeUndefined();
    expect(await h.kv.get(KEYS.rolledBackFrom('payment-service', s.bad))).toBeDefined();
    expect(await h.outboxTypes()).toEqual(expect.arrayContaining(['degradation.detected', 'degradation.confirmed', 'candidate.resolved', 'pr.created', 'ci.completed', 'merge.approved', 'pr.merged', 'rollback.completed']));
    expect(h.audit.filter((a) => a.actionType === 'FSM_TRANSITION')).toHaveLength(6);
    expect(h.audit.some((a) => a.actionType === 'PR_MERGED')).toBe(true);
    // Each commit's audit records went through the audit outbox, and none is left there.
    expect(await h.store.pendingAuditOutbox(undefined, 100)).toEqual([]);
    expect(await h.world.projection(attemptName(s.app.ref, record!.correlationId))).toMatchObject({ state: 'RollbackComplete' });
  });

  it('waits for an authorized approval in production, ignores an unauthorized one, then merges', async () => {
    const s = await given('order-service', 'production');
    const key = 'argocd/order-service';
    await h.world.setHealth(s.app.ref, 'Degraded', [{ name: 'order-service', desired: 3, updated: 3, available: 0, unavailable: 3, progressDeadlineExceeded: true }]);
    await h.reconcileEvery(10, 3, key);
    await h.world.setCiOfOpenPullRequests('success');
    await h.reconcileEvery(10, 3, key);
    let record = await h.record('order-service');
    expect(record?.state).toBe('AwaitingMergeApproval');
    expect((await h.world.pullRequests())[0]!.comments.join('\n')).toContain('ai-operator.io/approve=<your-username>');

    const name = attemptName(s.app.ref, record!.correlationId);
    await h.world.setRequests(name, { approve: 'mallory' });
    await h.reconcileEvery(10, 2, key);
    expect((await h.record('order-service'))?.state).toBe('AwaitingMergeApproval');
    expect(h.audit.some((a) => a.actionType === 'APPROVAL' && a.level === 'WARN' && /mallory is not among the approvers/.test(a.message))).toBe(true);
    expect(await h.world.callCount('mergePullRequest')).toBe(0);

    await h.world.setRequests(name, { approve: 'alice' });
    await h.reconcileEvery(10, 1, key);
    record = await h.record('order-service');
    expect(record).toMatchObject({ state: 'RollbackMerged', reason: 'ApprovedAndMerged', approval: { approvedBy: 'alice' } });
  });

  it('aborts production with ApprovalTimeout and leaves the PR open with a comment', async () => {
    h = new Harness({ merge: { approvalTimeoutSeconds: 30 } });
    const s = await given('order-service', 'production');
    await h.world.setHealth(s.app.ref, 'Degraded', [{ name: 'order-service', desired: 3, updated: 3, available: 0, unavailable: 3, progressDeadlineExceeded: true }]);
    await h.reconcileEvery(10, 3, 'argocd/order-service');
    await h.world.setCiOfOpenPullRequests('success');
    await h.reconcileEvery(10, 6, 'argocd/order-service');
    expect(await h.record('order-service')).toMatchObject({ state: 'Abort', reason: 'ApprovalTimeout' });
    const [pr] = await h.world.pullRequests();
    expect(pr!.state).toBe('open');
    expect(pr!.comments.at(-1)).toMatch(/ApprovalTimeout/);
    // Aborted, the PR is read again only for what ends the attempt: a reset (which closes it), not at each check.
    const reads = await h.world.callCount('getPullRequestStatus');
    await h.reconcileEvery(10, 5, 'argocd/order-service');
    expect(await h.world.callCount('getPullRequestStatus')).toBe(reads);
    await h.world.setRequests(attemptName(s.app.ref, (await h.record('order-service'))!.correlationId), { reset: true });
    await h.reconcileEvery(10, 1, 'argocd/order-service');
    expect(await h.world.callCount('getPullRequestStatus')).toBeGreaterThan(reads);
    expect(await h.record('order-service')).toMatchObject({ state: 'Idle', reason: 'Reset' });
    expect((await h.world.pullRequests())[0]!.state).toBe('closed');
  });

  it('starts no attempt for a transient degradation: the checks live in the health key, then are cleared', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 2, 'argocd/cart');
    expect(JSON.parse((await h.kv.get(KEYS.health('cart')))!.value).checks).toHaveLength(2);
    await h.world.setHealth(s.app.ref, 'Healthy');
    await h.reconcileEvery(10, 1, 'argocd/cart');
    // No attempt record, no RollbackAttempt, no PR: only the two events and nothing left in etcd.
    expect(await h.record('cart')).toBeUndefined();
    expect(await h.world.pullRequests()).toEqual([]);
    expect(await h.kv.get(KEYS.active('cart'))).toBeUndefined();
    expect(await h.kv.get(KEYS.health('cart'))).toBeUndefined();
    expect(await h.outboxTypes()).toEqual(['degradation.detected', 'degradation.cleared']);
    expect(h.audit.map((a) => a.actionType)).toEqual(['DEGRADATION_DETECTED', 'DEGRADATION_CLEARED']);
  });

  it('closes the PR and returns to Idle when health comes back before the merge', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/cart');
    await h.world.setHealth(s.app.ref, 'Healthy');
    await h.reconcileEvery(10, 1, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'Idle', reason: 'HealthRestoredBeforeMerge' });
    expect((await h.world.pullRequests())[0]).toMatchObject({ state: 'closed', merged: false });
  });

  it('aborts with CIFailure, and with NoStableCandidate when no revision had 99% uptime', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/cart');
    await h.world.setCiOfOpenPullRequests('failure');
    await h.reconcileEvery(10, 1, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'Abort', reason: 'CIFailure' });

    const other = scenarioApp('search', 'staging', h.now);
    await h.world.addApp({ ...other.app, uptime: { [other.good]: 0.9 } });
    await h.world.setCommits(other.app.source!.path, other.commits);
    await h.world.setHealth(other.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/search');
    expect(await h.record('search')).toMatchObject({ state: 'Abort', reason: 'NoStableCandidate' });
  });

  it('chooses by CI alone when Prometheus is down, and says so in I5', async () => {
    const s = await given('cart', 'staging');
    await h.world.setPrometheusDown(true);
    await h.world.setHealth(s.app.ref, 'Degraded', [{ name: 'cart', desired: 2, updated: 2, available: 0, unavailable: 2, progressDeadlineExceeded: true }]);
    await h.reconcileEvery(10, 3, 'argocd/cart');
    const record = await h.record('cart');
    expect(record?.candidate).toMatchObject({ revision: s.good, mode: 'ci-only', uptime: null });
    await h.world.setCiOfOpenPullRequests('success');
    await h.reconcileEvery(10, 1, 'argocd/cart');
    const merged = await h.record('cart');
    expect(merged?.invariants.find((i) => i.id === 'I5_stable_previous')).toMatchObject({ result: 'PASS', detail: expect.stringMatching(/CI-only selection/) });
  });

  it('aborts with PermissionDenied when GitHub refuses to open the PR', async () => {
    const s = await given('cart', 'staging');
    await h.world.failNext('createPullRequest', 'PERMISSION_DENIED');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'Abort', reason: 'PermissionDenied' });
    // Proposed, and failed: the counter says so.
    expect(await h.metrics.registry.getSingleMetricAsString('ai_operator_rollbacks_proposed_total')).toContain('success="false"} 1');
  });

  it('a close that fails: tried once per interval on an outage and audited once; refused for good, Idle with the PR left open, an Event, not tried again', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/cart');
    const open = await h.record('cart');
    expect(open).toMatchObject({ state: 'PRCreated' });
    const refusals = () => h.audit.filter((a) => a.level === 'ERROR' && /^closePullRequest failed/.test(a.message));

    // GitHub down for the close (after the call's retries), then the app Healthy: five intervals
    await h.world.failNext('closePullRequest', 'UNAVAILABLE', -1);
    await h.world.setHealth(s.app.ref, 'Healthy');
    await h.reconcileEvery(10, 5, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'PRCreated', retrying: true, message: expect.stringContaining('closePullRequest failed (UNAVAILABLE)') });
    expect(await h.world.callCount('closePullRequest')).toBe(5);
    expect(refusals()).toHaveLength(1);

    // Then refused for good: Idle at once, the refusal said in the status, an Event and one more audit record (a new failure)
    await h.world.failNext('closePullRequest', 'PERMISSION_DENIED', -1);
    await h.reconcileEvery(10, 3, 'argocd/cart');
    const idle = await h.record('cart');
    expect(idle).toMatchObject({ state: 'Idle', reason: 'HealthRestoredBeforeMerge', pullRequest: { number: open!.pullRequest!.number, state: 'open' },
      message: expect.stringMatching(/^health restored before the merge; could not close #\d+ \(PERMISSION_DENIED: injected PERMISSION_DENIED\) — close it by hand$/) });
    expect(await h.world.callCount('closePullRequest')).toBe(6);
    expect(refusals()).toHaveLength(2);
    expect(refusals()[1]!.metadata).toMatchObject({ errorCode: 'PERMISSION_DENIED', prNumber: open!.pullRequest!.number });
    expect(h.events.filter((e) => e.reason === 'PullRequestNotClosed').map((e) => [e.type, e.regarding.kind])).toEqual([['Warning', 'RollbackAttempt'], ['Warning', 'Application']]);
  });

  describe('errors no retry can fix (TerminalError)', () => {
    it('stops on a corrupt attempt record: a TerminalError, a Warning Event, the Stalled condition, an audit record', async () => {
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/cart');
      const record = (await h.record('cart'))!;
      // When someone writes something that is not JSON over the record
      const key = KEYS.attempt('cart', record.correlationId);
      await h.kv.txn({ compares: [], deletes: [], puts: [{ key, value: '{"state": "PRCre' }] });
      const error = await h.reconciler.reconcile('argocd/cart').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TerminalError);
      expect(error).toMatchObject({ reason: 'CorruptRecord', message: expect.stringContaining(key) });
      expect(h.events.filter((e) => e.reason === 'CorruptRecord').map((e) => [e.type, e.regarding.kind, e.regarding.name])).toEqual([['Warning', 'Application', 'cart']]);
      expect(await h.world.stalled(s.app.ref, record.correlationId)).toMatchObject({ reason: 'CorruptRecord', message: expect.stringContaining('stopped retrying until repaired') });
      expect(h.audit.at(-1)).toMatchObject({ level: 'ERROR', reasoning: 'CorruptRecord', correlationId: record.correlationId });
    });

    it('refuses a key that names no Application as terminal', async () => {
      await expect(h.reconciler.reconcile('no-slash')).rejects.toMatchObject({ name: 'TerminalError', reason: 'InvalidKey' });
    });
  });

  it('adopts the PR it opened before a crash instead of opening a second', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 2, 'argocd/cart');
    // Crash right after the PR is created: the write of PRCreated fails once.
    const commit = h.store.commit.bind(h.store);
    let failed = false;
    h.store.commit = async (write) => {
      if (!failed && write.record.state === 'PRCreated') { failed = true; throw new StoreUnavailable('connection lost (simulated crash)'); }
      return commit(write);
    };
    await expect(h.reconcileEvery(10, 1, 'argocd/cart')).rejects.toThrow(StoreUnavailable);
    expect(await h.record('cart')).toMatchObject({ state: 'CandidateResolved' });
    expect(await h.world.pullRequests()).toHaveLength(1);
    h.store.commit = commit;
    await h.reconcileEvery(1, 1, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'PRCreated', reason: 'PullRequestAdopted' });
    expect(await h.world.pullRequests()).toHaveLength(1);
    expect(await h.world.callCount('createPullRequest')).toBe(1);
  });

  it('keeps a transition\'s audit records in the audit outbox while the audit log cannot take them, and the chain\'s drain records them once', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    const record = h.reconciler['deps'].audit.record;
    let failing = true;
    // The records of committed writes fail (the others are the execute step's, which retries them itself).
    h.reconciler['deps'].audit.record = async (input) => {
      if (failing && ['DEGRADATION_DETECTED', 'FSM_TRANSITION'].includes(input.actionType)) throw new Error('disk full');
      return record(input);
    };
    await h.reconcileEvery(10, 3, 'argocd/cart');
    // The attempt moved on: the writes stand, their audit records wait in etcd, under the local chain.
    expect(await h.record('cart')).toMatchObject({ state: 'PRCreated' });
    const waiting = await h.store.pendingAuditOutbox('local', 100);
    expect(waiting.flatMap((w) => w.entry!.records.map((r) => r.actionType))).toEqual(['DEGRADATION_DETECTED', 'FSM_TRANSITION', 'FSM_TRANSITION', 'FSM_TRANSITION']);
    expect(h.audit.filter((a) => ['DEGRADATION_DETECTED', 'FSM_TRANSITION'].includes(a.actionType))).toEqual([]);
    failing = false;
    const outbox = new AuditOutbox({ store: h.store, audit: { record: (input) => h.reconciler['deps'].audit.record(input) }, chainId: 'local', log: createLogger('ERROR') });
    expect(await outbox.drain()).toBe(4);
    expect(await outbox.drain()).toBe(0);
    expect(h.audit.filter((a) => ['DEGRADATION_DETECTED', 'FSM_TRANSITION'].includes(a.actionType)).map((a) => a.message)).toEqual(['Degraded seen: check 1 of 3', 'Idle -> DegradationDetected (DegradationConfirmed)', 'DegradationDetected -> CandidateResolved (StableCandidateFound)', 'CandidateResolved -> PRCreated (PullRequestOpened)']);
    expect(await h.store.pendingAuditOutbox(undefined, 100)).toEqual([]);
  });

  it('fails safe: an unexpected error aborts the attempt with a reason and an audit record', async () => {
    const s = await given('cart', 'staging');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/cart');
    h.world.getPullRequestStatus = async () => { throw new TypeError("Cannot read properties of undefined (reading 'sha')"); };
    await h.reconcileEvery(10, 1, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'Abort', reason: 'UnexpectedError', message: expect.stringMatching(/Cannot read properties/) });
    expect(h.audit.at(-1)).toMatchObject({ actionType: 'ABORT', level: 'WARN' });
    expect(await h.metrics.registry.metrics()).toMatch(/ai_operator_rollbacks_aborted_total\{app_name="cart",environment="staging",reason="UnexpectedError"\} 1/);
  });

  it('aborts an active attempt on the abort annotation and returns to Idle on reset', async () => {
    const s = await given('cart', 'production');
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.reconcileEvery(10, 3, 'argocd/cart');
    const name = attemptName(s.app.ref, (await h.record('cart'))!.correlationId);
    await h.world.setRequests(name, { abort: 'investigating by hand' });
    await h.reconcileEvery(10, 1, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'Abort', reason: 'AbortRequested', message: 'abort requested: investigating by hand' });
    // An aborted app gets no new attempt until reset.
    await h.reconcileEvery(10, 3, 'argocd/cart');
    expect(await h.store.allAttempts()).toHaveLength(1);
    await h.world.setRequests(name, { reset: true });
    await h.reconcileEvery(10, 1, 'argocd/cart');
    expect(await h.record('cart')).toMatchObject({ state: 'Idle', reason: 'Reset' });
    expect(await h.kv.get(KEYS.active('cart'))).toBeUndefined();
  });

  describe('decisions made before a PR is opened (issue 8)', () => {
    it('opens no PR when I3 already fails, and aborts at once with the reason and the metric', async () => {
      const s = await given('cart', 'staging');
      // Degraded, but every Deployment runs its current revision in full: no PR can make I3 pass.
      await h.world.setHealth(s.app.ref, 'Degraded', [{ name: 'cart', desired: 3, updated: 3, available: 3, unavailable: 0, progressDeadlineExceeded: false }]);
      await h.reconcileEvery(10, 3, 'argocd/cart');
      const record = await h.record('cart');
      expect(record).toMatchObject({ state: 'Abort', reason: 'InvariantViolated' });
      expect(record!.message).toMatch(/^no pull request opened: I3_replica_shortage: /);
      expect(await h.world.callCount('createPullRequest')).toBe(0);
      const metrics = await h.metrics.registry.metrics();
      expect(metrics).toMatch(/ai_operator_invariant_violations_total\{invariant_id="I3_replica_shortage"\} 1/);
      expect(metrics).not.toMatch(/invariant_violations_total\{invariant_id="I1_environment"\}/);
    });

    it('opens no PR when the path already matches the target: NothingToRollBack, with an Event', async () => {
      const s = await given('cart', 'staging');
      await h.world.restorePath(s.app.source!.path, s.good);
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/cart');
      const record = await h.record('cart');
      expect(record).toMatchObject({ state: 'Abort', reason: 'NothingToRollBack' });
      expect(record!.message).toContain(`already matches ${s.good.slice(0, 7)}: the degradation is not in Git`);
      expect(await h.world.callCount('createPullRequest')).toBe(0);
      expect(h.events.some((e) => e.reason === 'NothingToRollBack' && e.regarding.kind === 'Application')).toBe(true);
    });

    it('opens no PR when the branch comes to hold the target between the preview and the opening: nothing written, NothingToRollBack', async () => {
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 2, 'argocd/cart');
      // The third check confirms and previews a change; a revert lands while the preview's answer is on its way
      await h.world.setDelayAfter('previewRollback', 300);
      h.now += 10_000;
      const confirming = h.reconciler.reconcile('argocd/cart');
      await vi.waitFor(async () => expect(await h.world.callCount('previewRollback')).toBe(1));
      await h.world.restorePath(s.app.source!.path, s.good);
      await confirming;
      expect(await h.world.callCount('createPullRequest')).toBe(1);
      expect(await h.world.pullRequests()).toEqual([]);
      const record = await h.record('cart');
      expect(record).toMatchObject({ state: 'Abort', reason: 'NothingToRollBack' });
      expect(record!.transitions.map((t) => t.to)).not.toContain('PRCreated');
      expect(record!.message).not.toContain('failed');
    });

    it('refuses an app whose repository is outside GITHUB_ORG: no attempt, said once per degradation', async () => {
      h = new Harness({}, { allowedOwner: 'someone-else' });
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 5, 'argocd/cart');
      expect(await h.record('cart')).toBeUndefined();
      expect(await h.kv.get(KEYS.health('cart'))).toBeUndefined();
      expect(h.audit.filter((a) => a.actionType === 'DEGRADATION_IGNORED')).toHaveLength(1);
      expect(h.events.filter((e) => e.reason === 'ApplicationRefused')).toHaveLength(1);
      expect(h.events[0]!.note).toContain('outside GITHUB_ORG someone-else');
      // Healthy, then Degraded again: a new degradation, said again.
      await h.world.setHealth(s.app.ref, 'Healthy');
      await h.reconcileEvery(10, 1, 'argocd/cart');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 2, 'argocd/cart');
      expect(h.events.filter((e) => e.reason === 'ApplicationRefused')).toHaveLength(2);
    });

    it('refuses an app whose targetRevision is a tag before any attempt: one Event naming the field and value, remembered for the policy status (issue 18 §5)', async () => {
      const s = await given('cart', 'staging');
      await h.world.addTag('v1.1.0');
      await h.world.addApp({ ...s.app, source: { ...s.app.source!, targetRevision: 'v1.1.0' } });
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 5, 'argocd/cart');
      expect(await h.record('cart')).toBeUndefined();
      expect(await h.kv.get(KEYS.health('cart'))).toBeUndefined();
      expect(await h.world.callCount('readRepositoryContent')).toBe(0);
      const refusals = h.events.filter((e) => e.reason === 'ApplicationRefused');
      expect(refusals).toHaveLength(1);
      expect(refusals[0]!.note).toMatch(/^spec\.source\.targetRevision v1\.1\.0 is a tag or a commit of acme\/gitops, not a branch/);
      const app = (await h.world.app(s.app.ref))!;
      expect(h.reconciler.targetRefusal(app)).toMatchObject({ reason: 'TargetNotBranch' });
      // The spec moved to a branch: the remembered refusal no longer applies.
      expect(h.reconciler.targetRefusal({ ...app, source: { ...app.source!, targetRevision: 'main' } })).toBeUndefined();
    });

    it('works on the repository\'s default branch for targetRevision HEAD: the attempt keeps it, the PR targets it (issue 18 §5)', async () => {
      const s = await given('cart', 'staging');
      await h.world.setDefaultBranch('master');
      await h.world.addApp({ ...s.app, source: { ...s.app.source!, targetRevision: 'HEAD' } });
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/cart');
      expect(await h.record('cart')).toMatchObject({ state: 'PRCreated', branch: 'master' });
      expect((await h.world.pullRequests())[0]!.spec.base).toBe('master');
      // Resolved once for the attempt: later rounds read the record, not GitHub.
      const asked = await h.world.callCount('defaultBranch');
      await h.world.setCiOfOpenPullRequests('success');
      await h.reconcileEvery(10, 1, 'argocd/cart');
      expect(await h.record('cart')).toMatchObject({ state: 'RollbackMerged' });
      expect(await h.world.callCount('defaultBranch')).toBe(asked);
    });

    it('starts no attempt for an app two RollbackPolicies select: an Event names both, once per degradation', async () => {
      const policies = [
        { name: 'canary', namespace: 'argocd', spec: { environment: 'staging' as const } },
        { name: 'prod', namespace: 'argocd', spec: { applications: ['cart'], environment: 'production' as const, merge: { approvers: { users: ['alice'] } } } },
      ];
      h = new Harness({}, { monitoring: (app) => monitoringFor(app, policies, { ...defaults, monitoredApps: [] }) });
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 5, 'argocd/cart');
      expect(await h.record('cart')).toBeUndefined();
      expect(h.events.filter((e) => e.reason === 'ApplicationRefused' && e.regarding.kind === 'Application').map((e) => e.note))
        .toEqual(['Application cart is selected by 2 RollbackPolicies in argocd (canary, prod): no rollback is attempted until only one selects it']);
    });

    it('says once that a Degraded app in its cooldown is not rolled back', async () => {
      h = new Harness({ cooldownSeconds: 3600 });
      const s = await given('cart', 'staging');
      await h.kv.txn({ compares: [], puts: [{ key: KEYS.lastRollback('cart'), value: new Date(h.now).toISOString() }], deletes: [] });
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 6, 'argocd/cart');
      expect(await h.record('cart')).toBeUndefined();
      const said = h.audit.filter((a) => a.actionType === 'DEGRADATION_IGNORED');
      expect(said).toHaveLength(1);
      expect(said[0]!.message).toMatch(/rolled back recently: no new attempt before /);
      expect(h.events.filter((e) => e.reason === 'InCooldown')).toHaveLength(1);
    });

    it('keeps checking every interval while a degradation is counted, even when a reconcile comes early', async () => {
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      expect(await h.reconciler.reconcile('argocd/cart')).toEqual({ requeueAfterMs: 10_000 });
      // A wake-up (the health key's own etcd watch event) before the next check is due.
      h.now += 100;
      expect(await h.reconciler.reconcile('argocd/cart')).toEqual({ requeueAfterMs: 10_000 });
    });
  });

  describe('production approvals (issue 8)', () => {
    it('never asks for an approval in the reconcile that aborts, and asks once when it may', async () => {
      const s = await given('order-service', 'production');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/order-service');
      await h.world.setMergeable(false);
      await h.world.setCiOfOpenPullRequests('success');
      await h.reconcileEvery(10, 2, 'argocd/order-service');
      expect(await h.record('order-service')).toMatchObject({ state: 'Abort', reason: 'InvariantViolated' });
      const [pr] = await h.world.pullRequests();
      expect(pr!.comments.join('\n')).not.toContain('waits for an authorized approver');
      expect(await h.metrics.registry.metrics()).toMatch(/ai_operator_invariant_violations_total\{invariant_id="I8_branch_protection"\} 1/);
    });

    it('records each distinct refusal once: in the status, as an Event, in the audit trail', async () => {
      const s = await given('order-service', 'production');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/order-service');
      await h.world.setCiOfOpenPullRequests('success');
      await h.reconcileEvery(10, 3, 'argocd/order-service');
      const record = await h.record('order-service');
      expect((await h.world.pullRequests())[0]!.comments.filter((c) => c.includes('waits for an authorized approver'))).toHaveLength(1);
      const name = attemptName(s.app.ref, record!.correlationId);
      await h.world.setRequests(name, { approve: 'mallory' });
      await h.reconcileEvery(10, 4, 'argocd/order-service');
      const refused = () => h.audit.filter((a) => a.actionType === 'APPROVAL' && a.level === 'WARN');
      expect(refused()).toHaveLength(1);
      expect(h.events.filter((e) => e.reason === 'ApprovalRefused' && e.regarding.kind === 'RollbackAttempt')).toHaveLength(1);
      const conditions = statusOf((await h.record('order-service'))!).conditions as Array<Record<string, string>>;
      expect(conditions.find((c) => c.type === 'Approved')).toMatchObject({ status: 'False', reason: 'ApprovalRefused' });
      expect(conditions.find((c) => c.type === 'Approved')!.message).toContain('mallory is not among the approvers');
      await h.world.setRequests(name, { approve: 'eve' });
      await h.reconcileEvery(10, 2, 'argocd/order-service');
      expect(refused()).toHaveLength(2);
    });
  });

  describe('an Application deleted mid-attempt (issue 8)', () => {
    it('aborts with ApplicationDeleted, closes the PR and releases the app', async () => {
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/cart');
      expect((await h.record('cart'))?.state).toBe('PRCreated');
      await h.world.removeApp(s.app.ref);
      await h.reconcileEvery(10, 1, 'argocd/cart');
      const record = await h.record('cart');
      expect(record).toMatchObject({ state: 'Abort', reason: 'ApplicationDeleted' });
      expect(record!.message).toBe('Application argocd/cart was deleted');
      expect((await h.world.pullRequests())[0]).toMatchObject({ state: 'closed', merged: false });
      expect(await h.kv.get(KEYS.active('cart'))).toBeUndefined();
    });

    it('releases an attempt already in Abort when its Application is deleted, closing its PR (issue 19 §2)', async () => {
      const s = await given('cart', 'staging');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/cart');
      const started = await h.record('cart');
      await h.world.setRequests(attemptName(s.app.ref, started!.correlationId), { abort: 'looking by hand' });
      await h.reconcileEvery(10, 1, 'argocd/cart');
      expect(await h.record('cart')).toMatchObject({ state: 'Abort', reason: 'AbortRequested' });
      expect(await h.kv.get(KEYS.active('cart'))).toBeDefined();
      await h.world.removeApp(s.app.ref);
      await h.reconcileEvery(10, 2, 'argocd/cart');
      expect(await h.kv.get(KEYS.active('cart'))).toBeUndefined();
      expect((await h.record('cart'))!.message).toContain('was deleted while this attempt was aborted (AbortRequested): the app is released');
      expect((await h.world.pullRequests())[0]).toMatchObject({ state: 'closed', merged: false });
    });

    it('releases an aborted attempt whose Application was deleted and created again under its name unseen (another uid), and tells the new one', async () => {
      const s = await given('cart', 'staging');
      await h.world.addApp({ ...s.app, uid: 'uid-1' });
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/cart');
      const started = await h.record('cart');
      expect(started?.appUid).toBe('uid-1');
      await h.world.setRequests(attemptName(s.app.ref, started!.correlationId), { abort: 'looking by hand' });
      await h.reconcileEvery(10, 1, 'argocd/cart');
      // Deleted and created again while the operator did not look: the same name, another uid, Healthy.
      await h.world.addApp({ ...s.app, uid: 'uid-2' });
      await h.reconcileEvery(10, 2, 'argocd/cart');
      expect(await h.kv.get(KEYS.active('cart'))).toBeUndefined();
      expect(h.events.map((e) => e.reason)).toContain('PreviousAttemptReleased');
    });

    it('aborts a production attempt waiting for approval, whose timeout could never be checked', async () => {
      const s = await given('order-service', 'production');
      await h.world.setHealth(s.app.ref, 'Degraded');
      await h.reconcileEvery(10, 3, 'argocd/order-service');
      await h.world.setCiOfOpenPullRequests('success');
      await h.reconcileEvery(10, 2, 'argocd/order-service');
      expect((await h.record('order-service'))?.state).toBe('AwaitingMergeApproval');
      await h.world.removeApp(s.app.ref);
      await h.reconcileEvery(10, 1, 'argocd/order-service');
      expect(await h.record('order-service')).toMatchObject({ state: 'Abort', reason: 'ApplicationDeleted' });
      expect(await h.kv.get(KEYS.active('order-service'))).toBeUndefined();
    });
  });

  describe('two apps rendering one shared source (issue 18 §4)', () => {
    it('reconciled side by side, they open one rollback PR, not two: the other attempt waits for it', async () => {
      const s = scenarioApp('shop', 'staging', h.now);
      await h.world.setCommits('apps/shop', s.commits);
      await h.world.setCi(s.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
      for (const name of ['shop-a', 'shop-b']) {
        await h.world.addApp({ ...s.app, ref: { namespace: 'argocd', name }, resources: [{ kind: 'Deployment', name, namespace: name }], deployments: [{ ...s.app.deployments[0]!, name }] });
        await h.world.setHealth({ namespace: 'argocd', name }, 'Degraded');
      }
      for (let i = 0; i < 4; i++) {
        h.now += 10_000;
        await Promise.all([h.reconciler.reconcile('argocd/shop-a'), h.reconciler.reconcile('argocd/shop-b')]);
      }
      const prs = await h.world.pullRequests();
      expect(prs).toHaveLength(1);
      const [a, b] = [await h.record('shop-a'), await h.record('shop-b')];
      const [owner, other] = a?.pullRequest ? [a, b] : [b, a];
      expect(owner).toMatchObject({ state: 'PRCreated', affected: [{ name: other!.app.name, environment: 'staging' }] });
      expect(other).toMatchObject({ state: 'CandidateResolved', waitingFor: { number: prs[0]!.number } });
      expect(other!.message).toContain(`waiting for rollback pull request #${prs[0]!.number}`);
    });
  });
});
