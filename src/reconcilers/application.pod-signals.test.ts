// Issue 21 through the application reconciler over the in-memory KV and the fake world: an app
// Argo CD still calls Progressing whose current revision's pods fail early is rolled back on the
// same persistence rule as a Degraded one; a slow start is not; a Healthy app's pods are never read.
import { beforeEach, describe, expect, it } from 'vitest';
import { FakeWorld, scenarioApp } from '../../dev/fakes/world.ts';
import type { AuditInput } from '../audit/record.ts';
import { loadConfig, policyDefaults } from '../config.ts';
import type { ContainerFacts, RevisionPods } from '../fsm/record.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { settingsFrom, type RollbackPolicySpec } from '../policy/settings.ts';
import { AttemptStore, KEYS } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { ApplicationReconciler } from './application.ts';

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));
const SHORT = { name: 'cart', desired: 3, updated: 1, available: 3, unavailable: 1, progressDeadlineExceeded: false };

class Harness {
  kv = new MemoryKV();
  world = new FakeWorld(this.kv);
  store = new AttemptStore(this.kv);
  audit: AuditInput[] = [];
  now = Date.parse('2026-12-07T10:00:00Z');
  reconciler: ApplicationReconciler;
  /** What the operator's etcd index says of the app: false, nothing stored (the fast path); undefined, not known. */
  stored: boolean | undefined = undefined;

  constructor(spec: RollbackPolicySpec = {}) {
    this.reconciler = new ApplicationReconciler({
      store: this.store, argocd: this.world, github: this.world, cluster: this.world, history: this.world, attempts: this.world, approvalEnforcement: this.world,
      monitoring: () => ({ settings: settingsFrom(defaults, spec), environment: 'staging', suspended: false }),
      audit: { record: async (input) => { this.audit.push(input); } },
      metrics: new Metrics(), log: createLogger('ERROR'), argocdNamespace: 'argocd', clock: () => new Date(this.now),
      hasStoredState: () => this.stored,
    });
  }

  async every(seconds: number, times: number): Promise<Array<number | undefined>> {
    const requeues: Array<number | undefined> = [];
    for (let i = 0; i < times; i++) {
      this.now += seconds * 1000;
      requeues.push((await this.reconciler.reconcile('argocd/cart')).requeueAfterMs);
    }
    return requeues;
  }
}

const at = (h: Harness, secondsAgo: number) => new Date(h.now - secondsAgo * 1000).toISOString();
const pods = (containers: ContainerFacts[], startedAt: string, ready = false): RevisionPods[] => [{
  kind: 'Deployment', namespace: 'cart', name: 'cart', revision: '7d9f8c6b5',
  pods: [{ name: 'cart-7d9f8c6b5-x', ready, startedAt, containers }],
}];

describe('ApplicationReconciler with the pods\' signal (issue 21)', () => {
  let h: Harness;
  let s: ReturnType<typeof scenarioApp>;
  beforeEach(async () => {
    h = new Harness();
    s = scenarioApp('cart', 'staging', h.now);
    await h.world.addApp(s.app);
    await h.world.setCommits(s.app.source!.path, s.commits);
    await h.world.setCi(s.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
  });

  it('rolls back a Progressing app whose new ReplicaSet crash-loops after persistenceChecks checks, long before any progress deadline; I2 names the signal; the PR says which pods', async () => {
    await h.world.setHealth(s.app.ref, 'Progressing', [SHORT]);
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 3, waiting: { reason: 'CrashLoopBackOff' } }], at(h, 40)));

    await h.every(10, 3);
    const record = (await h.store.allAttempts())[0]!;
    expect(record.state).toBe('PRCreated');
    expect(record.degradation.signal).toMatchObject({ signal: 'CrashLoopBackOff', pods: [{ pod: 'cart-7d9f8c6b5-x', reason: 'CrashLoopBackOff', restarts: 3 }] });
    expect(record.transitions[0]).toMatchObject({ from: 'Idle', to: 'DegradationDetected', reason: 'DegradationConfirmed' });
    const [pr] = await h.world.pullRequests();
    expect(pr!.spec.body).toContain('`Progressing` while the pods of its current revision failed early (`CrashLoopBackOff`) on 3 consecutive checks');
    expect(pr!.spec.body).toContain('| `Deployment/cart` | `cart-7d9f8c6b5-x` | `cart` | CrashLoopBackOff | 3 | — |');
    expect(pr!.spec.body).toMatch(/`I2_health_degraded` \| ✅ PASS \| Argo CD reports Progressing now, and CrashLoopBackOff: the current revision of Deployment\/cart/);
    expect(h.audit.find((a) => a.actionType === 'DEGRADATION_DETECTED')?.reasoning).toMatch(/^Argo CD reports Progressing on [0-9a-f]{7,}, and the current revision of Deployment\/cart \(revision 7d9f8c6b5\) fails early/);

    // CI green: all eight PASS on fresh reads — I2 on Argo CD's Progressing and the pods read again — and it merges.
    await h.world.setCiOfOpenPullRequests('success');
    await h.every(10, 1);
    const merged = (await h.store.allAttempts())[0]!;
    expect(merged.state).toBe('RollbackMerged');
    expect(merged.invariants.find((i) => i.id === 'I2_health_degraded')).toMatchObject({ result: 'PASS', detail: expect.stringMatching(/^Argo CD reports Progressing now, and CrashLoopBackOff/) });
    expect(merged.invariants.find((i) => i.id === 'I4_persistence')?.detail).toMatch(/^3 consecutive failing \(Progressing with pods failing early: CrashLoopBackOff\) checks/);
  });

  it('waits, without merging, while I2 fails: the pods stopped failing and Argo CD still says Progressing', async () => {
    await h.world.setHealth(s.app.ref, 'Progressing', [SHORT]);
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 3, waiting: { reason: 'CrashLoopBackOff' } }], at(h, 40)));
    await h.every(10, 3);
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: true, restartCount: 3 }], at(h, 70), true));
    await h.world.setCiOfOpenPullRequests('success');
    await h.every(10, 2);
    const record = (await h.store.allAttempts())[0]!;
    expect(record.state).toBe('AwaitingMergeApproval');
    expect(record.invariants.find((i) => i.id === 'I2_health_degraded')).toMatchObject({ result: 'FAIL', detail: 'Argo CD reports Progressing now, and no pod of the current revision fails early' });
    expect((await h.world.pullRequests())[0]!.merged).toBe(false);
  });

  it('an image that cannot be pulled counts only once it waited waitingSeconds (60 s by default)', async () => {
    await h.world.setHealth(s.app.ref, 'Progressing', [SHORT]);
    const startedAt = at(h, 0);
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 0, waiting: { reason: 'ImagePullBackOff' } }], startedAt));
    await h.every(10, 5);
    expect(await h.kv.get(KEYS.health('cart'))).toBeUndefined();
    await h.every(10, 3);
    const record = (await h.store.allAttempts())[0]!;
    expect(record.degradation.signal).toMatchObject({ signal: 'ImagePullBackOff', pods: [{ reason: 'ImagePullBackOff', restarts: 0, waitingSeconds: 80 }] });
    expect(record.degradation.firstSeenAt).toBe(new Date(Date.parse(startedAt) + 60_000).toISOString());
  });

  it.each([false, undefined])('a slow but healthy start (ContainerCreating, then Ready) and a release that crashed twice then ran: nothing counted, nothing written; checked again an interval later while Progressing (nothing stored: %s)', async (stored) => {
    h.stored = stored;
    await h.world.setHealth(s.app.ref, 'Progressing', [SHORT]);
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 0, waiting: { reason: 'ContainerCreating' } }], at(h, 0)));
    expect(await h.every(10, 8)).toEqual(Array(8).fill(10_000));
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 2, waiting: { reason: 'CrashLoopBackOff' } }], at(h, 30)));
    await h.every(10, 3);
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: true, restartCount: 2 }], at(h, 60), true));
    await h.every(10, 3);
    expect(await h.store.allAttempts()).toEqual([]);
    expect(await h.kv.get(KEYS.health('cart'))).toBeUndefined();
    expect(h.audit).toEqual([]);
    expect(await h.world.pullRequests()).toEqual([]);
  });

  it.each([false, undefined])('a Healthy app\'s pods are never read, and nothing is requeued for it (nothing stored: %s)', async (stored) => {
    h.stored = stored;
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 9, waiting: { reason: 'CrashLoopBackOff' } }], at(h, 40)));
    expect(await h.every(10, 5)).toEqual(Array(5).fill(undefined));
    await h.world.setHealth(s.app.ref, 'Degraded');
    await h.every(10, 1);
    expect(await h.world.callCount('currentRevisionPods')).toBe(0);
  });

  it('spec.detection.podSignals.enabled: false leaves a crash loop to Argo CD\'s progress deadline', async () => {
    h = new Harness({ detection: { podSignals: { enabled: false } } });
    await h.world.addApp({ ...s.app, health: 'Progressing', deployments: [SHORT] });
    await h.world.setRevisionPods(s.app.ref, pods([{ name: 'cart', ready: false, restartCount: 9, waiting: { reason: 'CrashLoopBackOff' } }], at(h, 40)));
    expect(await h.every(10, 5)).toEqual(Array(5).fill(undefined));
    expect(await h.store.allAttempts()).toEqual([]);
    expect(await h.world.callCount('currentRevisionPods')).toBe(0);
  });
});
