// Branches as Argo CD resolves them (issue 18 §5), on the simulators: an app on
// `targetRevision: HEAD` in a repository whose default branch is master (beside a
// stale main) is rolled back on master — history read there, the PR opened and
// merged there; apps pinned to a tag or a commit SHA are refused before any
// attempt, with an Event naming the field and the value and a policy condition.
// The real operator process, etcd, NATS, API server; GitHub and Argo CD are the simulators.
import { execFileSync } from 'node:child_process';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { deployment, givenRollbackScenario, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ON_MASTER = { owner: 'acme', repo: 'on-master' } as const;

/** An Application of the scenario's namespace on acme/on-master, `targetRevision` as given, synced by the scenario's Argo CD simulator. */
async function application(s: Scenario, name: string, path: string, targetRevision: string): Promise<void> {
  await kubeConfig(stack).makeApiClient(CustomObjectsApi).createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: s.namespace, plural: 'applications', body: {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace: s.namespace, labels: { 'ai-operator.enabled': 'true', environment: 'staging' } },
    spec: { project: 'default', source: { repoURL: `https://github.com/${ON_MASTER.owner}/${ON_MASTER.repo}.git`, path, targetRevision }, destination: { namespace: s.target } },
  } });
}

async function appStatus(s: Scenario, name: string): Promise<{ sync?: { revision?: string }; health?: { status?: string } }> {
  return (JSON.parse(await kubectlOk(stack, ['get', 'application', '-n', s.namespace, name, '-o', 'json'])) as { status?: Record<string, never> }).status ?? {};
}

/** A release of `app` on master of acme/on-master, CI green on it. */
async function release(s: Scenario, app: string, image: string, broken: boolean): Promise<string> {
  const { sha } = await s.github.control.push({ ...ON_MASTER, branch: 'master', files: { [`apps/${app}/deployment.yaml`]: deployment(app, s.target, image, broken) }, message: `${app} ${image}` });
  s.github.control.setStatus({ ...ON_MASTER, sha, state: 'success', context: 'ci/build' });
  return sha;
}

describe('targetRevision: HEAD on a repository whose default branch is master (issue 18 §5)', () => {
  it('reads the history on master, opens and merges the PR into master, never the stale main: RollbackComplete', async () => {
    // Given acme/on-master, default branch master, with web v1 (good) and a main branch left behind at v1
    const s = await givenRollbackScenario(stack, 'branch-head', { environment: 'staging' }, stoppers);
    await s.github.control.createRepo({ ...ON_MASTER, defaultBranch: 'master', files: { 'README.md': 'x\n' }, message: 'init' });
    const good = await release(s, 'web', 'v1', false);
    await s.github.control.createBranch({ ...ON_MASTER, branch: 'main', from: good });
    // And an Application on HEAD, deployed at v1 by Argo CD
    await application(s, 'web', 'apps/web', 'HEAD');
    await eventually('web Healthy at v1', async () => { const st = await appStatus(s, 'web'); return st.sync?.revision === good && st.health?.status === 'Healthy'; }, 30_000, 250);

    // When v2 (broken) lands on master and Argo CD deploys it
    await sleep(1500);
    const bad = await release(s, 'web', 'v2', true);
    await eventually('web Degraded at v2', async () => (await appStatus(s, 'web')).health?.status === 'Degraded', 30_000, 250);

    // Then the attempt works on master: the PR targets master and restores v1 there
    const pr = await eventually('the rollback PR', async () => s.github.control.pulls(ON_MASTER)[0], 60_000, 200)
      .catch(async (error: Error) => { throw new Error(`${error.message}; attempts: ${JSON.stringify(await s.attempts())}\n${s.logs()}`); });
    expect(pr.base).toBe('master');
    const record = (await s.attempts()).find((r) => r.app.name === 'web')!;
    expect(record).toMatchObject({ branch: 'master', currentRevision: bad, candidate: { revision: good } });
    // And once CI is green it is merged into master and Argo CD deploys it: RollbackComplete
    s.github.control.setStatus({ ...ON_MASTER, sha: pr.headSha, state: 'success', context: 'ci/build' });
    const done = await eventually('RollbackComplete', async () => (await s.attempts()).find((r) => r.app.name === 'web' && r.state === 'RollbackComplete'), 60_000, 250)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(done.merge).toMatchObject({ auto: true });
    const git = (...args: string[]) => execFileSync('git', ['--git-dir', `${s.github.root}/acme/on-master.git`, ...args], { encoding: 'utf8' }).trim();
    expect(git('show', 'master:apps/web/deployment.yaml')).toContain('example/web:v1');
    // The stale main is untouched
    expect(git('rev-parse', 'main')).toBe(good);
  }, 180_000);
});

describe('targetRevision pinned to a tag or a commit SHA (issue 18 §5)', () => {
  it('is refused before any attempt: one Event naming the field and value, a policy condition, no PR', async () => {
    // Given acme/on-master with api v1.1.0 tagged on a broken release, and shop pinned to the SHA of a broken release
    const s = await givenRollbackScenario(stack, 'branch-pinned', { environment: 'staging' }, stoppers);
    await s.github.control.createRepo({ ...ON_MASTER, defaultBranch: 'master', files: { 'README.md': 'x\n' }, message: 'init' });
    const api = await release(s, 'api', 'v1.1.0', true);
    execFileSync('git', ['--git-dir', `${s.github.root}/acme/on-master.git`, 'tag', 'v1.1.0', api]);
    const shop = await release(s, 'shop', 'v7', true);
    // When Argo CD deploys them and they turn Degraded
    await application(s, 'api', 'apps/api', 'v1.1.0');
    await application(s, 'shop', 'apps/shop', shop);
    for (const name of ['api', 'shop']) await eventually(`${name} Degraded`, async () => (await appStatus(s, name)).health?.status === 'Degraded', 30_000, 250);

    // Then each gets one Warning Event that names spec.source.targetRevision and its value
    const refusals = await eventually('both refusals', async () => {
      const events = (JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', s.namespace, '-o', 'json'])).items as Array<{ reason: string; note: string; type: string; regarding: { name: string } }>)
        .filter((e) => e.reason === 'ApplicationRefused');
      return events.length >= 2 ? events : undefined;
    }, 30_000, 250).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(refusals.map((e) => e.regarding.name).sort()).toEqual(['api', 'shop']);
    expect(refusals.every((e) => e.type === 'Warning')).toBe(true);
    expect(refusals.find((e) => e.regarding.name === 'api')!.note).toMatch(/^spec\.source\.targetRevision v1\.1\.0 is a tag or a commit of acme\/on-master, not a branch/);
    expect(refusals.find((e) => e.regarding.name === 'shop')!.note).toMatch(new RegExp(`^spec\\.source\\.targetRevision ${shop} is a commit SHA of acme/on-master, not a branch`));
    // And a RollbackPolicy governing them counts them as refused
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'all', namespace: s.namespace }, spec: { environment: 'staging' } }));
    const condition = await eventually('ApplicationsRefused condition', async () => {
      const policy = JSON.parse(await kubectlOk(stack, ['get', 'rollbackpolicy', 'all', '-n', s.namespace, '-o', 'json'])) as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
      const c = policy.status?.conditions?.find((x) => x.type === 'ApplicationsRefused');
      return c?.status === 'True' ? c : undefined;
    }, 90_000, 500);
    expect(condition).toMatchObject({ reason: 'TargetNotBranch', message: '2 governed Application(s) refused, their spec.source.targetRevision a tag or a commit, not a branch: api, shop' });
    // And no attempt was started, no degradation counted, no PR opened: nothing went through the candidate search
    const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
    stoppers.push(() => kv.close());
    for (const name of ['api', 'shop']) {
      expect(await kv.get(KEYS.active(`${s.namespace}_${name}`))).toBeUndefined();
      expect(await kv.get(KEYS.health(`${s.namespace}_${name}`))).toBeUndefined();
    }
    expect(await s.attempts()).toEqual([]);
    expect(s.github.control.pulls(ON_MASTER)).toEqual([]);
    expect(s.github.control.counters()['GET /repos/{owner}/{repo}/commits']).toBeUndefined();
  }, 180_000);
});
