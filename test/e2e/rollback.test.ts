// The whole job on the real stack with the GitHub and Argo CD simulators and the
// real operator process (src/main.ts): a bad commit degrades a staging app and the
// operator rolls it back in Git. The etcd record, the RollbackAttempt status, the
// JetStream events and the audit records must all tell the same story.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startArgoCdSim, BROKEN_ANNOTATION, type ArgoCdSim } from '../../dev/argocd-sim/index.ts';
import { startGitHubSim, type GitHubSim } from '../../dev/github-sim/index.ts';
import { freePort } from '../../dev/stack/process.ts';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { verifyChain } from '../../src/audit/record.ts';
import type { CloudEvent } from '../../src/events/types.ts';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { AttemptStore } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { freshNamespace, kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';

const stack = inject('stack');
const stoppers: Array<() => Promise<void> | void> = [];
// Each test's operator and simulators stop after it: operators share the leader key.
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const deployment = (app: string, ns: string, image: string, broken = false) => [
  'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', `  name: ${app}`, `  namespace: ${ns}`,
  ...(broken ? ['  annotations:', `    ${BROKEN_ANNOTATION}: "true"`] : []),
  'spec:', '  replicas: 2', '  selector:', '    matchLabels:', `      app: ${app}`, '  template:', '    metadata:', '      labels:', `        app: ${app}`,
  '    spec:', '      containers:', `        - name: ${app}`, `          image: example/${app}:${image}`, '',
].join('\n');

async function given(name: string, environment: 'staging' | 'production', extraEnv: Record<string, string> = {}) {
  // Given a GitOps repo with a good history and an Application that Argo CD deployed 24 h ago
  const namespace = await freshNamespace(stack, name);
  const target = `${namespace}-workload`;
  const github: GitHubSim = await startGitHubSim({ validate: true });
  stoppers.push(() => github.stop());
  const { token } = github.control.addUser({ login: 'ai-operator-bot' });
  const repo = { owner: 'acme', repo: 'gitops' };
  const path = 'apps/cart';
  await github.control.createRepo({ ...repo, files: { 'README.md': 'x\n', 'apps/other/config.yaml': 'keep: me\n' }, message: 'init' });
  const { sha: good } = await github.control.push({ ...repo, files: { [`${path}/deployment.yaml`]: deployment('cart', target, 'v1') }, message: 'Release v1' });
  github.control.setStatus({ ...repo, sha: good, state: 'success', context: 'ci/build' });

  const kc = kubeConfig(stack);
  const api = kc.makeApiClient(CustomObjectsApi);
  await api.createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace, plural: 'applications', body: {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'cart', namespace, labels: { 'ai-operator.enabled': 'true', environment } },
    spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path, targetRevision: 'main' }, destination: { namespace: target } },
  } });
  const dayAgo = new Date(Date.now() - 24 * 3600_000).toISOString();
  await api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace, plural: 'applications', name: 'cart', body: {
    status: { sync: { status: 'Synced', revision: good }, health: { status: 'Healthy' }, history: [{ id: 0, revision: good, deployedAt: dayAgo, deployStartedAt: dayAgo }] },
  } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  const argocd: ArgoCdSim = await startArgoCdSim({ kubeConfig: kc, repoRoot: github.root, intervalMs: 500, namespaces: [namespace] });
  stoppers.push(() => argocd.stop());
  await argocd.syncNow();

  // And the operator, watching that namespace only
  const dir = mkdtempSync(join(tmpdir(), 'ai-operator-rollback-'));
  const operator: ChildProcess = spawn(process.execPath, [fileURLToPath(new URL('../../src/main.ts', import.meta.url))], {
    env: {
      PATH: process.env.PATH, KUBECONFIG: stack.kubeconfig, ETCD_ENDPOINTS: stack.etcd, NATS_URL: stack.nats, PROMETHEUS_URL: stack.prometheus,
      ELASTICSEARCH_URL: stack.elasticsearch, GITHUB_API_URL: github.url, GITHUB_ORG: 'acme', GITHUB_TOKEN: token, AUDIT_FALLBACK_DIR: join(dir, 'audit'),
      HTTP_PORT: String(await freePort()), POLL_INTERVAL_SEC: '1', HEALTH_RESTORATION_DURATION: '3', WATCH_NAMESPACES: namespace, LOG_LEVEL: 'WARN', ...extraEnv,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  stoppers.push(() => { operator.kill('SIGTERM'); });

  return { namespace, target, github, repo, path, good, dir };
}

describe('a degraded staging app is rolled back in Git', () => {
  it('restores exactly the app path, merges, recovers, and every record agrees', async () => {
    const { namespace, target, github, repo, path, good, dir } = await given('rollback', 'staging');

    // When a bad commit lands (adding a file the rollback must delete, and changing another app it must not touch)
    const { sha: bad } = await github.control.push({ ...repo, files: { [`${path}/deployment.yaml`]: deployment('cart', target, 'v2', true), [`${path}/extra.yaml`]: 'added: in v2\n', 'apps/other/config.yaml': 'keep: changed\n' }, message: 'Release v2' });
    github.control.setStatus({ ...repo, sha: bad, state: 'success', context: 'ci/build' });

    // Then a rollback PR is opened; CI goes green; the operator merges; health comes back
    const pr = await eventually('rollback PR', async () => github.control.pulls(repo)[0], 60_000, 250);
    expect(pr.title).toBe(`Rollback cart (staging) to ${good.slice(0, 7)}`);
    const diff = await eventually('PR head diff', async () => {
      const { execFileSync } = await import('node:child_process');
      const headSha = github.control.pulls(repo)[0]!.headSha;
      return execFileSync('git', ['--git-dir', join(github.root, 'acme', 'gitops.git'), 'diff', '--name-status', `${good}`, headSha], { encoding: 'utf8' });
    });
    // Against the good revision, the PR head differs only outside the app's path: the app is restored
    // (changed file back, added file gone) and the other app keeps its newer config.
    expect(diff).toBe('M\tapps/other/config.yaml\n');
    github.control.setStatus({ ...repo, sha: github.control.pulls(repo)[0]!.headSha, state: 'success', context: 'ci/build' });

    const kv = new EtcdKV([stack.etcd]);
    stoppers.push(() => kv.close());
    const store = new AttemptStore(kv);
    const record: AttemptRecord = await eventually('RollbackComplete', async () => {
      const all = (await store.allAttempts()).filter((r) => r.app.namespace === namespace);
      return all.find((r) => r.state === 'RollbackComplete');
    }, 90_000, 500);
    expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(record.candidate).toMatchObject({ revision: good, mode: 'ci-only' });
    expect(github.control.pulls(repo)[0]).toMatchObject({ merged: true, mergedBy: 'ai-operator-bot' });

    // The RollbackAttempt status is the etcd record
    await eventually('status projected', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', namespace, '-o', 'json'])).items[0]?.status?.phase === 'RollbackComplete');
    const status = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', namespace, '-o', 'json'])) as { items: Array<{ spec: { correlationId: string }; status: { transitions: unknown[]; pullRequest: { number: number }; candidate: { revision: string } } }> };
    expect(status.items).toHaveLength(1);
    expect(status.items[0]!.spec.correlationId).toBe(record.correlationId);
    expect(status.items[0]!.status).toMatchObject({ pullRequest: { number: record.pullRequest!.number }, candidate: { revision: good } });
    expect(status.items[0]!.status.transitions).toHaveLength(record.transitions.length);

    // JetStream holds one fsm.transition per transition of this attempt, each id once
    const nc = await connect({ servers: stack.nats });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('AI_OPERATOR');
    const events: CloudEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage('AI_OPERATOR', { seq }).catch(() => undefined);
      const event = message?.json<CloudEvent>();
      if (event?.correlationid === record.correlationId) events.push(event);
    }
    await nc.close();
    expect(events.filter((e) => e.type === 'io.ai-operator.fsm.transition')).toHaveLength(record.transitions.length);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

    // The audit trail has the transitions and the merge, in an unbroken hash chain
    const audit = await readAuditDir(join(dir, 'audit'));
    expect(verifyChain(audit).ok).toBe(true);
    const mine = audit.filter((a) => a.correlationId === record.correlationId);
    expect(mine.filter((a) => a.actionType === 'FSM_TRANSITION')).toHaveLength(record.transitions.length);
    expect(mine.find((a) => a.actionType === 'PR_MERGED')?.invariantsChecked).toEqual(Object.fromEntries(record.invariants.map((i) => [i.id, 'PASS'])));

    // And GitHub never answered outside its OpenAPI description
    expect(github.violations()).toEqual([]);
  }, 180_000);
});

describe('a degraded production app', () => {
  it('waits for an authorized approval (an unauthorized one changes nothing), then merges and recovers', async () => {
    const { namespace, target, github, repo, path, good } = await given('production', 'production', { MERGE_APPROVAL_TIMEOUT: '600' });
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace },
      spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 3, merge: { approvers: { users: ['alice@example.com'] } } } }));
    const { sha: bad } = await github.control.push({ ...repo, files: { [`${path}/deployment.yaml`]: deployment('cart', target, 'v2', true) }, message: 'Release v2' });
    github.control.setStatus({ ...repo, sha: bad, state: 'success', context: 'ci/build' });
    const pr = await eventually('rollback PR', async () => github.control.pulls(repo)[0], 60_000, 250);
    github.control.setStatus({ ...repo, sha: pr.headSha, state: 'success', context: 'ci/build' });

    const kv = new EtcdKV([stack.etcd]);
    stoppers.push(() => kv.close());
    const store = new AttemptStore(kv);
    const inState = (state: string) => eventually(state, async () => (await store.allAttempts()).find((r) => r.app.namespace === namespace && r.state === state), 60_000, 500);
    const waiting = await inState('AwaitingMergeApproval');
    // The approval request is on the PR; nothing merges without an approval.
    await eventually('approval comment', async () => github.control.comments({ ...repo, number: pr.number }).some((c) => c.body.includes('ai-operator.io/approve=<your-username>')));
    await new Promise((r) => setTimeout(r, 3000));
    expect(github.control.pulls(repo)[0]!.merged).toBe(false);

    const name = `cart-${waiting.correlationId.replace(/-/g, '').slice(0, 8)}`;
    await kubectlOk(stack, ['annotate', 'rollbackattempt', name, '-n', namespace, 'ai-operator.io/approve=mallory']);
    await new Promise((r) => setTimeout(r, 3000));
    expect(github.control.pulls(repo)[0]!.merged).toBe(false);
    await kubectlOk(stack, ['annotate', '--overwrite', 'rollbackattempt', name, '-n', namespace, 'ai-operator.io/approve=alice@example.com']);
    const done = await inState('RollbackComplete');
    expect(done).toMatchObject({ approval: { approvedBy: 'alice@example.com' }, candidate: { revision: good } });
    expect(done.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
    expect(github.control.pulls(repo)[0]).toMatchObject({ merged: true, mergedBy: 'ai-operator-bot' });
    expect(github.violations()).toEqual([]);
  }, 180_000);
});
