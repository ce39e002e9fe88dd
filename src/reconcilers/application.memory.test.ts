// The per-app memory of the process and the per-app keys in etcd are bounded by
// the live apps (issue 19 §2): 1,000 Applications roll back (half merged, half
// deleted mid-attempt) and are deleted; once the retention has passed, the
// reconciler's maps and the attempt keys are back where they started.
import { describe, expect, it } from 'vitest';
import { FakeWorld, scenarioApp } from '../../dev/fakes/world.ts';
import { loadConfig, policyDefaults } from '../config.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { settingsFrom } from '../policy/settings.ts';
import { AttemptStore, KEYS } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { ApplicationReconciler } from './application.ts';

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));
const RETENTION = 3600;

/** Keys an attempt or an app owns (the outboxes are the relays' to drain, not counted here). */
async function ownedKeys(kv: MemoryKV): Promise<number> {
  const counts = await Promise.all([KEYS.rollbackPrefix, KEYS.attemptIndexPrefix, KEYS.appsPrefix].map(async (p) => (await kv.getPrefix(p)).length));
  return counts.reduce((a, b) => a + b, 0);
}

describe('memory and keys per app', () => {
  it('return to where they were after 1,000 Applications are created, rolled back or deleted mid-attempt, and deleted', async () => {
    const kv = new MemoryKV();
    let now = Date.parse('2026-11-22T03:00:00Z');
    kv.now = () => now;
    const world = new FakeWorld(kv);
    const store = new AttemptStore(kv, undefined, () => now, RETENTION);
    const reconciler = new ApplicationReconciler({
      store, argocd: world, github: world, cluster: world, history: world, attempts: world, approvalEnforcement: world,
      monitoring: (app) => ({ settings: settingsFrom(defaults, { cooldownSeconds: 600 }), environment: app.labels.environment === 'staging' ? 'staging' : 'production', suspended: false }),
      audit: { record: async () => {} }, metrics: new Metrics(), log: createLogger('ERROR'), argocdNamespace: 'argocd', clock: () => new Date(now),
    });
    const before = { memory: reconciler.memorySizes(), keys: await ownedKeys(kv) };
    const reconcileAll = async (keys: string[], times: number) => {
      for (let i = 0; i < times; i++) {
        now += 10_000;
        for (const key of keys) await reconciler.reconcile(key);
      }
    };

    const N = Number(process.env.MEMORY_APPS ?? 1000);
    const batch = 50;
    let merged = 0;
    let released = 0;
    for (let start = 0; start < N; start += batch) {
      const apps = [];
      for (let i = start; i < start + batch; i++) {
        const s = scenarioApp(`app-${i}`, 'staging', now);
        await world.addApp(s.app);
        await world.setCommits(s.app.source!.path, s.commits);
        await world.setCi(s.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
        await world.setHealth(s.app.ref, 'Degraded', [{ name: `app-${i}`, desired: 1, updated: 1, available: 0, unavailable: 1, progressDeadlineExceeded: true }]);
        apps.push(s.app.ref);
      }
      const keys = apps.map((ref) => `argocd/${ref.name}`);
      await reconcileAll(keys, 3);
      // Even apps: merged and complete. Odd apps: deleted with their PR open (the attempt aborts and releases).
      await world.setCiOfOpenPullRequests('success');
      const [even, odd] = [apps.filter((_, i) => i % 2 === 0), apps.filter((_, i) => i % 2 === 1)];
      for (const ref of odd) await world.removeApp(ref);
      await reconcileAll(keys, 8);
      for (const ref of even) {
        const record = (await store.allAttempts()).find((r) => r.app.name === ref.name);
        if (record?.state === 'RollbackComplete') merged++;
        await world.removeApp(ref);
      }
      released += (await store.allAttempts()).filter((r) => odd.some((ref) => ref.name === r.app.name) && r.state === 'Abort' && r.reason === 'ApplicationDeleted').length;
      await reconcileAll(keys, 1);
    }
    expect(merged).toBe(N / 2);
    expect(released).toBe(N / 2);
    // While the attempts are kept: their records (and the merged apps' rollback keys) are there, nothing else.
    const kept = await ownedKeys(kv);
    expect(kept).toBeGreaterThan(N * 3);
    // The merged apps' last-rollback and rolled-back-from, and every app's attempt-starts (an hour's lease).
    const appKeys = await kv.getKeys(KEYS.appsPrefix);
    expect(appKeys.filter((key) => !key.endsWith('/attempt-starts'))).toHaveLength(N / 2 * 2);
    expect(appKeys.filter((key) => key.endsWith('/attempt-starts'))).toHaveLength(N);
    expect(reconciler.memorySizes()).toEqual(before.memory);

    // After the retention (longer than the cooldown here), every key an attempt or an app wrote has expired.
    now += (RETENTION + 1) * 1000;
    expect(await ownedKeys(kv)).toBe(before.keys);
    expect(reconciler.memorySizes()).toEqual(before.memory);
  }, 240_000);
});
