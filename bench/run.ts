// `make bench`: the operator (src/main.ts) watching many Argo CD Applications on
// the real local stack. Not a test: it measures and prints.
//   Phase 1 — APPS Applications (default 10,000), all Healthy, 10 s interval, for
//   MINUTES minutes (default 5): operator CPU seconds, peak RSS, and per minute the
//   Kubernetes API requests (kube-apiserver's apiserver_request_total), GitHub
//   requests (the simulator's counters) and etcd writes (the operator's own etcd,
//   etcd_mvcc_put_total + etcd_mvcc_delete_total).
//   Phase 2 — DEGRADE of them (default 100) turn Degraded at once, with a second
//   replica standing by (leader election on the same etcd). Once a third of the
//   PRs have opened, the leader is SIGKILLed; the burst is measured across the
//   failover until every app has its PR (or 10 minutes). It prints: when the
//   first confirmation came and the last PR opened; the time from each app's
//   confirming check (degradation.confirmed) to its PR (pr.created), p50/p95/max
//   and how many within 60 s; the failover — kill → the standby holds etcd's
//   leader key (polled every 100 ms through etcd's HTTP gateway), kill → its
//   first PR — and the PRs each replica opened; GitHub requests per rollback
//   split by purpose (the simulator's per-route counters: history, tree/commit/
//   ref, PR, CI polling, merge, other), 304 and secondary-rate-limit answers and
//   the requests that cost quota (the simulator's answers counter); each
//   replica's VmRSS sampled every 250 ms from the moment the apps turn Degraded
//   to the last PR (max and at the end) and its VmHWM; the CPU each process
//   spent; and the operator's external calls (tries, mean seconds).
// The harness writes the Applications' status as Argo CD would: every app lists
// its Deployment in status.resources. Only the DEGRADE apps' Deployments exist in
// the cluster (10,000 would weigh on the idle phase, and the operator reads a
// Deployment only once an app is confirmed Degraded); when they turn Degraded
// their status becomes the stuck rollout kube-controller-manager leaves under the
// default RollingUpdate, so the invariants read a real shortage (I3) and each
// app's path differs between the deployed revision and the candidate. Its writes
// go through a pool of BENCH_WRITERS workers (32) and are retried as a client
// retries them (writes.ts); the retries are printed.
// The GitHub simulator and each operator replica run as processes of their own
// (so their CPU is measured apart from the harness's), tethered like the
// stack's: a bench that crashes or is killed leaves none of them running.
// The simulator enforces GitHub's secondary limits and the operator is given the
// same budget (support.ts githubLimitsFor): by default an Enterprise Server's,
// raised so the burst can open within a minute; BENCH_GITHUB_LIMITS=github for
// github.com's documented 80 writes a minute and 500 an hour (16 PRs a minute).
// Each replica runs with the V8 heap the image gives it in its container: the
// Dockerfile's NODE_OPTIONS percentage of the chart's memory limit, passed as
// --max-old-space-size (figures.ts imageHeapMiB); BENCH_HEAP=machine lets V8 size it
// from the machine's memory instead, as a process outside a container would.
// Environment: BENCH_APPS, BENCH_MINUTES, BENCH_DEGRADE, BENCH_FAILOVER=0 (no
// standby, no kill), BENCH_WRITERS, BENCH_WRITERS_PER_CONNECTION (support.ts),
// BENCH_CPU_PROFILE (a directory), BENCH_TRACING=1 (the operators export their
// traces to the stack's Jaeger; off by default), BENCH_HEAP=machine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { followTimeline } from '../dev/demo/timeline.ts';
import { endpointsOf, startStack } from '../dev/stack/index.ts';
import { installCrds, kubectlOk } from '../dev/stack/kubectl.ts';
import { freePort } from '../dev/stack/process.ts';
import { KEYS } from '../src/api/etcd.ts';
import { byPurpose, counterDelta, imageHeapMiB, peakRssMiB, percentile, PURPOSES, sampleRss } from './figures.ts';
import { apiserverMetrics, benchCluster, cpuSeconds, createApps, etcdGet, githubLimitsFor, gitopsRepo, operatorLimitsEnv, metricSum, name, reportDegraded, stall, startOperator, startSimProcess, writersFromEnv, type BenchProcess } from './support.ts';
import { pool, WriteStats } from './writes.ts';

const APPS = Number(process.env.BENCH_APPS ?? 10_000);
const MINUTES = Number(process.env.BENCH_MINUTES ?? 5);
const DEGRADE = Math.min(APPS, Number(process.env.BENCH_DEGRADE ?? 100));
const TRACING = process.env.BENCH_TRACING === '1';
const FAILOVER = process.env.BENCH_FAILOVER !== '0';
const BURST_CAP_MS = 600_000;
const out = (text: string) => process.stdout.write(`${text}\n`);
const repoFile = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
const HEAP = process.env.BENCH_HEAP === 'machine' ? undefined : imageHeapMiB(repoFile('Dockerfile'), repoFile('charts/ai-operator/values.yaml'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

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

/** The simulator's answers counter (POST /_sim/answers). */
interface Answers { byStatus: Record<string, number>; notModified: number; secondaryRateLimited: number }

interface Replica {
  identity: string;
  process: BenchProcess;
  httpPort: number;
  metrics(): Promise<string>;
}

const github = githubLimitsFor(DEGRADE);
const writers = writersFromEnv();
const connections = writers.perConnection === 0 ? 'a new connection per request' : `${Math.ceil(writers.writers / writers.perConnection)} connection(s)`;
out(`ai-operator benchmark: ${APPS} Applications, ${MINUTES} min Healthy, then ${DEGRADE} degrade at once${FAILOVER ? ', the leader killed mid-burst' : ''}; tracing ${TRACING ? 'on (the stack\'s Jaeger)' : 'off'}; harness writes ${writers.writers} at once on ${connections}`);
out(HEAP ? `operator heap: --max-old-space-size=${HEAP.heapMiB}, what the image's NODE_OPTIONS (${HEAP.percent} % of the container's memory limit) gives under the chart's limit of ${HEAP.limit}` : 'operator heap: sized by V8 from the machine\'s memory (BENCH_HEAP=machine)');
out(`GitHub: ${github.name}, enforced by the simulator and kept by the operator: ${github.limits.writesPerMinute} writes a minute, ${github.limits.writesPerHour} an hour, ${github.limits.pointsPerMinute} points a minute per endpoint, ${github.limits.maxInFlight} in flight`);
const stack = await startStack();
const endpoints = endpointsOf(stack);
const replicas: Replica[] = [];
let sim: Awaited<ReturnType<typeof startSimProcess>> | undefined;
try {
  sim = await startSimProcess(github.limits);
  await installCrds(endpoints);
  await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
  const cluster = benchCluster(endpoints, writers);
  const { kc } = cluster;

  const { token, good, bad } = await gitopsRepo(sim, DEGRADE);

  const started = Date.now();
  const createStats = new WriteStats();
  await createApps(cluster, APPS, DEGRADE, good, bad, { ...writers, stats: createStats });
  out(`created ${APPS} Healthy Applications in ${((Date.now() - started) / 1000).toFixed(0)} s (${createStats.summary()})`);

  // BENCH_CPU_PROFILE=DIR writes each operator's V8 CPU profile there on exit (open it in Chrome DevTools).
  const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`] : [];
  const launch = async (identity: string): Promise<Replica> => {
    const httpPort = await freePort();
    const operator = await startOperator(endpoints, {
      github: sim!.url, token, auditDir: join(stack.workDir, `audit-${identity}`), httpPort, identity, execArgv: [...profile, ...(HEAP ? [`--max-old-space-size=${HEAP.heapMiB}`] : [])],
      env: { ...operatorLimitsEnv(github.limits), ...(TRACING ? { OTEL_EXPORTER_OTLP_ENDPOINT: endpoints.jaeger.otlp } : {}) },
    });
    const replica = { identity, process: operator, httpPort, metrics: () => fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text()) };
    replicas.push(replica);
    return replica;
  };
  const first = await launch('bench-a');
  const operator = first.process;
  out(`operator ready after ${((Date.now() - started) / 1000).toFixed(0)} s; measuring ${MINUTES} min of all-Healthy`);
  await sleep(15_000); // let start-up settle

  const etcdWrites = async () => (await metricSum(fetch(`${endpoints.etcd}/metrics`).then((r) => r.text()), 'etcd_mvcc_put_total')) + (await metricSum(fetch(`${endpoints.etcd}/metrics`).then((r) => r.text()), 'etcd_mvcc_delete_total'));
  const kubeRequests = () => metricSum(apiserverMetrics(kc, endpoints.kubeUrl), 'apiserver_request_total');
  const counters = () => sim!.control<Record<string, number>>('counters');
  const githubRequests = async () => Object.values(await counters()).reduce((a, b) => a + b, 0);
  const before = { cpu: cpuSeconds(operator.pid), kube: await kubeRequests(), github: await githubRequests(), etcd: await etcdWrites(), at: Date.now() };
  await sleep(MINUTES * 60_000);
  const after = { cpu: cpuSeconds(operator.pid), kube: await kubeRequests(), github: await githubRequests(), etcd: await etcdWrites(), at: Date.now() };
  const minutes = (after.at - before.at) / 60_000;
  out(`\nPhase 1 — ${APPS} Healthy Applications, ${minutes.toFixed(1)} min:`);
  out(`  CPU: ${(after.cpu - before.cpu).toFixed(1)} s = ${((after.cpu - before.cpu) / (minutes * 60)).toFixed(3)} core on average (target < 0.5)`);
  out(`  peak RSS: ${peakRssMiB(operator.pid).toFixed(0)} MiB (target < 512)`);
  out(`  Kubernetes API requests/min: ${((after.kube - before.kube) / minutes).toFixed(1)} (all clients of the apiserver; the benchmark itself is idle)`);
  out(`  GitHub requests/min: ${((after.github - before.github) / minutes).toFixed(1)} (target 0)`);
  out(`  etcd writes/min: ${((after.etcd - before.etcd) / minutes).toFixed(1)} (target 0; leader lease renewals are not writes)`);

  // Phase 2: a standby beside the leader, then DEGRADE apps turn Degraded at once.
  if (FAILOVER) {
    const from = Date.now();
    await launch('bench-b');
    out(`\nstandby bench-b ready after ${s(Date.now() - from)}; letting it settle 15 s`);
    await sleep(15_000);
  }
  const leaderAtStart = (await etcdGet(endpoints.etcd, KEYS.leader))?.value;
  const confirmed = new Map<string, number>();
  const opened = new Map<string, { at: number; adopted: boolean }>();
  const aborted = new Map<string, string>(); // app → reason, for an attempt that ended before its PR opened
  const timeline = await followTimeline(endpoints.nats, (event) => {
    const app = event.subject.split('/')[1]!;
    const at = Date.parse(event.time);
    // The first of each: a replica that takes over may confirm or adopt again.
    if (event.type === 'io.ai-operator.degradation.confirmed' && !confirmed.has(app)) confirmed.set(app, at);
    if (event.type === 'io.ai-operator.pr.created' && !opened.has(app)) opened.set(app, { at, adopted: (event.data as { adopted?: unknown }).adopted === true });
    if (event.type === 'io.ai-operator.rollback.aborted' && !opened.has(app)) aborted.set(app, String((event.data as { reason?: unknown }).reason));
  }, { print: false });
  const countersBefore = await counters();
  const answersBefore = await sim.controlIfAny<Answers>('answers');
  const cpuBefore = { replicas: new Map(replicas.map((r) => [r.identity, cpuSeconds(r.process.pid)])), sim: cpuSeconds(sim.process.pid), harness: process.cpuUsage() };
  const callsBefore = new Map(await Promise.all(replicas.map(async (r) => [r.identity, callTimes(await r.metrics())] as const)));
  // What each replica had spent and called by its end: when the run ends, or when it is killed.
  const ended = new Map<string, { cpu: number; calls: Map<string, { count: number; sum: number }>; hwm: number }>();
  const snapshot = async (r: Replica) => {
    const calls = callTimes(await r.metrics().catch(() => ''));
    const read = (f: (pid: number) => number) => { try { return f(r.process.pid); } catch { return NaN; } }; // NaN: it died by itself
    ended.set(r.identity, { calls, cpu: read(cpuSeconds), hwm: read(peakRssMiB) });
  };

  // Every rollout stalls first, then Argo CD reports what it reads of them.
  const writeStats = new WriteStats();
  const stalledAt = new Date().toISOString();
  const stallFrom = Date.now();
  await pool(DEGRADE, writers.writers, (i, worker) => stall(cluster, name(i), stalledAt, cluster.lane(worker), writeStats));
  const degradedAt = Date.now();
  const rss = sampleRss(() => replicas.filter((r) => r.process.exitCode() === null).map((r) => ({ name: r.identity, pid: r.process.pid })), 250);
  await pool(DEGRADE, writers.writers, (i, worker) => reportDegraded(cluster, name(i), cluster.lane(worker), writeStats));
  const reportedAt = Date.now();

  // Until every app has its PR (or ended without one), killing the leader once a third have opened.
  let failover: { killed: Replica; at: number; afterPrs: number; takeover?: { at: number; identity: string } } | undefined;
  let failoverSkipped: string | undefined;
  const killAfter = Math.ceil(DEGRADE / 3);
  const watchTakeover = async () => {
    if (!failover || failover.takeover) return;
    const key = await etcdGet(endpoints.etcd, KEYS.leader).catch(() => undefined);
    if (key && key.value !== failover.killed.identity) failover.takeover = { at: Date.now(), identity: key.value };
  };
  while (opened.size + aborted.size < DEGRADE && Date.now() - degradedAt < BURST_CAP_MS) {
    if (FAILOVER && !failover && !failoverSkipped && opened.size >= killAfter) {
      const holder = (await etcdGet(endpoints.etcd, KEYS.leader))?.value;
      const leader = replicas.find((r) => r.identity === holder && r.process.exitCode() === null);
      if (!leader) failoverSkipped = `the leader key names ${holder ?? 'no one'}, not a replica of this bench`;
      else {
        await snapshot(leader);
        leader.process.kill('SIGKILL');
        failover = { killed: leader, at: Date.now(), afterPrs: opened.size };
      }
    }
    await watchTakeover();
    await sleep(failover && !failover.takeover ? 100 : 250);
  }
  const burstEnd = Date.now();
  const rssSeries = rss.stop();
  const capped = opened.size + aborted.size < DEGRADE;
  // A takeover not seen yet (every PR opened before it): keep watching a minute.
  while (failover && !failover.takeover && Date.now() - failover.at < 60_000) {
    await watchTakeover();
    await sleep(100);
  }
  await sleep(3000);
  const harnessCpu = process.cpuUsage(cpuBefore.harness);
  for (const r of replicas) if (!ended.has(r.identity)) await snapshot(r);
  const simCpu = cpuSeconds(sim.process.pid) - cpuBefore.sim;
  const countersAfter = await counters();
  const answersAfter = await sim.controlIfAny<Answers>('answers');

  const latencies = [...opened].filter(([app]) => confirmed.has(app)).map(([app, { at }]) => (at - confirmed.get(app)!) / 1000);
  const firstConfirmed = Math.min(...confirmed.values());
  const lastOpened = Math.max(...[...opened.values()].map((o) => o.at));
  out(`\nPhase 2 — ${DEGRADE} Applications Degraded at once${FAILOVER ? `, ${leaderAtStart ?? 'no one'} leading and ${replicas.filter((r) => r.identity !== leaderAtStart).map((r) => r.identity).join(', ')} standing by` : ''}:`);
  out(`  harness: stalled ${DEGRADE} Deployments in ${s(degradedAt - stallFrom)}, reported ${DEGRADE} Applications Degraded in ${s(reportedAt - degradedAt)} (${writeStats.summary()})`);
  const lastConfirmed = Math.max(...confirmed.values());
  const waiting = [...confirmed.keys()].filter((app) => !opened.has(app) && !aborted.has(app));
  const overdue = waiting.filter((app) => burstEnd - confirmed.get(app)! > 60_000).length;
  out(`  PRs opened: ${opened.size}/${DEGRADE}${capped ? ` (stopped at the ${BURST_CAP_MS / 60_000}-minute cap)` : ''}; the first confirmation ${s(firstConfirmed - degradedAt)} after the apps turned Degraded (3 checks, 10 s apart), the last PR ${s(lastOpened - firstConfirmed)} after it`);
  out(`  confirmed: ${confirmed.size}/${DEGRADE}, the last ${s(lastConfirmed - firstConfirmed)} after the first${waiting.length ? `; ${waiting.length} confirmed and still without a PR at the end (the oldest confirmed ${s(burstEnd - Math.min(...waiting.map((app) => confirmed.get(app)!)))} before it)` : ''}`);
  if (aborted.size > 0) {
    const reasons = new Map<string, number>();
    for (const reason of aborted.values()) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    out(`  aborted before a PR: ${aborted.size} (${[...reasons].map(([reason, n]) => `${reason} × ${n}`).join(', ')}) — not a rollback the bench measures`);
  }
  out(`  confirming check → PR opened: p50 ${percentile(latencies, 50).toFixed(2)} s, p95 ${percentile(latencies, 95).toFixed(2)} s, max ${percentile(latencies, 100).toFixed(2)} s; within 60 s: ${latencies.filter((l) => l <= 60).length}/${latencies.length + overdue}${overdue ? ` (${overdue} confirmed over 60 s before the end and still without a PR count as later)` : ''} (targets: p95 < 2 s, all within 60 s)`);

  if (failover) {
    const { killed, at, afterPrs, takeover } = failover;
    const firstAfter = Math.min(...[...opened.values()].filter((o) => o.at > at).map((o) => o.at));
    out(`  failover: ${killed.identity} (the leader) SIGKILLed after ${afterPrs} PRs, ${s(at - firstConfirmed)} after the first confirmation; ${takeover ? `${takeover.identity} held the leader key ${s(takeover.at - at)} later (target < 10 s)` : 'no other replica held the leader key within 60 s'}; its first PR ${Number.isFinite(firstAfter) ? `${s(firstAfter - at)} after the kill` : 'never opened'}`);
    const before = [...opened.values()].filter((o) => o.at <= at);
    const afterKill = [...opened.values()].filter((o) => o.at > at);
    out(`  PRs opened by replica: ${killed.identity} ${before.length}, ${takeover?.identity ?? 'the standby'} ${afterKill.length}${afterKill.some((o) => o.adopted) ? ` (${afterKill.filter((o) => o.adopted).length} of them adopted: opened on GitHub by ${killed.identity}, recorded by the new leader)` : ''}`);
    const spanning = [...opened].filter(([app, o]) => confirmed.has(app) && confirmed.get(app)! <= at && o.at > at).map(([app, o]) => (o.at - confirmed.get(app)!) / 1000);
    const apart = [...opened].filter(([app, o]) => confirmed.has(app) && !(confirmed.get(app)! <= at && o.at > at)).map(([app, o]) => (o.at - confirmed.get(app)!) / 1000);
    out(`  confirming check → PR opened, confirmed before the kill and opened after it: ${spanning.length} (p50 ${percentile(spanning, 50).toFixed(2)} s, max ${percentile(spanning, 100).toFixed(2)} s); the other ${apart.length}: p50 ${percentile(apart, 50).toFixed(2)} s, p95 ${percentile(apart, 95).toFixed(2)} s, max ${percentile(apart, 100).toFixed(2)} s`);
  } else if (failoverSkipped) out(`  failover: not done (${failoverSkipped})`);
  else if (FAILOVER) out(`  failover: not done (fewer than ${killAfter} PRs opened)`);

  const delta = counterDelta(countersBefore, countersAfter);
  const total = [...delta.values()].reduce((a, b) => a + b, 0);
  const rollbacks = Math.max(1, opened.size);
  out(`  GitHub requests per rollback (to PR opened, plus CI polling meanwhile): ${(total / rollbacks).toFixed(1)} (${total} requests, ${opened.size} PRs; target ≤ 12)`);
  const split = byPurpose(delta);
  for (const purpose of PURPOSES) {
    const { total: n, routes } = split.get(purpose)!;
    out(`    ${purpose.padEnd(16)} ${(n / rollbacks).toFixed(2).padStart(6)}${routes.length ? `  (${routes.map(([route, k]) => `${route} ${(k / rollbacks).toFixed(2)}`).join(', ')})` : ''}`);
  }
  if (answersBefore && answersAfter) {
    const notModified = answersAfter.notModified - answersBefore.notModified;
    const secondary = answersAfter.secondaryRateLimited - answersBefore.secondaryRateLimited;
    const statuses = Object.entries(answersAfter.byStatus).map(([status, n]) => [status, n - (answersBefore.byStatus[status] ?? 0)] as const).filter(([, n]) => n > 0);
    out(`  GitHub answers: 304 Not Modified ${notModified}, secondary rate limit ${secondary} (target 0); by status ${statuses.map(([status, n]) => `${status} × ${n}`).join(', ')}`);
    out(`  GitHub requests that cost quota (all but 304): ${total - notModified} = ${((total - notModified) / rollbacks).toFixed(1)} per rollback`);
  } else {
    out('  GitHub answers: 304 and secondary rate limit n/a (simulator has no answers counter)');
    out(`  GitHub requests that cost quota (all but 304): n/a (simulator has no answers counter; ${total} requests in all)`);
  }

  const cpu = replicas.map((r) => `${r.identity} ${(ended.get(r.identity)!.cpu - cpuBefore.replicas.get(r.identity)!).toFixed(1)}${failover?.killed === r ? ' (until killed)' : ''}`);
  out(`  CPU seconds while it ran: operator ${cpu.join(', ')}, GitHub simulator ${simCpu.toFixed(1)}, harness ${((harnessCpu.user + harnessCpu.system) / 1e6).toFixed(1)} (2 cores shared with etcd, kube-apiserver, NATS)`);
  out(`  RSS over the burst (VmRSS every 250 ms, from the apps turning Degraded to the last PR, ${s(burstEnd - degradedAt)}):`);
  for (const r of replicas) {
    const series = rssSeries.get(r.identity);
    const killed = failover?.killed === r;
    out(`    ${r.identity}: max ${series?.maxMiB.toFixed(0) ?? '?'} MiB, at the ${killed ? 'kill' : 'end'} ${series?.lastMiB.toFixed(0) ?? '?'} MiB; VmHWM ${ended.get(r.identity)!.hwm.toFixed(0)} MiB (target < 512; ${series?.samples ?? 0} samples)`);
  }
  out(`  peak RSS: ${ended.get(first.identity)!.hwm.toFixed(0)} MiB (${first.identity}, VmHWM)`);
  if (TRACING) {
    for (const r of replicas.filter((x) => x.process.exitCode() === null)) out(`  spans dropped (${r.identity}): ${(await r.metrics()).split('\n').filter((l) => l.startsWith('ai_operator_trace_spans_dropped_total')).map((l) => l.replace('ai_operator_trace_spans_dropped_total', '')).join(', ')}`);
  }
  out('  external calls meanwhile (tries, mean seconds per try):');
  for (const r of replicas) {
    const callsAfter = ended.get(r.identity)!.calls;
    const lines: string[] = [];
    for (const [call, after] of [...callsAfter].sort((a, b) => b[1].sum - a[1].sum)) {
      const before = callsBefore.get(r.identity)?.get(call) ?? { count: 0, sum: 0 };
      const count = after.count - before.count;
      if (count > 0) lines.push(`      ${call.padEnd(24)} ${String(count).padStart(5)} × ${((after.sum - before.sum) / count).toFixed(3)} s`);
    }
    out(`    ${r.identity}${failover?.killed === r ? ' (until killed)' : ''}:${lines.length ? '' : ' none'}`);
    for (const line of lines) out(line);
  }
  await timeline.stop();
} finally {
  // SIGTERM: each profile is written on exit.
  await Promise.allSettled(replicas.map((r) => r.process.stop()));
  await sim?.process.stop();
  await stack.stop();
}
