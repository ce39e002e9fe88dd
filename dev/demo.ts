// `make demo`: the operator's main job, end to end, on the local real stack.
// etcd, kube-apiserver, NATS JetStream, Prometheus and Elasticsearch run for real;
// GitHub and Argo CD are the simulators (real git underneath). A bad commit lands
// on a staging and a production app; the operator detects, picks the last stable
// revision from Prometheus history, opens rollback PRs, merges staging itself,
// waits for a human in production (the demo approves with kubectl annotate), and
// confirms recovery. Timings are shortened by configuration, never by code paths.
//   node dev/demo.ts [--stay]   (--stay: keep everything up until Ctrl-C)
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { startArgoCdSim, BROKEN_ANNOTATION } from './argocd-sim/index.ts';
import { startGitHubSim } from './github-sim/index.ts';
import { followTimeline } from './demo/timeline.ts';
import { endpointsOf, startStack, type Sample } from './stack/index.ts';
import { installCrds, kubectlOk } from './stack/kubectl.ts';
import { freePort } from './stack/process.ts';

const stay = process.argv.includes('--stay');
const say = (text: string) => process.stdout.write(`\n==> ${text}\n`);
const APPS = [
  { name: 'payment-service', environment: 'staging' },
  { name: 'order-service', environment: 'production' },
] as const;
const APPROVER = 'sre-oncall@example.com';
const HOUR = 3600;

function deployment(app: string, image: string, broken = false): string {
  return [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', `  name: ${app}`, `  namespace: ${app}`,
    ...(broken ? ['  annotations:', `    ${BROKEN_ANNOTATION}: "true"`] : []),
    'spec:', '  replicas: 3', '  selector:', '    matchLabels:', `      app: ${app}`, '  template:', '    metadata:', '      labels:', `        app: ${app}`,
    '    spec:', '      containers:', `        - name: ${app}`, `          image: registry.example.com/${app}:${image}`, '',
  ].join('\n');
}

/** 72 h of argocd_app_info, one sample a minute: v1 and v3 solid, v2 flaky. */
function history(now: number): Sample[] {
  const samples: Sample[] = [];
  for (const { name } of APPS) {
    for (let at = now - 72 * HOUR; at < now - 2 * HOUR; at += 60) {
      const inV2 = at >= now - 48 * HOUR && at < now - 24 * HOUR;
      const healthy = inV2 ? at % 1200 >= 120 : at % 86_400 !== 0; // v2: 10 % Degraded
      samples.push({ metric: 'argocd_app_info', labels: { name, namespace: 'argocd', project: 'default', health_status: healthy ? 'Healthy' : 'Degraded', sync_status: 'Synced' }, value: 1, at });
    }
  }
  return samples;
}

const now = Math.floor(Date.now() / 1000);
say('Starting the local stack (etcd, kube-apiserver, NATS JetStream, Prometheus with 72 h of history, Elasticsearch)');
const stack = await startStack({ prometheusHistory: history(now) });
const endpoints = endpointsOf(stack);
const children: ChildProcess[] = [];
const stoppers: Array<() => Promise<void>> = [];
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('Stopping');
    for (const child of children) child.kill('SIGTERM');
    await Promise.allSettled(stoppers.reverse().map((stop) => stop()));
    await stack.stop();
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  await installCrds(endpoints);
  await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
  for (const { name } of APPS) await kubectlOk(endpoints, ['create', 'namespace', name]);

  say('Starting the GitHub simulator (real git, responses checked against GitHub\'s OpenAPI description)');
  const github = await startGitHubSim({ validate: true });
  stoppers.push(() => github.stop());
  const { token } = github.control.addUser({ login: 'ai-operator-bot', name: 'ai-operator' });
  github.control.addUser({ login: 'bob', name: 'Bob' });
  const repo = { owner: 'acme', repo: 'gitops' };
  await github.control.createRepo({ ...repo, files: { 'README.md': '# GitOps\n' }, message: 'Initial commit', author: 'carol' });
  const revisions: Record<string, string> = {};
  for (const [version, hoursAgo] of [['v1', 72], ['v2', 48], ['v3', 24]] as const) {
    const files = Object.fromEntries(APPS.map(({ name }) => [`apps/${name}/deployment.yaml`, deployment(name, version)]));
    const { sha } = await github.control.push({ ...repo, files, message: `Release ${version}`, author: 'carol', date: new Date((now - hoursAgo * HOUR) * 1000).toISOString() });
    revisions[version] = sha;
  }
  github.control.setRequiredChecks({ ...repo, branch: 'main', contexts: ['ci/build'] });
  for (const sha of Object.values(revisions)) github.control.setStatus({ ...repo, sha, state: 'success', context: 'ci/build' });

  say('Creating the Argo CD Applications (history: v1 72 h ago, v2 48 h ago, v3 24 h ago) and the Argo CD simulator');
  const kc = new KubeConfig();
  kc.loadFromFile(endpoints.kubeconfig);
  const api = kc.makeApiClient(CustomObjectsApi);
  for (const { name, environment } of APPS) {
    await api.createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', body: {
      apiVersion: 'argoproj.io/v1alpha1', kind: 'Application',
      metadata: { name, namespace: 'argocd', labels: { 'ai-operator.enabled': 'true', environment } },
      spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${name}`, targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: name }, syncPolicy: { automated: {} } },
    } });
    const deployed = (version: string, hoursAgo: number, id: number) => ({ id, revision: revisions[version], deployedAt: new Date((now - hoursAgo * HOUR) * 1000).toISOString(), deployStartedAt: new Date((now - hoursAgo * HOUR) * 1000).toISOString() });
    await api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', name, body: {
      status: { sync: { status: 'Synced', revision: revisions.v3 }, health: { status: 'Healthy' }, history: [deployed('v1', 72, 0), deployed('v2', 48, 1), deployed('v3', 24, 2)] },
    } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }
  const argocd = await startArgoCdSim({ kubeConfig: kc, repoRoot: github.root, intervalMs: 1000, namespaces: ['argocd'] });
  stoppers.push(() => argocd.stop());
  await argocd.syncNow();

  say(`RollbackPolicies (timings shortened for the demo: checks every 2 s, Healthy must hold 10 s; production approvers: ${APPROVER})`);
  await kubectlOk(endpoints, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: APPS.map(({ name, environment }) => ({
    apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: `${environment}-demo`, namespace: 'argocd' },
    spec: {
      selector: { matchLabels: { 'ai-operator.enabled': 'true', environment } }, environment,
      detection: { intervalSeconds: 2, persistenceChecks: 3 }, candidate: { minUptime: 0.99, window: '24h' },
      merge: { ciTimeoutSeconds: 120, approvalTimeoutSeconds: 600, method: 'squash', ...(environment === 'production' ? { approvers: { users: [APPROVER] } } : {}) },
      healthRestorationSeconds: 10, recoveryTimeoutSeconds: 300, cooldownSeconds: 600,
    },
  })) }));
  process.stdout.write(await kubectlOk(endpoints, ['get', 'rollbackpolicies', '-n', 'argocd']));

  say(`Who may approve is the API server's to enforce: the shipped admission policy (config/admission), and ${APPROVER} bound to the shipped ai-operator-approver role`);
  process.stdout.write(await kubectlOk(endpoints, ['apply', '-k', 'config/admission']));
  process.stdout.write(await kubectlOk(endpoints, ['apply', '-f', 'config/rbac/people.yaml']));
  process.stdout.write(await kubectlOk(endpoints, ['create', 'rolebinding', 'sre-oncall-approves', '-n', 'argocd', '--clusterrole=ai-operator-approver', `--user=${APPROVER}`]));

  say('Starting the operator (src/main.ts) against all of it');
  const httpPort = await freePort();
  const operatorLog = join(stack.workDir, 'operator.log');
  const operator = spawn(process.execPath, [new URL('../src/main.ts', import.meta.url).pathname], {
    env: {
      PATH: process.env.PATH, KUBECONFIG: endpoints.kubeconfig, ETCD_ENDPOINTS: endpoints.etcd, NATS_URL: endpoints.nats,
      PROMETHEUS_URL: endpoints.prometheus, ELASTICSEARCH_URL: endpoints.elasticsearch, GITHUB_API_URL: github.url,
      GITHUB_ORG: 'acme', GITHUB_TOKEN: token, AUDIT_FALLBACK_DIR: join(stack.workDir, 'audit'), HTTP_PORT: String(httpPort),
      POLL_INTERVAL_SEC: '2', LOG_LEVEL: 'INFO', POD_NAME: 'ai-operator-0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(operator);
  const logStream = createWriteStream(operatorLog);
  operator.stdout!.pipe(logStream);
  operator.stderr!.pipe(logStream);
  operator.once('exit', (code) => { if (!stopping) { process.stderr.write(`the operator exited (${code}); see ${operatorLog}\n`); void shutdown(1); } });
  process.stdout.write(`  operator log: ${operatorLog}\n  metrics: http://127.0.0.1:${httpPort}/metrics\n`);

  const completed = new Set<string>();
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => { finish = resolve; });
  const timeline = await followTimeline(endpoints.nats, async (event) => {
    const data = event.data as unknown as { app: { name: string }; number?: number; state?: string };
    const type = event.type.replace('io.ai-operator.', '');
    if (type === 'pr.created') {
      const pr = github.control.pulls(repo).find((p) => p.number === data.number);
      if (pr) {
        process.stdout.write(`\n---- pull request #${pr.number}: ${pr.title} ----\n${pr.body}\n---- end of #${pr.number} ----\n\n`);
        process.stdout.write(`         (the demo plays CI: ci/build turns green on ${pr.headSha.slice(0, 7)})\n`);
        github.control.setStatus({ ...repo, sha: pr.headSha, state: 'success', context: 'ci/build' });
      }
    }
    if (type === 'ci.completed' && data.app.name === 'order-service' && data.state === 'success') {
      const attempt = JSON.parse(await kubectlOk(endpoints, ['get', 'rollbackattempts', '-n', 'argocd', '-l', 'ai-operator.io/application=order-service', '-o', 'json'])) as { items: Array<{ metadata: { name: string } }> };
      const name = attempt.items.at(-1)!.metadata.name;
      process.stdout.write(`         production waits for a human; the demo approves as ${APPROVER} (impersonated: --as):\n         $ kubectl annotate rollbackattempt ${name} -n argocd ai-operator.io/approve=${APPROVER}\n`);
      await new Promise((r) => setTimeout(r, 3000));
      // Someone else writing that name is refused by the API server, whatever their rights on the object.
      await kubectlOk(endpoints, ['annotate', `--as=${APPROVER}`, 'rollbackattempt', name, '-n', 'argocd', `ai-operator.io/approve=${APPROVER}`]);
    }
    if (type === 'rollback.completed' || type === 'rollback.aborted') {
      completed.add(`${data.app.name}:${type}`);
      if (completed.size === APPS.length) finish();
    }
  });
  stoppers.push(() => timeline.stop());
  await new Promise((r) => setTimeout(r, 4000));

  say('Bob pushes a broken build to both apps');
  const bad = Object.fromEntries(APPS.map(({ name }) => [`apps/${name}/deployment.yaml`, deployment(name, 'v4', true)]));
  const { sha: badSha } = await github.control.push({ ...repo, files: bad, message: 'Bump images to v4', author: 'bob' });
  github.control.setStatus({ ...repo, sha: badSha, state: 'success', context: 'ci/build' });
  process.stdout.write(`  ${badSha.slice(0, 7)} Bump images to v4 — Argo CD syncs it, the Deployments fall short of replicas\n\n`);

  const timeout = setTimeout(() => { process.stderr.write(`demo: no outcome after 5 minutes; see ${operatorLog}\n`); void shutdown(1); }, 300_000);
  await finished;
  clearTimeout(timeout);

  say('kubectl get rollbackattempts -A');
  process.stdout.write(await kubectlOk(endpoints, ['get', 'rollbackattempts', '-A']));
  const outcomes = [...completed];
  const violations = github.violations();
  process.stdout.write(`\nOutcome: ${outcomes.join(', ')}\nGitHub simulator: ${violations.length} response(s) outside GitHub's OpenAPI description\n`);
  writeFileSync(join(stack.workDir, 'demo.env'), `export KUBECONFIG=${endpoints.kubeconfig}\nexport PATH=${join(endpoints.kubectl, '..')}:$PATH\n`);
  const ok = outcomes.every((o) => o.endsWith('rollback.completed')) && violations.length === 0;
  if (stay) {
    process.stdout.write(`\nEverything stays up until Ctrl-C. In another terminal: source ${join(stack.workDir, 'demo.env')}\n`);
  } else {
    await shutdown(ok ? 0 : 1);
  }
} catch (error) {
  process.stderr.write(`demo failed: ${(error as Error).stack ?? error}\n`);
  await shutdown(1);
}
