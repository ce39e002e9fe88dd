// `node bench/memory.ts`: the operator's memory per watched Application, and per rollback in
// flight, on the real local stack (issue 23 §2). Not a test: it measures and prints.
//   Steps — the operator (src/main.ts) runs from 0 Applications; at each of BENCH_STEPS
//   (default 0,5000,10000,25000) Applications it waits until its work queue is empty and every
//   new app has been reconciled, then forces a full GC through the inspector (the operator runs
//   with --inspect on a loopback port: no hook in the operator's code) and reads
//   process.memoryUsage() there: heap used, RSS, external. Bytes per app = the slope of heap used
//   (and RSS) between steps.
//   Rollbacks — BENCH_ROLLBACKS (default 400) of them turn Degraded at once (bounded concurrency,
//   retried); once each has its PR open (staging apps: CI on the rollback commit never reports,
//   so no PR merges), a GC and the same reading: heap delta per rollback in flight. Peak RSS too.
//   BENCH_SNAPSHOT_DIR=DIR also writes heap snapshots there (after the last step, and with the
//   rollbacks in flight) and prints what grew, by constructor and by holder (`Owner.field`, the
//   retained size of what it alone keeps) — see bench/heap-snapshot.ts. A snapshot of a large
//   heap is large: take them with fewer apps (BENCH_STEPS=0,2000).
//   BENCH_ALLOCATION_PROFILE=DIR records what the operator allocates during the burst, garbage
//   included (V8's sampling heap profiler, every 32 KiB on average), writes it there
//   (burst.heapprofile, for Chrome DevTools) and prints the functions that allocated most.
// BENCH_HEAP_MB=N runs the operator with --max-old-space-size=N: V8 sizes its heap from the machine's
// memory (here, without a cgroup limit, ~4 GiB: garbage piles up between major GCs), and from the
// cgroup's limit in a container (Node 24); this shows a burst under a heap of a container's size.
// BENCH_SHAPE: `bench` (default) writes Applications as bench/support.ts's createApps does (what
// `make bench` measures); `argocd` writes what a real Argo CD 3.x controller leaves on an
// Application (operationState, summary, ten history entries with their sources, comparedTo,
// three resources, kubectl's last-applied-configuration annotation and both managers' managedFields).
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { followTimeline } from '../dev/demo/timeline.ts';
import { endpointsOf, startStack } from '../dev/stack/index.ts';
import { installCrds, kubectlOk } from '../dev/stack/kubectl.ts';
import { freePort } from '../dev/stack/process.ts';
import { peakRssMiB } from './figures.ts';
import { growth, largest, summarizeHeapSnapshot, type HeapSummary } from './heap-snapshot.ts';
import { benchCluster, degrade, deployment, deploymentResource, githubLimitsFor, gitopsRepo, metricSum, name, operatorLimitsEnv, rolledOut, startOperator, startSimProcess, type BenchCluster } from './support.ts';

const STEPS = (process.env.BENCH_STEPS ?? '0,5000,10000,25000').split(',').map(Number);
const ROLLBACKS = Math.min(Math.max(...STEPS), Number(process.env.BENCH_ROLLBACKS ?? 400));
const SNAPSHOT_DIR = process.env.BENCH_SNAPSHOT_DIR;
const PROFILE_DIR = process.env.BENCH_ALLOCATION_PROFILE;
const HEAP_MB = process.env.BENCH_HEAP_MB;
const SHAPE = process.env.BENCH_SHAPE === 'argocd' ? 'argocd' : 'bench';
const CONCURRENCY = 32;
const MiB = 1024 * 1024;
const out = (text: string) => process.stdout.write(`${text}\n`);

// ---- the inspector ---------------------------------------------------------------

interface Inspector {
  send<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  on(method: string, listener: (params: Record<string, unknown>) => void): () => void;
  close(): void;
}

async function inspect(port: number): Promise<Inspector> {
  const [target] = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<{ webSocketDebuggerUrl: string }>;
  const socket = new WebSocket(target!.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true });
    socket.addEventListener('error', () => reject(new Error('could not open the operator\'s inspector')), { once: true });
  });
  let id = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners = new Map<string, Set<(params: Record<string, unknown>) => void>>();
  socket.addEventListener('message', (message) => {
    const data = JSON.parse(String(message.data)) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: Record<string, unknown> };
    if (data.id !== undefined) {
      const waiter = pending.get(data.id);
      pending.delete(data.id);
      if (data.error) waiter?.reject(new Error(data.error.message));
      else waiter?.resolve(data.result);
    } else if (data.method) {
      for (const listener of listeners.get(data.method) ?? []) listener(data.params ?? {});
    }
  });
  return {
    send: <T>(method: string, params: Record<string, unknown> = {}) => new Promise<T>((resolve, reject) => {
      const call = ++id;
      pending.set(call, { resolve: resolve as (v: unknown) => void, reject });
      socket.send(JSON.stringify({ id: call, method, params }));
    }),
    on: (method, listener) => {
      const set = listeners.get(method) ?? new Set();
      set.add(listener);
      listeners.set(method, set);
      return () => set.delete(listener);
    },
    close: () => socket.close(),
  };
}

interface Reading { heapUsed: number; heapTotal: number; rss: number; external: number; arrayBuffers: number }

/** Full GCs, then process.memoryUsage() in the operator. */
async function measure(inspector: Inspector): Promise<Reading> {
  for (let i = 0; i < 3; i++) await inspector.send('HeapProfiler.collectGarbage');
  const { result } = await inspector.send<{ result: { value: string } }>('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
  return JSON.parse(result.value) as Reading;
}

async function snapshot(inspector: Inspector, file: string): Promise<HeapSummary> {
  const stream = createWriteStream(file);
  const off = inspector.on('HeapProfiler.addHeapSnapshotChunk', (params) => stream.write(String(params.chunk)));
  await inspector.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  off();
  stream.end();
  await once(stream, 'finish');
  return summarizeHeapSnapshot(file);
}

/** Tries per call_name, from ai_operator_mcp_call_duration_seconds_count. */
function callCounts(metrics: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const match of metrics.matchAll(/^ai_operator_mcp_call_duration_seconds_count\{call_name="([^"]+)"\} (\S+)$/gm)) counts.set(match[1]!, Number(match[2]));
  return counts;
}

interface SamplingNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: SamplingNode[] }
interface SamplingProfile { head: SamplingNode }

/** What the burst allocated (sampled), by function, and by the operator's own function nearest to it on the stack. */
function printAllocations(profile: SamplingProfile): void {
  const byFunction = new Map<string, number>();
  const byOwn = new Map<string, number>();
  let total = 0;
  const where = (frame: SamplingNode['callFrame']) => `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^file:\/\/.*?\/(src|node_modules|dev)\//, '$1/')}:${frame.lineNumber + 1}`;
  const walk = (node: SamplingNode, own: string | undefined) => {
    const here = where(node.callFrame);
    const mine = /\/src\/.*\.ts$/.test(node.callFrame.url) ? here : own;
    if (node.selfSize > 0) {
      total += node.selfSize;
      byFunction.set(here, (byFunction.get(here) ?? 0) + node.selfSize);
      byOwn.set(mine ?? '(outside src/)', (byOwn.get(mine ?? '(outside src/)') ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, mine);
  };
  walk(profile.head, undefined);
  out(`  allocated during the burst (sampled, garbage included): ${mib(total)} = ${(total / ROLLBACKS / 1024).toFixed(0)} KiB per rollback`);
  out('   by function:');
  for (const [key, bytes] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 25)) out(`    ${key.slice(0, 100).padEnd(100)} ${mib(bytes).padStart(11)}`);
  out('   by the operator\'s own function nearest on the stack:');
  for (const [key, bytes] of [...byOwn].sort((a, b) => b[1] - a[1]).slice(0, 25)) out(`    ${key.slice(0, 100).padEnd(100)} ${mib(bytes).padStart(11)}`);
}

// ---- the Applications --------------------------------------------------------------

/** Runs `task` for each index in [from, to), `CONCURRENCY` at a time. */
async function pool(from: number, to: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = from;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < to) await task(next++);
  }));
}

/** A write retried like a real client's (5 tries, backing off); an AlreadyExists after a lost answer is the write done. */
async function retried(what: string, write: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await write();
      return;
    } catch (error) {
      if ((error as { code?: number }).code === 409 && attempt > 1) return;
      if (attempt >= 5) throw new Error(`${what}: ${(error as Error).message}`);
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
    }
  }
}

const APPS = { group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications' };

/** What a real Argo CD 3.x leaves in an Application's status (a plain-YAML app with a Deployment, a Service and a ConfigMap). */
function argocdStatus(app: string, good: string, bad: string, deployedAt: string): Record<string, unknown> {
  const source = { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${app}`, targetRevision: 'main' };
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const resources = [
    deploymentResource(app, { status: 'Healthy' }),
    { version: 'v1', kind: 'Service', namespace: app, name: app, status: 'Synced', health: { status: 'Healthy' } },
    { version: 'v1', kind: 'ConfigMap', namespace: app, name: `${app}-config`, status: 'Synced' },
  ];
  const history = Array.from({ length: 10 }, (_, i) => ({
    id: i, revision: i < 9 ? good : bad, deployedAt: i < 9 ? deployedAt : now, deployStartedAt: i < 9 ? deployedAt : now,
    source, initiatedBy: { automated: true },
  }));
  return {
    health: { status: 'Healthy', lastTransitionTime: now },
    sync: { status: 'Synced', revision: bad, comparedTo: { source, destination: { server: 'https://kubernetes.default.svc', namespace: app } } },
    history, resources, reconciledAt: now, sourceType: 'Directory', controllerNamespace: 'argocd',
    summary: { images: ['registry.example/web:v2'] },
    operationState: {
      operation: { sync: { revision: bad, syncStrategy: { hook: {} } }, initiatedBy: { automated: true }, retry: { limit: 5 } },
      phase: 'Succeeded', message: 'successfully synced (all tasks run)', startedAt: now, finishedAt: now,
      syncResult: {
        revision: bad, source,
        resources: resources.map((r) => ({ group: 'group' in r ? r.group : '', version: r.version, kind: r.kind, namespace: r.namespace, name: r.name, status: 'Synced', message: `${r.kind.toLowerCase()}/${r.name} configured`, hookPhase: 'Running', syncPhase: 'Sync' })),
      },
    },
  };
}

async function createApp(cluster: BenchCluster, i: number, good: string, bad: string, deployedAt: string): Promise<void> {
  const { api, apps, core, mergePatch } = cluster;
  const app = name(i);
  if (i < ROLLBACKS) {
    await retried(`namespace ${app}`, () => core.createNamespace({ body: { metadata: { name: app } } }));
    await retried(`deployment ${app}`, () => apps.createNamespacedDeployment({ namespace: app, body: deployment(app) }));
    await retried(`deployment status ${app}`, () => apps.patchNamespacedDeploymentStatus({ namespace: app, name: app, body: { status: rolledOut(app, deployedAt) } }, mergePatch));
  }
  const spec = { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${app}`, targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: app } };
  const metadata = { name: app, namespace: 'argocd', labels: { 'ai-operator.enabled': 'true', environment: 'staging' } };
  if (SHAPE === 'argocd') {
    const applied = { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { ...metadata, annotations: {} }, spec: { ...spec, syncPolicy: { automated: { prune: true, selfHeal: true } } } };
    const body = { ...applied, metadata: { ...applied.metadata, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `${JSON.stringify(applied)}\n` }, finalizers: ['resources-finalizer.argocd.argoproj.io'] } };
    await retried(`application ${app}`, () => api.createNamespacedCustomObject({ ...APPS, body, fieldManager: 'kubectl-client-side-apply' }));
    await retried(`application status ${app}`, () => api.patchNamespacedCustomObjectStatus({ ...APPS, name: app, body: { status: argocdStatus(app, good, bad, deployedAt) }, fieldManager: 'argocd-application-controller' }, mergePatch));
    return;
  }
  // As bench/support.ts createApps writes them.
  await retried(`application ${app}`, () => api.createNamespacedCustomObject({ ...APPS, body: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata, spec } }));
  await retried(`application status ${app}`, () => api.patchNamespacedCustomObjectStatus({ ...APPS, name: app, body: {
    status: {
      health: { status: 'Healthy' }, sync: { status: 'Synced', revision: bad },
      history: [{ id: 0, revision: good, deployedAt }, { id: 1, revision: bad, deployedAt: new Date().toISOString() }],
      resources: [deploymentResource(app, { status: 'Healthy' })],
    },
  } }, mergePatch));
}

// ---- the run ------------------------------------------------------------------------

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const row = (r: { key: string; count: number; bytes: number }) => `    ${r.key.slice(0, 70).padEnd(70)} ${String(r.count).padStart(8)} ${(r.bytes / 1024).toFixed(0).padStart(10)} KiB`;

out(`ai-operator memory benchmark: steps ${STEPS.join(', ')} Applications (${SHAPE} shape), then ${ROLLBACKS} rollbacks in flight${SNAPSHOT_DIR ? `; heap snapshots in ${SNAPSHOT_DIR}` : ''}${HEAP_MB ? `; operator heap capped at ${HEAP_MB} MB` : ''}`);
const stack = await startStack();
const endpoints = endpointsOf(stack);
// GitHub's secondary limits as `make bench` sets them (support.ts githubLimitsFor), enforced by the simulator and
// kept by the operator: without them the operator keeps github.com's 500 writes an hour, and a burst of 400 opens 100 PRs.
const github = githubLimitsFor(ROLLBACKS);
out(`GitHub: ${github.name}: ${github.limits.writesPerMinute} writes a minute, ${github.limits.writesPerHour} an hour`);
const sim = await startSimProcess(github.limits);
let operator: Awaited<ReturnType<typeof startOperator>> | undefined;
// The operator goes with this process, however it ends.
process.once('exit', () => operator?.kill('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
try {
  await installCrds(endpoints);
  await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
  const cluster = benchCluster(endpoints);
  const { token, good, bad } = await gitopsRepo(sim, Math.max(1, ROLLBACKS));
  const deployedAt = new Date(Date.now() - 24 * 3600_000).toISOString();

  const httpPort = await freePort();
  const inspectPort = await freePort();
  operator = await startOperator(endpoints, { github: sim.url, token, auditDir: join(stack.workDir, 'audit'), httpPort, env: operatorLimitsEnv(github.limits), execArgv: [`--inspect=127.0.0.1:${inspectPort}`, ...(HEAP_MB ? [`--max-old-space-size=${HEAP_MB}`] : [])] });
  const inspector = await inspect(inspectPort);
  const operatorMetrics = () => fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text());
  const reconciles = () => metricSum(operatorMetrics(), 'controller_runtime_reconcile_total');

  /** Until the queue is empty three polls running and `atLeast` reconciles were counted. */
  const settle = async (atLeast: number) => {
    let quiet = 0;
    const deadline = Date.now() + 15 * 60_000;
    while (quiet < 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2000));
      const [depth, done] = [await metricSum(operatorMetrics(), 'workqueue_depth'), await reconciles()];
      quiet = depth === 0 && done >= atLeast ? quiet + 1 : 0;
    }
  };

  const readings: Array<{ apps: number; reading: Reading }> = [];
  let created = 0;
  for (const step of STEPS) {
    const started = Date.now();
    const before = await reconciles();
    await pool(created, step, (i) => createApp(cluster, i, good, bad, deployedAt));
    const made = step - created;
    created = Math.max(created, step);
    await settle(before + made);
    const reading = await measure(inspector);
    readings.push({ apps: step, reading });
    out(`${String(step).padStart(6)} apps (${made} created in ${((Date.now() - started) / 1000).toFixed(0)} s, settled): heap used ${mib(reading.heapUsed)}, heap total ${mib(reading.heapTotal)}, RSS ${mib(reading.rss)}, external ${mib(reading.external)} (array buffers ${mib(reading.arrayBuffers)}); peak RSS so far ${peakRssMiB(operator.pid!).toFixed(0)} MiB`);
  }
  out('\nBytes per Application (slope between steps, after a full GC):');
  for (let i = 1; i < readings.length; i++) {
    const [a, b] = [readings[i - 1]!, readings[i]!];
    const apps = b.apps - a.apps;
    if (apps <= 0) continue;
    out(`  ${a.apps} → ${b.apps}: heap used ${((b.reading.heapUsed - a.reading.heapUsed) / apps).toFixed(0)} B/app, RSS ${((b.reading.rss - a.reading.rss) / apps).toFixed(0)} B/app, external ${((b.reading.external - a.reading.external) / apps).toFixed(0)} B/app`);
  }
  const [first, last] = [readings[0]!, readings.at(-1)!];
  if (last.apps > first.apps) out(`  ${first.apps} → ${last.apps}: heap used ${((last.reading.heapUsed - first.reading.heapUsed) / (last.apps - first.apps)).toFixed(0)} B/app, RSS ${((last.reading.rss - first.reading.rss) / (last.apps - first.apps)).toFixed(0)} B/app`);

  if (ROLLBACKS > 0) {
    if (SNAPSHOT_DIR) mkdirSync(SNAPSHOT_DIR, { recursive: true });
    const idleReading = await measure(inspector);
    // A snapshot's own allocations raise RSS: the idle reading comes first, and the peak is reset after it.
    const idle = SNAPSHOT_DIR ? await snapshot(inspector, join(SNAPSHOT_DIR, `idle-${last.apps}.heapsnapshot`)) : undefined;
    const opened = new Set<string>();
    const aborted = new Map<string, string>();
    const merged = new Set<string>();
    const timeline = await followTimeline(endpoints.nats, (event) => {
      const app = event.subject.split('/')[1]!;
      if (event.type === 'io.ai-operator.pr.created') opened.add(app);
      if (event.type === 'io.ai-operator.pr.merged') merged.add(app);
      if (event.type === 'io.ai-operator.rollback.aborted' && !opened.has(app)) aborted.set(app, String((event.data as { reason?: unknown }).reason));
    }, { print: false });
    // The burst's own peak: VmHWM starts again from the RSS now (proc(5), clear_refs 5).
    writeFileSync(`/proc/${operator.pid}/clear_refs`, '5');
    const callsBefore = callCounts(await operatorMetrics());
    const githubBefore = await sim.control<Record<string, number>>('counters');
    if (PROFILE_DIR) await inspector.send('HeapProfiler.startSampling', { samplingInterval: 32768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    const started = Date.now();
    // What the operator holds while the burst runs, without forcing a GC: sampled every second.
    const peak = { heapUsed: 0, heapTotal: 0, rss: 0, external: 0, arrayBuffers: 0 };
    let sampling = true;
    let midSnapshot: Promise<HeapSummary> | undefined;
    const sampler = (async () => {
      while (sampling) {
        const { result } = await inspector.send<{ result: { value: string } }>('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
        const now = JSON.parse(result.value) as Reading;
        for (const key of Object.keys(peak) as Array<keyof Reading>) peak[key] = Math.max(peak[key], now[key]);
        // Half the PRs open: the other half are being prepared, each holding what it reads.
        if (SNAPSHOT_DIR && !midSnapshot && opened.size >= ROLLBACKS / 2) midSnapshot = snapshot(inspector, join(SNAPSHOT_DIR, `mid-burst-${ROLLBACKS}.heapsnapshot`));
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    await pool(0, ROLLBACKS, (i) => retried(`degrade ${name(i)}`, () => degrade(cluster, name(i))));
    while (opened.size + aborted.size < ROLLBACKS && Date.now() - started < 15 * 60_000) await new Promise((r) => setTimeout(r, 1000));
    sampling = false;
    await sampler;
    if (PROFILE_DIR) {
      const { profile } = await inspector.send<{ profile: SamplingProfile }>('HeapProfiler.stopSampling');
      mkdirSync(PROFILE_DIR, { recursive: true });
      writeFileSync(join(PROFILE_DIR, 'burst.heapprofile'), JSON.stringify(profile));
      printAllocations(profile);
    }
    const peakRss = peakRssMiB(operator.pid!);
    const callsAfter = callCounts(await operatorMetrics());
    out(`\n${ROLLBACKS} Applications Degraded at once: ${opened.size} PRs opened, ${aborted.size} aborted before a PR, ${merged.size} merged, in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    out(`  during the burst (sampled every second, no forced GC): peak heap used ${mib(peak.heapUsed)}, heap total ${mib(peak.heapTotal)}, external ${mib(peak.external)}; peak RSS ${peakRss.toFixed(0)} MiB${SNAPSHOT_DIR ? ' (a heap snapshot was taken during it: RSS figures include its cost)' : ''}`);
    out(`  peak RSS over idle: ${((peakRss * MiB - idleReading.rss) / ROLLBACKS / 1024).toFixed(0)} KiB per rollback`);
    const calls = [...callsAfter].map(([call, n]) => [call, n - (callsBefore.get(call) ?? 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    out(`  external calls during the burst (tries): ${calls.map(([call, n]) => `${call} ${n}`).join(', ')}`);
    const githubAfter = await sim.control<Record<string, number>>('counters');
    const requests = Object.entries(githubAfter).map(([route, n]) => [route, n - (githubBefore[route] ?? 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    out(`  GitHub requests during the burst, by route: ${requests.map(([route, n]) => `${route} ${n}`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 10_000)); // a few CI polls of every PR
    const busy = await measure(inspector);
    const inFlight = ROLLBACKS - aborted.size;
    out(`  with ${inFlight} attempts in flight (${opened.size} with their PR open), after a full GC: heap used ${mib(idleReading.heapUsed)} → ${mib(busy.heapUsed)}: ${((busy.heapUsed - idleReading.heapUsed) / Math.max(1, inFlight) / 1024).toFixed(1)} KiB per rollback in flight`);
    out(`  RSS ${mib(idleReading.rss)} → ${mib(busy.rss)}; external ${mib(idleReading.external)} → ${mib(busy.external)}`);
    if (SNAPSHOT_DIR && idle) {
      const report = (title: string, to: HeapSummary) => {
        out(`  ${title}: heap snapshots ${mib(idle.total)} (${idle.nodes} nodes) → ${mib(to.total)} (${to.nodes} nodes)`);
        out('   grew most, by holder (retained size of what `Owner.field` alone keeps; count of such edges):');
        for (const r of growth(idle.byHolder, to.byHolder, (t) => t.retained, 30)) out(row(r));
        out('   grew most, by constructor (self size):');
        for (const r of growth(idle.byConstructor, to.byConstructor, (t) => t.self, 15)) out(row(r));
      };
      if (midSnapshot) report('mid-burst (half the PRs open)', await midSnapshot);
      report('PRs open', await snapshot(inspector, join(SNAPSHOT_DIR, `rollbacks-${ROLLBACKS}.heapsnapshot`)));
      out(`  largest holders at ${last.apps} apps, idle:`);
      for (const r of largest(idle.byHolder, (t) => t.retained, 30)) out(row(r));
      out(`  largest constructors at ${last.apps} apps, idle (self size):`);
      for (const r of largest(idle.byConstructor, (t) => t.self, 15)) out(row(r));
    }
    await timeline.stop();
  }
  inspector.close();
  await operator.stop();
} finally {
  operator?.kill('SIGKILL');
  await sim.process.stop();
  await stack.stop();
}
