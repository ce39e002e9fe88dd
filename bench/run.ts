// `make bench`: the operator (src/main.ts) watching many Argo CD Applications on
// the real local stack. Not a test: it measures and prints.
//   Phase 1 — APPS Applications (default 10,000), all Healthy, 10 s interval, for
//   MINUTES minutes (default 5): operator CPU seconds, peak RSS, and per minute the
//   Kubernetes API requests (kube-apiserver's apiserver_request_total), GitHub
//   requests (the simulator's counters) and etcd writes (the operator's own etcd,
//   etcd_mvcc_put_total + etcd_mvcc_delete_total).
//   Phase 2 — DEGRADE of them (default 100) turn Degraded at once: time from the
//   confirming check (degradation.confirmed) to PR opened (pr.created), p50/p95,
//   and GitHub requests per rollback; also when the last PR opened, and the CPU
//   each process spent, to show where the time goes.
// The harness writes the Applications' status as Argo CD would: every app lists
// its Deployment in status.resources. Only the DEGRADE apps' Deployments exist in
// the cluster (10,000 would weigh on the idle phase, and the operator reads a
// Deployment only once an app is confirmed Degraded); when they turn Degraded
// their status becomes the stuck rollout kube-controller-manager leaves under the
// default RollingUpdate, so the invariants read a real shortage (I3) and each
// app's path differs between the deployed revision and the candidate.
// The GitHub simulator runs as its own process (dev/github-sim/main.ts), so its
// CPU is measured apart from the operator's and the harness's.
// Environment: BENCH_APPS, BENCH_MINUTES, BENCH_DEGRADE, BENCH_CPU_PROFILE (a directory),
// BENCH_TRACING=1 (the operator exports its traces to the stack's Jaeger; off by default).
import { join } from 'node:path';
import { followTimeline } from '../dev/demo/timeline.ts';
import { endpointsOf, startStack } from '../dev/stack/index.ts';
import { installCrds, kubectlOk } from '../dev/stack/kubectl.ts';
import { freePort } from '../dev/stack/process.ts';
import { apiserverMetrics, benchCluster, cpuSeconds, createApps, gitopsRepo, metricSum, name, peakRssMiB, reportDegraded, stall, startOperator, startSimProcess } from './support.ts';

const APPS = Number(process.env.BENCH_APPS ?? 10_000);
const MINUTES = Number(process.env.BENCH_MINUTES ?? 5);
const DEGRADE = Math.min(APPS, Number(process.env.BENCH_DEGRADE ?? 100));
const TRACING = process.env.BENCH_TRACING === '1';
const out = (text: string) => process.stdout.write(`${text}\n`);

/** Per call_name: tries and seconds, from ai_operator_mcp_call_duration_seconds. */
function callTimes(metrics: string): Map<string, { count: number; sum: number }> {
  const calls = new Map<string, { count: number; sum: number }>();
  for (const line of metrics.split('\n')) {
    const match = /^ai_operator_mcp_call_duration_seconds_(sum|count)\{call_name="([^"]+)"\} (\S+)$/.exec(line);
    if (!match) continue;
    const entry = calls.get(match[2]!) ?? { count: 0, sum: 0 };
    entry[match[1] as 'sum' | 'count'] = Number(match[3]);
    calls.set(match[2]!, entry);
  }
  return calls;
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

out(`ai-operator benchmark: ${APPS} Applications, ${MINUTES} min Healthy, then ${DEGRADE} degrade at once; tracing ${TRACING ? 'on (the stack\'s Jaeger)' : 'off'}`);
const stack = await startStack();
const endpoints = endpointsOf(stack);
const sim = await startSimProcess();
try {
  await installCrds(endpoints);
  await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
  const cluster = benchCluster(endpoints);
  const { kc } = cluster;

  const { token, good, bad } = await gitopsRepo(sim, DEGRADE);

  const started = Date.now();
  await createApps(cluster, APPS, DEGRADE, good, bad);
  out(`created ${APPS} Healthy Applications in ${((Date.now() - started) / 1000).toFixed(0)} s`);

  const httpPort = await freePort();
  // BENCH_CPU_PROFILE=DIR writes the operator's V8 CPU profile there on exit (open it in Chrome DevTools).
  const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`] : [];
  const operator = await startOperator(endpoints, {
    github: sim.url, token, auditDir: join(stack.workDir, 'audit'), httpPort, execArgv: profile,
    ...(TRACING ? { env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoints.jaeger.otlp } } : {}),
  });
  out(`operator ready after ${((Date.now() - started) / 1000).toFixed(0)} s; measuring ${MINUTES} min of all-Healthy`);
  await new Promise((r) => setTimeout(r, 15_000)); // let start-up settle

  const etcdWrites = async () => (await metricSum(fetch(`${endpoints.etcd}/metrics`).then((r) => r.text()), 'etcd_mvcc_put_total')) + (await metricSum(fetch(`${endpoints.etcd}/metrics`).then((r) => r.text()), 'etcd_mvcc_delete_total'));
  const kubeRequests = () => metricSum(apiserverMetrics(kc, endpoints.kubeUrl), 'apiserver_request_total');
  const githubRequests = async () => Object.values(await sim.control<Record<string, number>>('counters')).reduce((a, b) => a + b, 0);
  const before = { cpu: cpuSeconds(operator.pid!), kube: await kubeRequests(), github: await githubRequests(), etcd: await etcdWrites(), at: Date.now() };
  await new Promise((r) => setTimeout(r, MINUTES * 60_000));
  const after = { cpu: cpuSeconds(operator.pid!), kube: await kubeRequests(), github: await githubRequests(), etcd: await etcdWrites(), at: Date.now() };
  const minutes = (after.at - before.at) / 60_000;
  out(`\nPhase 1 — ${APPS} Healthy Applications, ${minutes.toFixed(1)} min:`);
  out(`  CPU: ${(after.cpu - before.cpu).toFixed(1)} s = ${((after.cpu - before.cpu) / (minutes * 60)).toFixed(3)} core on average (target < 0.5)`);
  out(`  peak RSS: ${peakRssMiB(operator.pid!).toFixed(0)} MiB (target < 512)`);
  out(`  Kubernetes API requests/min: ${((after.kube - before.kube) / minutes).toFixed(1)} (all clients of the apiserver; the benchmark itself is idle)`);
  out(`  GitHub requests/min: ${((after.github - before.github) / minutes).toFixed(1)} (target 0)`);
  out(`  etcd writes/min: ${((after.etcd - before.etcd) / minutes).toFixed(1)} (target 0; leader lease renewals are not writes)`);

  // Phase 2: DEGRADE apps turn Degraded at once.
  const confirmed = new Map<string, number>();
  const opened = new Map<string, number>();
  const aborted = new Map<string, string>(); // app → reason, for an attempt that ended before its PR opened
  const timeline = await followTimeline(endpoints.nats, (event) => {
    const app = event.subject.split('/')[1]!;
    if (event.type === 'io.ai-operator.degradation.confirmed') confirmed.set(app, Date.parse(event.time));
    if (event.type === 'io.ai-operator.pr.created') opened.set(app, Date.parse(event.time));
    if (event.type === 'io.ai-operator.rollback.aborted' && !opened.has(app)) aborted.set(app, String((event.data as { reason?: unknown }).reason));
  }, { print: false });
  const githubBefore = await githubRequests();
  const cpuBefore = { operator: cpuSeconds(operator.pid!), sim: cpuSeconds(sim.child.pid!), harness: process.cpuUsage() };
  const operatorMetrics = () => fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text());
  const callsBefore = callTimes(await operatorMetrics());
  // Every rollout stalls first, then Argo CD reports what it reads of them.
  const stalledAt = new Date().toISOString();
  await Promise.all(Array.from({ length: DEGRADE }, (_, i) => stall(cluster, name(i), stalledAt)));
  const degradedAt = Date.now();
  await Promise.all(Array.from({ length: DEGRADE }, (_, i) => reportDegraded(cluster, name(i))));
  while (opened.size + aborted.size < DEGRADE && Date.now() - degradedAt < 300_000) await new Promise((r) => setTimeout(r, 500));
  await new Promise((r) => setTimeout(r, 3000));
  const harnessCpu = process.cpuUsage(cpuBefore.harness);
  const latencies = [...opened].filter(([app]) => confirmed.has(app)).map(([app, at]) => (at - confirmed.get(app)!) / 1000);
  const firstConfirmed = Math.min(...confirmed.values());
  const lastOpened = Math.max(...opened.values());
  out(`\nPhase 2 — ${DEGRADE} Applications Degraded at once:`);
  out(`  PRs opened: ${opened.size}/${DEGRADE}; the first confirmation ${((firstConfirmed - degradedAt) / 1000).toFixed(1)} s after the apps turned Degraded (3 checks, 10 s apart), the last PR ${((lastOpened - firstConfirmed) / 1000).toFixed(1)} s after it`);
  if (aborted.size > 0) {
    const reasons = new Map<string, number>();
    for (const reason of aborted.values()) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    out(`  aborted before a PR: ${aborted.size} (${[...reasons].map(([reason, n]) => `${reason} × ${n}`).join(', ')}) — not a rollback the bench measures`);
  }
  out(`  confirming check → PR opened: p50 ${percentile(latencies, 50).toFixed(2)} s, p95 ${percentile(latencies, 95).toFixed(2)} s (target p95 < 2 s)`);
  out(`  GitHub requests per rollback (to PR opened, plus CI polling meanwhile): ${((await githubRequests() - githubBefore) / Math.max(1, opened.size)).toFixed(1)}`);
  out(`  CPU seconds while it ran: operator ${(cpuSeconds(operator.pid!) - cpuBefore.operator).toFixed(1)}, GitHub simulator ${(cpuSeconds(sim.child.pid!) - cpuBefore.sim).toFixed(1)}, harness ${((harnessCpu.user + harnessCpu.system) / 1e6).toFixed(1)} (2 cores shared with etcd, kube-apiserver, NATS)`);
  out(`  peak RSS: ${peakRssMiB(operator.pid!).toFixed(0)} MiB`);
  if (TRACING) out(`  spans dropped: ${(await operatorMetrics()).split('\n').filter((l) => l.startsWith('ai_operator_trace_spans_dropped_total')).map((l) => l.replace('ai_operator_trace_spans_dropped_total', '')).join(', ')}`);
  out('  external calls meanwhile (tries, mean seconds per try):');
  const callsAfter = callTimes(await operatorMetrics());
  for (const [call, after] of [...callsAfter].sort((a, b) => b[1].sum - a[1].sum)) {
    const before = callsBefore.get(call) ?? { count: 0, sum: 0 };
    const count = after.count - before.count;
    if (count > 0) out(`    ${call.padEnd(24)} ${String(count).padStart(5)} × ${((after.sum - before.sum) / count).toFixed(3)} s`);
  }
  await timeline.stop();
  operator.kill('SIGTERM');
  await new Promise((r) => operator.once('exit', r)); // the profile is written on exit
} finally {
  sim.child.kill('SIGTERM');
  await stack.stop();
}
