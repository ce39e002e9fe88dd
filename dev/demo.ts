// `make demo`: the operator's main job, end to end, on the local real stack.
// etcd, kube-apiserver, NATS JetStream, Prometheus and Elasticsearch run for
// real, and by default the real GitOps loop too (demo/on-argocd.ts: Argo CD
// 3.6, kube-controller-manager, kube-scheduler and KWOK on a cluster of their
// own); with --sim (`make demo SIM=1`) Argo CD is the simulator
// (demo/on-simulator.ts), which needs no Argo CD build and starts in seconds.
// GitHub is the simulator either way (real git underneath). A bad commit lands
// on a staging and a production app; the operator detects, picks the last
// stable revision from Prometheus history, opens rollback PRs, merges staging
// itself, waits for a human in production (the demo approves with kubectl
// annotate), and confirms recovery. Timings are shortened by configuration,
// never by code paths.
//   node dev/demo.ts [--sim] [--stay]   (--stay: keep everything up until Ctrl-C)
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGitHubSim } from './github-sim/index.ts';
import { watchApplications } from './demo/argocd-watch.ts';
import { onArgoCd } from './demo/on-argocd.ts';
import { onSimulator } from './demo/on-simulator.ts';
import { APPROVER, APPS, REPO, say, show, type DemoContext } from './demo/story.ts';
import { followTimeline, stamp } from './demo/timeline.ts';
import { endpointsOf, startStack } from './stack/index.ts';
import { jaegerTrace, traceTree } from './stack/jaeger.ts';
import { kubectlOk } from './stack/kubectl.ts';
import { freePort } from './stack/process.ts';

const stay = process.argv.includes('--stay');
const mode = process.argv.includes('--sim') ? onSimulator : onArgoCd;
const repo = REPO;

const now = Math.floor(Date.now() / 1000);
const demoStarted = Date.now();
say(mode.intro);
const stack = await startStack(mode.stackOptions(now));
process.stdout.write(`  up in ${((Date.now() - demoStarted) / 1000).toFixed(1)} s${mode.upNote ? `; ${mode.upNote(stack)}` : ''}\n`);
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
    process.stdout.write(`  the demo took ${((Date.now() - demoStarted) / 1000).toFixed(0)} s\n`);
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  say('Starting the GitHub simulator (real git, responses checked against GitHub\'s OpenAPI description)');
  const root = mode.githubRoot(stack);
  const github = await startGitHubSim({ validate: true, ...(root ? { root } : {}) });
  stoppers.push(() => github.stop());
  const { token } = github.control.addUser({ login: 'ai-operator-bot', name: 'ai-operator' });
  github.control.addUser({ login: 'bob', name: 'Bob' });
  await github.control.createRepo({ ...repo, files: { 'README.md': '# GitOps\n' }, message: 'Initial commit', author: 'carol' });
  github.control.setRequiredChecks({ ...repo, branch: 'main', contexts: ['ci/build'] });
  const context: DemoContext = {
    stack, github, now,
    async push(files, message, author, date) {
      const { sha } = await github.control.push({ ...repo, files, message, author, ...(date ? { date: date.toISOString() } : {}) });
      github.control.setStatus({ ...repo, sha, state: 'success', context: 'ci/build' });
      return sha;
    },
    onStop: (stop) => { stoppers.push(stop); },
  };
  const gitops = await mode.deploy(context);
  const kube = gitops.kube;

  say(`RollbackPolicies (timings shortened for the demo: checks every 2 s, Healthy must hold 10 s; a candidate needs ${gitops.candidate.minUptime * 100} % uptime; production approvers: ${APPROVER})`);
  await kubectlOk(kube, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: APPS.map(({ name, environment }) => ({
    apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: `${environment}-demo`, namespace: 'argocd' },
    spec: {
      selector: { matchLabels: { 'ai-operator.enabled': 'true', environment } }, environment,
      detection: { intervalSeconds: 2, persistenceChecks: 3 }, candidate: gitops.candidate,
      merge: { ciTimeoutSeconds: 120, approvalTimeoutSeconds: 600, method: 'squash', ...(environment === 'production' ? { approvers: { users: [APPROVER] } } : {}) },
      healthRestorationSeconds: 10, recoveryTimeoutSeconds: 300, cooldownSeconds: 600,
    },
  })) }));
  process.stdout.write(await kubectlOk(kube, ['get', 'rollbackpolicies', '-n', 'argocd']));

  say(`Who may approve is the API server's to enforce: the shipped admission policy (config/admission), and ${APPROVER} bound to the shipped ai-operator-approver role`);
  process.stdout.write(await kubectlOk(kube, ['apply', '-k', 'config/admission']));
  process.stdout.write(await kubectlOk(kube, ['apply', '-f', 'config/rbac/people.yaml']));
  process.stdout.write(await kubectlOk(kube, ['create', 'rolebinding', 'sre-oncall-approves', '-n', 'argocd', '--clusterrole=ai-operator-approver', `--user=${APPROVER}`]));

  say('Starting the operator (src/main.ts) against all of it');
  const httpPort = await freePort();
  const operatorLog = join(stack.workDir, 'operator.log');
  const operator = spawn(process.execPath, [new URL('../src/main.ts', import.meta.url).pathname], {
    env: {
      PATH: process.env.PATH, KUBECONFIG: kube.kubeconfig, ARGOCD_NAMESPACE: 'argocd', ETCD_ENDPOINTS: endpoints.etcd, NATS_URL: endpoints.nats,
      PROMETHEUS_URL: gitops.prometheusUrl, ELASTICSEARCH_URL: endpoints.elasticsearch, GITHUB_API_URL: github.url,
      GITHUB_ORG: repo.owner, GITHUB_TOKEN: token, AUDIT_FALLBACK_DIR: join(stack.workDir, 'audit'), HTTP_PORT: String(httpPort),
      POLL_INTERVAL_SEC: '2', LOG_LEVEL: 'INFO', POD_NAME: 'ai-operator-0',
      // One trace per rollback, to the stack's Jaeger (shown at the end).
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoints.jaeger.otlp, OTEL_BSP_SCHEDULE_DELAY: '500',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(operator);
  const logStream = createWriteStream(operatorLog);
  operator.stdout!.pipe(logStream);
  operator.stderr!.pipe(logStream);
  operator.once('exit', (code) => { if (!stopping) { process.stderr.write(`the operator exited (${code}); see ${operatorLog}\n`); void shutdown(1); } });
  process.stdout.write(`  operator log: ${operatorLog}\n  metrics: http://127.0.0.1:${httpPort}/metrics\n\n`);

  const completed = new Set<string>();
  /** The correlationId of each app's attempt: its trace id, once the dashes are gone. */
  const attempts = new Map<string, string>();
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => { finish = resolve; });
  const applications = watchApplications(kube.kubeconfig, 'argocd');
  stoppers.push(() => applications.stop());
  const timeline = await followTimeline(endpoints.nats, async (event) => {
    const data = event.data as unknown as { app: { name: string }; number?: number; state?: string };
    const type = event.type.replace('io.ai-operator.', '');
    if (type === 'degradation.confirmed') await gitops.showDegraded?.(data.app.name);
    if (type === 'pr.created') {
      // What Argo CD says of the app at that moment: with the default progress deadline, still Progressing.
      const health = await kubectlOk(kube, ['get', 'application', data.app.name, '-n', 'argocd', '-o', 'jsonpath={.status.health.status}']).catch(() => 'unreadable');
      stamp(`Argo CD: ${data.app.name} is ${health || 'Unknown'} as its rollback pull request opens`);
      const pr = github.control.pulls(repo).find((p) => p.number === data.number);
      if (pr) {
        process.stdout.write(`\n---- pull request #${pr.number}: ${pr.title} ----\n${pr.body}\n---- end of #${pr.number} ----\n\n`);
        process.stdout.write(`         (the demo plays CI: ci/build turns green on ${pr.headSha.slice(0, 7)})\n`);
        github.control.setStatus({ ...repo, sha: pr.headSha, state: 'success', context: 'ci/build' });
      }
    }
    if (type === 'ci.completed' && data.app.name === 'order-service' && data.state === 'success') {
      const attempt = JSON.parse(await kubectlOk(kube, ['get', 'rollbackattempts', '-n', 'argocd', '-l', 'ai-operator.io/application=order-service', '-o', 'json'])) as { items: Array<{ metadata: { name: string } }> };
      const name = attempt.items.at(-1)!.metadata.name;
      process.stdout.write(`         production waits for a human; the demo approves as ${APPROVER} (impersonated: --as):\n         $ kubectl annotate rollbackattempt ${name} -n argocd ai-operator.io/approve=${APPROVER}\n`);
      await new Promise((r) => setTimeout(r, 3000));
      // Someone else writing that name is refused by the API server, whatever their rights on the object.
      await kubectlOk(kube, ['annotate', `--as=${APPROVER}`, 'rollbackattempt', name, '-n', 'argocd', `ai-operator.io/approve=${APPROVER}`]);
    }
    if (type === 'rollback.completed' || type === 'rollback.aborted') {
      attempts.set(data.app.name, event.correlationid);
      completed.add(`${data.app.name}:${type}`);
      if (completed.size === APPS.length) finish();
    }
  });
  stoppers.push(() => timeline.stop());
  const wait = Math.max(4000, (gitops.badPushNotBefore ?? 0) - Date.now());
  if (wait > 4000) process.stdout.write(`  (v3 runs ${(wait / 1000).toFixed(0)} s more before the bad push: its uptime is what makes it a rollback target)\n`);
  await new Promise((r) => setTimeout(r, wait));

  say('Bob pushes a broken build to both apps');
  const badSha = await context.push(Object.fromEntries(APPS.map(({ name }) => [`apps/${name}/deployment.yaml`, gitops.broken(name)])), 'Bump images to v4', 'bob');
  process.stdout.write(`  ${badSha.slice(0, 7)} Bump images to v4 — ${gitops.brokenNote}\n\n`);

  const timeout = setTimeout(() => { process.stderr.write(`demo: no outcome after 5 minutes; see ${operatorLog}\n`); void shutdown(1); }, 300_000);
  await finished;
  clearTimeout(timeout);
  await applications.stop();

  say('Where it ended');
  await gitops.showEnd?.();
  show('kubectl get rollbackattempts -A', await kubectlOk(kube, ['get', 'rollbackattempts', '-A']));
  say('One trace per rollback (Jaeger\'s query API; the trace id is the correlationId without its dashes)');
  await new Promise((r) => setTimeout(r, 2000)); // the operator's export batch, then Jaeger's
  for (const [app, correlationId] of attempts) {
    const traceId = correlationId.replace(/-/g, '');
    const trace = await jaegerTrace(endpoints.jaeger.query, traceId);
    process.stdout.write(`\n  ${app}: ${endpoints.jaeger.query}/api/traces/${traceId}\n`);
    process.stdout.write(trace ? `${traceTree(trace).split('\n').map((line) => `    ${line}`).join('\n')}\n` : '    (not in Jaeger)\n');
  }
  const outcomes = [...completed];
  const violations = github.violations();
  process.stdout.write(`\nOutcome: ${outcomes.join(', ')}\nGitHub simulator: ${violations.length} response(s) outside GitHub's OpenAPI description\n`);
  writeFileSync(join(stack.workDir, 'demo.env'), `export KUBECONFIG=${kube.kubeconfig}\nexport PATH=${join(kube.kubectl, '..')}:$PATH\n`);
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
