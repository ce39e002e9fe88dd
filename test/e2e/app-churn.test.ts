// What the operator keeps per app is bounded by the live apps (issue 19 §2), on the
// real API server, etcd and NATS with the operator process running (GitHub and Argo
// CD are the simulators): 1,000 Applications are created Degraded (each has its
// degradation counted in etcd) and 10 more are rolled back for real (half merged,
// half deleted with their PR open); then every one of them is deleted. Once
// ATTEMPT_RETENTION has passed, the keys under the installation's prefix, the
// attempt gauges' per-app series, the RollbackAttempt objects and the rollback
// branches are back where they were before the first Application was created.
//
// The reconciler's in-process maps (ApplicationReconciler.memorySizes, counted by
// application.memory.test.ts) have no endpoint; the process's heap is printed
// before, at the peak and after, for the note, and so are the counter and
// histogram series labelled with a deleted app (prom-client keeps them).
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { freshNamespace, kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { createDeployedApplication, deployment, givenRollbackScenario, REPO, type OperatorHandle, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const N = Number(process.env.CHURN_APPS ?? 1000);
const ROLLBACKS = 10;
const RETENTION_SECONDS = 20;
const BATCH = 50;
const ROLLBACK_BRANCHES = /^ai-operator\/rollback\//;
const APPLICATIONS = { group: 'argoproj.io', version: 'v1alpha1', plural: 'applications' } as const;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The keys under the installation's prefix, by family: what an app or an attempt owns, and what passes through. */
async function keyFamilies(s: Scenario): Promise<Record<string, number>> {
  const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
  try {
    const families: Record<string, number> = {};
    for (const { key } of await kv.getPrefix(KEYS.root)) {
      const family = key.startsWith(KEYS.appsPrefix) ? `apps/*/${key.slice(KEYS.appsPrefix.length).split('/').slice(1, 2).join('')}`
        : key.slice(KEYS.root.length).split('/')[0]!;
      families[family] = (families[family] ?? 0) + 1;
    }
    return families;
  } finally {
    await kv.close();
  }
}

/** The families an app or an attempt owns (the outboxes and the leader key are not per app). */
const owned = (families: Record<string, number>) => Object.fromEntries(Object.entries(families).filter(([family]) => family.startsWith('apps/') || family === 'rollback' || family === 'attempt-index'));

interface MetricFigures {
  fsmStateSeries: number;
  workqueueDepth: number;
  outboxPending: number;
  activeRollbacks: number;
  /** Counter and histogram series labelled with an app of this test (kept by design of a counter). */
  appCounterSeries: number;
  heapUsedMiB: number;
  rssMiB: number;
}

async function metricFigures(operator: OperatorHandle): Promise<MetricFigures> {
  const lines = (await operator.metrics()).split('\n').filter((l) => l && !l.startsWith('#'));
  const value = (l: string) => Number(l.slice(l.lastIndexOf(' ') + 1));
  const sum = (metric: string) => lines.filter((l) => l.startsWith(`${metric}{`) || l.startsWith(`${metric} `)).reduce((a, l) => a + value(l), 0);
  return {
    fsmStateSeries: lines.filter((l) => l.startsWith('ai_operator_fsm_state{')).length,
    workqueueDepth: sum('workqueue_depth'),
    outboxPending: sum('ai_operator_outbox_pending'),
    activeRollbacks: sum('ai_operator_active_rollbacks'),
    appCounterSeries: lines.filter((l) => /app_name="(churn-|r-)/.test(l) && !l.startsWith('ai_operator_fsm_state{')).length,
    heapUsedMiB: Math.round(sum('nodejs_heap_size_used_bytes') / 2 ** 20),
    rssMiB: Math.round(sum('process_resident_memory_bytes') / 2 ** 20),
  };
}

async function attemptObjects(namespaces: string[]): Promise<number> {
  const counts = await Promise.all(namespaces.map(async (ns) => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', ns, '-o', 'json'])).items.length as number));
  return counts.reduce((a, b) => a + b, 0);
}

async function claimLeases(namespaces: string[]): Promise<number> {
  const counts = await Promise.all(namespaces.map(async (ns) => JSON.parse(await kubectlOk(stack, ['get', 'leases', '-n', ns, '-l', 'app.kubernetes.io/managed-by=ai-operator', '-o', 'json'])).items.length as number));
  return counts.reduce((a, b) => a + b, 0);
}

async function rollbackBranches(s: Scenario): Promise<string[]> {
  return (await s.github.control.branches(REPO)).map((b) => b.name).filter((b) => ROLLBACK_BRANCHES.test(b));
}

function policy(namespace: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name, namespace }, spec: { environment: 'staging', ...spec } });
}

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(0)} s`;

describe('1,000 Applications created and deleted', () => {
  it('leave no key, no attempt gauge series, no RollbackAttempt and no branch behind once the retention has passed', async () => {
    const started = Date.now();
    // Given the operator watching two namespaces: the scenario's, where 10 apps will be rolled back for real
    // (the Argo CD simulator syncs them), and one whose 1,000 Applications a test writes as Argo CD would
    const s = await givenRollbackScenario(stack, 'churn', { environment: 'staging', startOperator: false }, stoppers);
    const churn = await freshNamespace(stack, 'churn-apps');
    const namespaces = [s.namespace, churn];
    // Each set of apps under its policy (no claim Lease per app): the 1,000 count a degradation slowly, the 10 confirm
    // it in 3 s. No cooldown: an app's rollback keys then live as long as the retention (the longer of the two); no bound
    // on attempts an hour, whose count of starts would otherwise live an hour after the last.
    await kubectlOk(stack, ['apply', '-f', '-'], policy(churn, 'counted', { detection: { intervalSeconds: 30, persistenceChecks: 100 } }));
    await kubectlOk(stack, ['apply', '-f', '-'], policy(s.namespace, 'rolled-back', { selector: { matchLabels: { group: 'rollback' } }, detection: { intervalSeconds: 1, persistenceChecks: 3 }, cooldownSeconds: 0, maxAttemptsPerHour: 0 }));
    const names = Array.from({ length: ROLLBACKS }, (_, i) => `r-${i}`);
    const manifests = (image: string, broken: boolean) => Object.fromEntries(names.map((app) => [`apps/${app}/deployment.yaml`, deployment(app, s.target, image, broken)]));
    const { sha: good } = await s.github.control.push({ ...REPO, files: manifests('v1', false), message: 'Release v1 of the r- apps' });
    s.ci(good, 'success');
    const operator = await s.startOperator({
      WATCH_NAMESPACES: namespaces.join(','), ATTEMPT_RETENTION: String(RETENTION_SECONDS), ROLLBACK_COOLDOWN: '0', CI_WAIT_TIMEOUT: '600', LOG_LEVEL: 'WARN',
    });
    await eventually('the operator ready', async () => (await fetch(`http://127.0.0.1:${operator.httpPort}/readyz`)).ok, 60_000, 250);
    await eventually('both policies claimed', async () => {
      const claimed = await Promise.all([[churn, 'counted'], [s.namespace, 'rolled-back']].map(async ([ns, name]) => (await kubectlOk(stack, ['get', 'rollbackpolicy', name!, '-n', ns!, '-o', 'jsonpath={.status.installation}'])).trim()));
      return claimed.every((c) => c !== '');
    }, 60_000, 250);
    const before = { keys: await keyFamilies(s), metrics: await metricFigures(operator), objects: await attemptObjects(namespaces), leases: await claimLeases(namespaces), branches: await rollbackBranches(s) };
    console.info(`before (${seconds(started)}): keys ${JSON.stringify(before.keys)}, metrics ${JSON.stringify(before.metrics)}, RollbackAttempts ${before.objects}, claim Leases ${before.leases}`);

    // When 10 apps deployed from the good release 24 h ago get a broken one (one commit), and meanwhile
    // 1,000 Applications are created Degraded, 50 at a time
    for (const app of names) await createDeployedApplication(stack, { namespace: s.namespace, name: app, environment: 'staging', path: `apps/${app}`, target: s.target, good, labels: { group: 'rollback' } });
    const { sha: bad } = await s.github.control.push({ ...REPO, files: manifests('v2', true), message: 'Release v2 of the r- apps (broken)' });
    s.ci(bad, 'success');
    const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
    const dayAgo = new Date(Date.now() - 24 * 3600_000).toISOString();
    const creating = Date.now();
    for (let from = 0; from < N; from += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, N - from) }, async (_, k) => {
        const name = `churn-${String(from + k).padStart(4, '0')}`;
        await api.createNamespacedCustomObject({ ...APPLICATIONS, namespace: churn, body: {
          apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace: churn, labels: { 'ai-operator.enabled': 'true', environment: 'staging' } },
          spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${name}`, targetRevision: 'main' }, destination: { namespace: `${churn}-workload` } },
        } });
        await api.patchNamespacedCustomObjectStatus({ ...APPLICATIONS, namespace: churn, name, body: { status: {
          sync: { status: 'Synced', revision: s.good }, health: { status: 'Degraded' }, history: [{ id: 0, revision: s.good, deployedAt: dayAgo, deployStartedAt: dayAgo }],
        } } }, mergePatch);
      }));
    }
    console.info(`created ${N} Degraded Applications in ${seconds(creating)}`);

    // Then every one of the 1,000 has its degradation counted under the prefix, and the 10 have their rollback PR
    const counted = (keys: Record<string, number>) => keys['apps/*/health'] ?? 0;
    await eventually(`${N + ROLLBACKS} degradations counted or confirmed`, async () => counted(await keyFamilies(s)) >= N + ROLLBACKS || undefined, 120_000, 1000)
      .catch(async (error: Error) => { throw new Error(`${error.message}: ${JSON.stringify(await keyFamilies(s))}\n${s.logs()}`); });
    const prs = await eventually(`${ROLLBACKS} rollback PRs`, async () => {
      const open = (await s.attempts()).filter((r) => r.state === 'PRCreated' && r.pullRequest);
      return open.length === ROLLBACKS ? open : undefined;
    }, 120_000, 500).catch(async (error: Error) => { throw new Error(`${error.message}: ${JSON.stringify((await s.attempts()).map((r) => [r.app.name, r.state, r.reason]))}\n${s.logs()}`); });
    // Half of them merged (CI green on the PR) and recovered; the other half stay open, CI pending
    const merging = prs.filter((_, i) => i % 2 === 0);
    for (const r of merging) s.ci(s.github.control.pulls(REPO).find((p) => p.number === r.pullRequest!.number)!.headSha, 'success');
    await eventually(`${merging.length} rollbacks complete`, async () => (await s.attempts()).filter((r) => r.state === 'RollbackComplete').length === merging.length || undefined, 120_000, 500)
      .catch(async (error: Error) => { throw new Error(`${error.message}: ${JSON.stringify((await s.attempts()).map((r) => [r.app.name, r.state, r.reason]))}\n${s.logs()}`); });
    const peak = { keys: await keyFamilies(s), metrics: await metricFigures(operator), objects: await attemptObjects(namespaces), branches: (await rollbackBranches(s)).length };
    console.info(`peak (${seconds(started)}): keys ${JSON.stringify(peak.keys)}, metrics ${JSON.stringify(peak.metrics)}, RollbackAttempts ${peak.objects}, rollback branches ${peak.branches}`);
    expect(peak.metrics.fsmStateSeries).toBeGreaterThan(before.metrics.fsmStateSeries);
    expect(peak.objects).toBe(ROLLBACKS);

    // When every one of them is deleted
    const deleting = Date.now();
    await api.deleteCollectionNamespacedCustomObject({ ...APPLICATIONS, namespace: churn });
    await kubectlOk(stack, ['delete', 'applications', '-n', s.namespace, '-l', 'group=rollback']);

    // Then the attempts with a PR open end (ApplicationDeleted, PR closed), and once the retention has passed,
    // the keys, the per-app series, the RollbackAttempts and the rollback branches are back where they were
    const after = await eventually('everything per app back where it was', async () => {
      const now = { keys: await keyFamilies(s), metrics: await metricFigures(operator), objects: await attemptObjects(namespaces), branches: await rollbackBranches(s) };
      const back = JSON.stringify(owned(now.keys)) === JSON.stringify(owned(before.keys)) && now.metrics.fsmStateSeries === before.metrics.fsmStateSeries
        && now.metrics.workqueueDepth === 0 && now.metrics.outboxPending === 0 && now.objects === before.objects && now.branches.length === before.branches.length;
      return back ? now : undefined;
    }, 150_000, 2000).catch(async (error: Error) => {
      const now = { keys: await keyFamilies(s), metrics: await metricFigures(operator), objects: await attemptObjects(namespaces), branches: await rollbackBranches(s) };
      throw new Error(`${error.message}: after ${seconds(deleting)} keys ${JSON.stringify(now.keys)} (before ${JSON.stringify(before.keys)}), metrics ${JSON.stringify(now.metrics)}, RollbackAttempts ${now.objects}, branches ${JSON.stringify(now.branches)}\n${s.logs()}`);
    });
    console.info(`after (${seconds(started)}, ${seconds(deleting)} after the deletion): keys ${JSON.stringify(after.keys)}, metrics ${JSON.stringify(after.metrics)}, RollbackAttempts ${after.objects}, rollback branches ${after.branches.length}`);
    expect(owned(after.keys)).toEqual(owned(before.keys));
    expect(after.metrics.fsmStateSeries).toBe(before.metrics.fsmStateSeries);
    expect(after.metrics.activeRollbacks).toBe(0);
    expect(after.objects).toBe(before.objects);
    expect(after.branches).toEqual(before.branches);
    // No claim Lease was taken (every app under a policy), so none is left for a garbage collector
    expect(await claimLeases(namespaces)).toBe(before.leases);
    // Every rollback PR is merged or closed
    expect(s.github.control.pulls(REPO).filter((p) => p.state === 'open')).toEqual([]);
    const ended = (await s.attempts()).map((r) => r.state);
    expect(ended).toEqual([]);
    expect(operator.child.exitCode).toBeNull();
  }, 420_000);
});
