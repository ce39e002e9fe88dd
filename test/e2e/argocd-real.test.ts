// The operator, unchanged (src/main.ts as a process), against real Argo CD 3.6 on
// the stack's GitOps cluster (gitops-cluster.ts): real Deployments rolled out by
// kube-controller-manager onto KWOK pods, Argo CD itself computing Healthy and
// Degraded (progressDeadlineSeconds exceeded) and syncing the rollback PR's merge
// commit from the GitHub simulator's bare repository, served by the git daemon.
// Each scenario keeps its Applications, RollbackPolicy and RollbackAttempts in a
// namespace of its own (argocd-apps-*: the shared controller's apps in any
// namespace), its operator watches only that one, under its own etcd prefix on the
// shared etcd; NATS, Prometheus (which scrapes the shared controller's
// argocd_app_info) and Elasticsearch are the stack's. The machinery is
// support/argocd-real.ts (argocd-source-shapes.test.ts runs on it too).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BROKEN_RELEASE, FLAKY_RELEASE, TEST_RELEASE_LABEL } from '../../dev/stack/kwok.ts';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { KEYS } from '../../src/store/attempt-store.ts';
import { applicationStatus, appInfoLabels, deploymentsIn, type HistoryEntry } from '../../dev/argocd-sim/rules.ts';
import { argocdCmData } from '../../dev/scripts/argocd-cm.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { runHealthLua } from './support/argocd-health.ts';
import {
  apply, argocd, deploymentYaml, givenGitOpsRepo, gitops, json, mergedAndRecovered as mergedAndRecoveredApp, OWNER, PROGRESS_DEADLINE_SECONDS,
  secondsSince, sleep, stack, until, untilUptime, type AppStatus, type GitOpsRepo, type Json,
} from './support/argocd-real.ts';
import { kubectl } from './support/kube.ts';
import { eventually } from './support/operator.ts';

interface RealScenarioOptions {
  name: string;
  environment: 'staging' | 'production';
  /** A private application controller with --persist-resource-health for this scenario's namespace, instead of the shared one. */
  persistResourceHealth?: boolean;
  /** RollbackPolicy spec fields on top of the scenario's. */
  policy?: Json;
  env?: Record<string, string>;
}

/** One app of plain YAML at apps/<app> in the scenario's repository; `status` and `refresh` default to it. */
interface RealScenario extends Omit<GitOpsRepo, 'status' | 'refresh'> {
  app: string;
  appPath: string;
  /** Pushes a release (CI green on it) and returns its commit. */
  release(image: string, kind?: { label: string; recoverAfterMs?: number }): Promise<string>;
  refresh(name?: string): Promise<void>;
  status(name?: string): Promise<AppStatus>;
}

/**
 * A GitOps repository (support/argocd-real.ts), a good release v1, the Application deployed from it by
 * real Argo CD (Synced and Healthy), a RollbackPolicy for it, and the operator (not started yet).
 */
async function givenRealScenario(options: RealScenarioOptions): Promise<RealScenario> {
  const repo = await givenGitOpsRepo({
    name: options.name, files: { 'README.md': 'x\n', 'apps/other/config.yaml': 'keep: me\n' },
    ...(options.persistResourceHealth ? { persistResourceHealth: true } : {}), ...(options.env ? { env: options.env } : {}),
  });
  try {
    const app = `${options.name}-${repo.id}`;
    const appPath = `apps/${app}`;
    const release = (image: string, kind?: { label: string; recoverAfterMs?: number }) =>
      repo.push({ [`${appPath}/deployment.yaml`]: deploymentYaml(app, repo.target, image, kind) }, `Release ${image}`);
    const good = await release('v1');
    await repo.createApplication(app, {
      source: { repoURL: repo.repoURL, path: appPath, targetRevision: 'main' },
      destination: { server: 'https://kubernetes.default.svc', namespace: repo.target },
      syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] },
    }, { 'ai-operator.enabled': 'true', environment: options.environment });
    await repo.createPolicy('policy', {
      environment: options.environment, detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 5,
      ...(options.environment === 'production' ? { merge: { approvers: { users: ['alice@example.com'] } } } : {}),
      ...options.policy,
    });
    const t0 = Date.now();
    await until(`${app} Synced and Healthy at v1`, () => repo.status(app), (s) => s.sync?.revision === good && s.health?.status === 'Healthy', 90_000);
    console.log(`argocd-real ${options.name}: Application created → Synced+Healthy in ${secondsSince(t0)}`);
    return { ...repo, app, appPath, release, status: (name = app) => repo.status(name), refresh: (name = app) => repo.refresh(name) };
  } catch (error) {
    await repo.stop();
    throw error;
  }
}

/** Degraded as real Argo CD reports it: the broken release synced, its Deployment past the progress deadline. */
async function degradedAt(s: RealScenario, broken: string): Promise<AppStatus> {
  const t = Date.now();
  const degraded = await until(`${s.app} Degraded at the broken commit`, () => s.status(), (x) => x.sync?.revision === broken && x.health?.status === 'Degraded', 120_000);
  console.log(`argocd-real ${s.app}: push → Degraded in ${secondsSince(t)} (progressDeadlineSeconds ${PROGRESS_DEADLINE_SECONDS})`);
  const rollout = await json<{ status: { conditions: Array<{ type: string; status: string; reason: string }> } }>(['get', 'deployment', '-n', s.target, s.app]);
  expect(rollout.status.conditions.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'False', reason: 'ProgressDeadlineExceeded' });
  // Argo CD 3.x keeps each resource's health out of the Application unless the controller persists it.
  const resource = degraded.resources?.find((r) => r.kind === 'Deployment' && r.name === s.app);
  expect(resource?.status).toBe('Synced');
  if (s.persistResourceHealth) {
    expect(resource?.health).toMatchObject({ status: 'Degraded', message: `Deployment "${s.app}" exceeded its progress deadline` });
    // ResourceHealthLocationInline is the empty string: the field is absent.
    expect(degraded.resourceHealthSource).toBeUndefined();
  } else {
    expect(resource?.health).toBeUndefined();
    expect(degraded.resourceHealthSource).toBe('appTree');
  }
  // The app's own message names the resource that made it Degraded, not that resource's message.
  expect(degraded.health).toMatchObject({ status: 'Degraded', message: `Caused by apps/Deployment:${s.target}/${s.app}` });
  // Written on every Application that synced, hydrator or not: the operator looks at spec.sourceHydrator only.
  expect(degraded.sourceHydrator).toEqual({});
  expectSimulatorAgrees(s, degraded, broken);
  return degraded;
}

/**
 * What the Argo CD simulator (dev/argocd-sim/rules.ts) writes for the same app in the same state agrees
 * with what real Argo CD wrote, field for field where the operator or a person reads it.
 */
function expectSimulatorAgrees(s: RealScenario, real: AppStatus & Json, broken: string): void {
  const source = { repoURL: s.repoURL, path: s.appPath, targetRevision: 'main' };
  const deployments = deploymentsIn([{ file: 'deployment.yaml', content: deploymentYaml(s.app, s.target, 'v2') }], s.target).map((d) => ({ ...d, broken: true }));
  const sim = applicationStatus({
    source, destination: { server: 'https://kubernetes.default.svc', namespace: s.target }, revision: broken,
    history: real.history as HistoryEntry[], deployments, now: new Date(), degradeAfterMs: 0, persistResourceHealth: s.persistResourceHealth,
    // A private controller's namespace is its own.
    controllerNamespace: s.persistResourceHealth ? s.namespace : argocd.namespace,
  }) as Json;
  expect(Object.keys(sim).filter((k) => sim[k] !== null && !(k in real))).toEqual([]);
  expect(sim.health).toEqual({ ...real.health, lastTransitionTime: expect.any(String) });
  expect(sim.resources).toEqual(real.resources);
  expect(sim.sync).toEqual(real.sync);
  for (const key of ['resourceHealthSource', 'sourceHydrator', 'controllerNamespace', 'sourceType']) expect([key, sim[key] ?? undefined]).toEqual([key, real[key]]);
  expect(sim.operationState).toMatchObject({ phase: real.operationState?.phase, operation: { initiatedBy: { automated: true } } });
}

/** CI green on the rollback PR's head; the attempt runs to RollbackComplete once Argo CD synced the merge and the app held Healthy, back on `good`. */
async function mergedAndRecovered(s: RealScenario, good: string, options: { approve?: () => Promise<void> } = {}): Promise<{ record: AttemptRecord; merged: AppStatus }> {
  const { record, merged } = await mergedAndRecoveredApp(s, s.app, options);
  expect(record.transitions.map((t) => t.to)).toContain('RollbackMerged');
  expect(record.candidate?.revision).toBe(good);
  return { record, merged };
}

describe('the operator on real Argo CD 3.6 (issue 13 §3, §4)', () => {
  it.concurrent('(a) staging, history past its limit of 10, resource health not persisted: Degraded → PR → merge → Argo CD syncs it → RollbackComplete; target by uptime from Argo CD\'s own argocd_app_info', async () => {
    const started = Date.now();
    const s = await givenRealScenario({ name: 'staging', environment: 'staging', policy: { candidate: { minUptime: 0.6, window: '1h' } } });
    try {
      // Given ten more good releases, each synced by Argo CD (eleven in all: the history keeps ten)
      const goods = [(await s.status()).sync!.revision!];
      for (let i = 2; i <= 11; i++) {
        const sha = await s.release(`v${i}`);
        await s.refresh();
        await until(`v${i} synced`, () => s.status(), (x) => x.history?.at(-1)?.revision === sha, 60_000, 250);
        goods.push(sha);
      }
      const last = goods.at(-1)!;
      // v11 runs Healthy, and Prometheus has scraped that from Argo CD's metrics endpoint
      await until('v11 Healthy', () => s.status(), (x) => x.sync?.revision === last && x.health?.status === 'Healthy', 60_000);
      // The uptime the operator will measure over v11's window (it ends when v12 deploys, later: only more Healthy samples)
      const measured = await untilUptime(s, s.app, 0.8);
      console.log(`argocd-real staging: v11's uptime so far ${(measured.uptime * 100).toFixed(1)} % over ${measured.seconds} s (argocd_app_info scraped by Prometheus from Argo CD's metrics endpoint)`);
      await s.startOperator();

      // When a release whose pods crash-loop is pushed
      const broken = await s.release('v12', { label: BROKEN_RELEASE });
      await s.refresh();
      const degraded = await degradedAt(s, broken);
      writeFileSync(join(stack.workDir, `argocd-real-degraded-status-${s.app}.json`), JSON.stringify(degraded, null, 2));
      console.log(`argocd-real: the Application status real Argo CD wrote at Degraded:\n${JSON.stringify(degraded, null, 2)}`);
      // Argo CD kept the last ten deployments: v1 and v2 are gone from the history, v3…v11 and v12 remain
      expect(degraded.history).toHaveLength(10);
      expect(degraded.history!.map((h) => h.revision)).toEqual([...goods.slice(2), broken]);
      expect(degraded.history!.map((h) => h.id)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

      // Then the operator confirms it, picks v11 by its uptime, opens the PR, merges it, and Argo CD deploys it
      const { record, merged } = await mergedAndRecovered(s, last);
      expect(record.candidate).toMatchObject({ revision: last, mode: 'metrics' });
      expect(record.candidate!.uptime).toBeGreaterThanOrEqual(0.6);
      console.log(`argocd-real staging: candidate ${record.candidate!.shortRevision} ${record.candidate!.evidence}`);
      expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
      expect(merged.history).toHaveLength(10);
      // The rollback restored v11's manifest; the crash-looping pods are gone
      const live = await json<{ spec: { template: { spec: { containers: Array<{ image: string }> }; metadata: { labels: Record<string, string> } } } }>(['get', 'deployment', '-n', s.target, s.app]);
      expect(live.spec.template.spec.containers[0]!.image).toBe(`registry.example/${s.app}:v11`);
      expect(live.spec.template.metadata.labels[TEST_RELEASE_LABEL]).toBeUndefined();
      console.log(`argocd-real staging: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 420_000);

  it.concurrent('(a) staging with --persist-resource-health (a private controller): the same rollback, CI-only (Prometheus does not scrape that controller)', async () => {
    const started = Date.now();
    const s = await givenRealScenario({ name: 'persist', environment: 'staging', persistResourceHealth: true });
    try {
      const good = (await s.status()).sync!.revision!;
      await s.startOperator();
      const broken = await s.release('v2', { label: BROKEN_RELEASE });
      await s.refresh();
      await degradedAt(s, broken);
      const { record } = await mergedAndRecovered(s, good);
      expect(record.candidate).toMatchObject({ revision: good, mode: 'ci-only' });
      expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
      const healthy = await s.status();
      expect(healthy.resources?.find((r) => r.kind === 'Deployment')?.health?.status).toBe('Healthy');
      console.log(`argocd-real persist: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 420_000);

  it.concurrent('(b)+(d) production: waits for an approver the API server checks; the RollbackAttempt\'s health is computed by real Argo CD from the shipped Lua in argocd-cm', async () => {
    const started = Date.now();
    // The shipped health scripts in the real argocd-cm (server-side apply of those keys only: idempotent, other keys untouched).
    await apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'argocd-cm', namespace: argocd.namespace }, data: argocdCmData() });
    const s = await givenRealScenario({ name: 'production', environment: 'production', env: { MERGE_APPROVAL_TIMEOUT: '600' }, policy: { candidate: { minUptime: 0.6, window: '1h' } } });
    try {
      const good = (await s.status()).sync!.revision!;
      // Prometheus scrapes the shared controller: v1 is chosen by its uptime (0.6 is what a few seconds of Progressing after its sync leave)
      await untilUptime(s, s.app, 0.8);
      const { bindingName } = await installApprovalPolicy(gitops, s.namespace);
      await grantPatch(gitops, s.namespace, 'alice@example.com');
      await grantPatch(gitops, s.namespace, 'mallory');
      await s.startOperator({ APPROVAL_POLICY_BINDING_NAME: bindingName });
      const broken = await s.release('v2', { label: BROKEN_RELEASE });
      await s.refresh();
      await degradedAt(s, broken);
      const pr = await s.firstPull();
      s.ci(pr.headSha);
      const waiting = await s.inState('AwaitingMergeApproval');
      const attemptName = `${s.app}-${waiting.correlationId.replace(/-/g, '').slice(0, 8)}`;

      // (d) An Application whose source holds this RollbackAttempt (as it is, not synced): Argo CD finds the live
      // object, and its health — the shipped Lua's, run by Argo CD's own health code — is the app's.
      const live = await json<Json>(['get', 'rollbackattempt', '-n', s.namespace, attemptName]);
      await s.github.control.createRepo({ owner: OWNER, repo: 'attempts', files: {
        'attempt.yaml': JSON.stringify({ apiVersion: live.apiVersion, kind: live.kind, metadata: { name: attemptName, namespace: s.namespace }, spec: live.spec }),
      } });
      const view = `${s.app}-attempt`;
      await s.createApplication(view, {
        source: { repoURL: s.repoUrl('attempts'), path: '.', targetRevision: 'main' },
        destination: { server: 'https://kubernetes.default.svc', namespace: s.namespace },
      });
      const viewed = (want: string) => until(`${view} ${want}`, () => s.status(view), (x) => x.health?.status === want, 60_000);
      const suspended = await viewed('Suspended');
      expect(suspended.health?.message).toBe(`Caused by ai-operator.io/RollbackAttempt:${s.namespace}/${attemptName}`);
      // The same script under the project's Lua 5.1 harness gives the same health for the same object
      const lua = readFileSync(fileURLToPath(new URL('../../config/argocd/health/ai-operator.io_RollbackAttempt.lua', import.meta.url)), 'utf8');
      const expected = await runHealthLua(lua, await json<Json>(['get', 'rollbackattempt', '-n', s.namespace, attemptName]));
      expect(expected.status).toBe('Suspended');
      expect(expected.message).toContain('Waiting for an authorized approver');
      console.log(`argocd-real (d): Argo CD computed ${view} ${JSON.stringify(suspended.health)}; the Lua says ${JSON.stringify(expected)}`);

      // Mallory is no approver: the API server refuses her; nothing merges
      const approveAs = (user: string) => kubectl(gitops, ['annotate', '--overwrite', `--as=${user}`, 'rollbackattempt', attemptName, '-n', s.namespace, `ai-operator.io/approve=${user}`]);
      const mallory = await approveAs('mallory');
      expect(mallory.code).not.toBe(0);
      expect(mallory.stderr).toContain('mallory is not an approver of this RollbackAttempt (spec.approvers)');
      await sleep(2000);
      expect(s.pulls()[0]!.merged).toBe(false);

      const { record } = await mergedAndRecovered(s, good, { approve: async () => { expect((await approveAs('alice@example.com')).code).toBe(0); } });
      expect(record).toMatchObject({ approval: { approvedBy: 'alice@example.com' }, candidate: { revision: good, mode: 'metrics' } });
      expect(record.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
      // (d) And Argo CD now computes it Healthy: RollbackComplete
      const complete = await viewed('Healthy');
      console.log(`argocd-real (d): after RollbackComplete Argo CD computed ${view} ${JSON.stringify(complete.health)}`);
      console.log(`argocd-real production: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 420_000);

  it.concurrent('(c) a transient: a release that crash-loops for a moment and recovers before its deadline is never rolled back; multi-source apps over two repositories and source-hydrator apps are refused, a multi-source app of one repository is not', async () => {
    const started = Date.now();
    const s = await givenRealScenario({ name: 'transient', environment: 'staging' });
    try {
      // Three more Applications (not synced: Argo CD compares them only): two paths of this repository as two
      // sources (issue 18: handled), a path of this repository plus one of another repository, and a source hydrator
      await s.github.control.push({ owner: OWNER, repo: s.repo, message: 'more apps', files: {
        'apps/multi-a/cm.yaml': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'multi-a' }, data: { a: '1' } }),
        'apps/multi-b/cm.yaml': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'multi-b' }, data: { b: '1' } }),
      } });
      await s.github.control.createRepo({ owner: OWNER, repo: 'platform', message: 'init', files: {
        'apps/multi-c/cm.yaml': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'multi-c' }, data: { c: '1' } }),
      } });
      const destination = { server: 'https://kubernetes.default.svc', namespace: `${s.target}-more` };
      await s.createApplication('one-repo', { sources: [{ repoURL: s.repoURL, path: 'apps/multi-a', targetRevision: 'main' }, { repoURL: s.repoURL, path: 'apps/multi-b', targetRevision: 'main' }], destination }, { 'ai-operator.enabled': 'true' });
      await s.createApplication('two-repos', { sources: [{ repoURL: s.repoURL, path: 'apps/multi-a', targetRevision: 'main' }, { repoURL: s.repoUrl('platform'), path: 'apps/multi-c', targetRevision: 'main' }], destination }, { 'ai-operator.enabled': 'true' });
      await s.createApplication('hydrated', { sourceHydrator: { drySource: { repoURL: s.repoURL, path: 'apps/multi-a', targetRevision: 'main' }, syncSource: { targetBranch: 'env/staging', path: 'apps/multi-a' } }, destination }, { 'ai-operator.enabled': 'true' });
      await s.startOperator();
      // The shapes it does not handle are refused on the policy, as read from what real Argo CD wrote
      // (which also says that the operator governs this namespace's apps before anything else happens)
      const multi = await until('Argo CD compared the multi-source app over two repositories', () => s.status('two-repos'), (x) => (x.sync?.revisions?.length ?? 0) === 2, 60_000);
      console.log(`argocd-real (c): the multi-source Application's status as real Argo CD wrote it:\n${JSON.stringify(multi, null, 2)}`);
      const condition = await eventually('ApplicationsRefused condition', async () => {
        const found = await s.policyCondition('policy', 'ApplicationsRefused');
        return found?.status === 'True' ? found : undefined;
      }, 60_000, 500);
      // The message is the core's to word: it names the refused apps, and not the one-repository app.
      expect(condition.reason).toBe('UnsupportedShape');
      expect(condition.message).toMatch(/\btwo-repos\b/);
      expect(condition.message).toMatch(/\bhydrated\b/);
      expect(condition.message).not.toMatch(/\bone-repo\b/);
      console.log(`argocd-real (c): ApplicationsRefused ${JSON.stringify(condition)}`);

      // When a release crash-loops for 5 s and then its pods become Ready (well before the 12 s deadline)
      const flaky = await s.release('v2', { label: FLAKY_RELEASE, recoverAfterMs: 5000 });
      await s.refresh();
      const seen = new Set<string>();
      const healthy = await until('Healthy at the flaky release', async () => { const x = await s.status(); seen.add(x.health?.status ?? ''); return x; },
        (x) => x.sync?.revision === flaky && x.operationState?.phase === 'Succeeded' && x.health?.status === 'Healthy' && seen.has('Progressing'), 90_000, 250);
      const pods = await json<{ items: Array<{ status: { containerStatuses?: Array<{ restartCount: number; ready: boolean }> } }> }>(['get', 'pods', '-n', s.target, '-l', `${TEST_RELEASE_LABEL}=${FLAKY_RELEASE}`]);
      expect(pods.items.length).toBe(2);
      expect(pods.items.every((p) => p.status.containerStatuses?.[0]?.ready === true && p.status.containerStatuses[0].restartCount >= 1)).toBe(true);
      expect([...seen]).not.toContain('Degraded');
      expect(healthy.history?.at(-1)?.revision).toBe(flaky);
      // Argo CD's argocd_app_info carries the labels the simulator gives it
      const line = (await (await fetch(argocd.metrics)).text()).split('\n').find((l) => l.startsWith('argocd_app_info{') && l.includes(`name="${s.app}"`));
      const labels = Object.fromEntries([...(line ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      expect(labels).toEqual(appInfoLabels({
        namespace: s.namespace, name: s.app, automated: true, repoURL: s.repoURL, destServer: 'https://kubernetes.default.svc', destNamespace: s.target,
        syncStatus: 'Synced', healthStatus: 'Healthy', phase: 'Succeeded',
      }));
      // Then, well past persistence (3 checks at 1 s), nothing was started
      await sleep(6000);
      expect(await s.attempts()).toEqual([]);
      expect(await s.kv.get(KEYS.health(`${s.namespace}_${s.app}`))).toBeUndefined();
      expect(s.pulls()).toEqual([]);
      console.log(`argocd-real transient: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 300_000);
});
