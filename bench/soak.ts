// `make soak` (not part of make test): the operator on the bench's 10,000
// Applications for an hour, with one app degrading every minute, a dependency
// of the stack restarted in place every ten minutes (etcd, NATS, kube-apiserver,
// Elasticsearch, Prometheus, in turn) and the operator SIGKILLed and started
// again every fifteen. The harness plays CI (green on every rollback PR) and
// Argo CD (a merged rollback is synced: the Deployment rolls out, the app is
// Healthy on the merge commit), so every attempt can complete.
//
// It prints the operator's RSS every minute and, at the end, what it must not
// have lost: every degradation has an attempt, every attempt ended in
// RollbackComplete (or says why not), one PR and one merge per attempt, each
// transition's event once in JetStream and its audit record once in the spool,
// the audit chain intact, the event and audit outboxes empty, no active key left.
// Environment: SOAK_MINUTES (60), SOAK_APPS (10,000), SOAK_DEGRADE_EVERY (60 s),
// SOAK_RESTART_EVERY (600 s), SOAK_KILL_EVERY (900 s).
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { endpointsOf, startStack, type Stack } from '../dev/stack/index.ts';
import { installCrds, kubectlOk } from '../dev/stack/kubectl.ts';
import { freePort, type ManagedProcess } from '../dev/stack/process.ts';
import { readAuditDir } from '../src/audit/jsonl-sink.ts';
import { verifyChain } from '../src/audit/record.ts';
import { KEYS } from '../src/api/etcd.ts';
import { STREAM_NAME } from '../src/bus/jetstream.ts';
import type { CloudEvent } from '../src/fsm/cloud-events.ts';
import { AttemptStore } from '../src/store/attempt-store.ts';
import { EtcdKV } from '../src/store/etcd.ts';
import { rssMiB } from './figures.ts';
import { benchCluster, createApps, degrade, deploymentResource, gitopsRepo, name, REPO, rolledOut, startOperator, startSimProcess, writersFromEnv, type BenchProcess } from './support.ts';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 60);
const APPS = Number(process.env.SOAK_APPS ?? 10_000);
const DEGRADE_EVERY_S = Number(process.env.SOAK_DEGRADE_EVERY ?? 60);
const RESTART_EVERY_S = Number(process.env.SOAK_RESTART_EVERY ?? 600);
const KILL_EVERY_S = Number(process.env.SOAK_KILL_EVERY ?? 900);
const DEGRADATIONS = Math.floor((MINUTES * 60) / DEGRADE_EVERY_S);
const out = (text: string) => process.stdout.write(`${text}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const minute = (since: number) => ((Date.now() - since) / 60_000).toFixed(1).padStart(5);

const restartable = (stack: Stack): Array<{ name: string; process: ManagedProcess }> => [
  { name: 'etcd', process: stack.etcd.process },
  { name: 'NATS', process: stack.nats.process },
  { name: 'kube-apiserver', process: stack.kube.process! },
  { name: 'Elasticsearch', process: stack.elasticsearch.process },
  { name: 'Prometheus', process: stack.prometheus.process },
];

async function streamEvents(url: string): Promise<CloudEvent[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAM_NAME);
    const events: CloudEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const message = await jsm.streams.getMessage(STREAM_NAME, { seq }).catch(() => undefined);
      if (message) events.push(message.json<CloudEvent>());
    }
    return events;
  } finally {
    await nc.close();
  }
}

out(`ai-operator soak: ${APPS} Applications for ${MINUTES} min; a degradation every ${DEGRADE_EVERY_S} s (${DEGRADATIONS}), a dependency restart every ${RESTART_EVERY_S} s, a kill every ${KILL_EVERY_S} s`);
const stack = await startStack();
const endpoints = endpointsOf(stack);
const sim = await startSimProcess();
const kv = new EtcdKV([endpoints.etcd]);
const store = new AttemptStore(kv);
let operator: BenchProcess | undefined;
let killing = false;
let finished = false;
try {
  await installCrds(endpoints);
  await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
  const writers = writersFromEnv();
  const cluster = benchCluster(endpoints, writers);
  const { token, good, bad } = await gitopsRepo(sim, DEGRADATIONS);
  await createApps(cluster, APPS, DEGRADATIONS, good, bad, writers);
  out(`created ${APPS} Healthy Applications, ${DEGRADATIONS} of them with a Deployment`);

  const httpPort = await freePort();
  const auditDir = join(stack.workDir, 'audit');
  const launch = async () => {
    const launched = await startOperator(endpoints, { github: sim.url, token, auditDir, httpPort });
    operator = launched;
    void launched.exited.then((code) => { if (!killing && !finished) out(`${minute(started)} min  the operator exited by itself (${code})`); });
  };
  const started = Date.now();
  await launch();
  out(`operator ready; soak starts`);

  // CI and Argo CD, as the world outside plays them.
  let stop = false;
  const ciDone = new Set<number>();
  const synced = new Set<number>();
  const world = (async () => {
    while (!stop) {
      try {
        for (const pr of await sim.control<Array<{ number: number; title: string; state: string; merged: boolean; headSha: string; mergeCommitSha: string | null }>>('pulls', REPO)) {
          if (pr.state === 'open' && !ciDone.has(pr.number)) {
            await sim.control('setStatus', { ...REPO, sha: pr.headSha, state: 'success', context: 'ci/build' });
            ciDone.add(pr.number);
          }
          const app = /^Rollback (\S+) /.exec(pr.title)?.[1];
          if (pr.merged && pr.mergeCommitSha && app && !synced.has(pr.number)) {
            const at = new Date().toISOString();
            await cluster.apps.patchNamespacedDeploymentStatus({ namespace: app, name: app, body: { status: rolledOut(app, at) } }, cluster.mergePatch);
            await cluster.api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', name: app, body: { status: {
              health: { status: 'Healthy' }, sync: { status: 'Synced', revision: pr.mergeCommitSha },
              history: [{ id: 0, revision: good, deployedAt: at }, { id: 1, revision: bad, deployedAt: at }, { id: 2, revision: pr.mergeCommitSha, deployedAt: at }],
              resources: [deploymentResource(app, { status: 'Healthy' })],
            } } }, cluster.mergePatch);
            synced.add(pr.number);
          }
        }
      } catch {
        // A dependency being restarted: the next pass tries again.
      }
      await sleep(2000);
    }
  })();

  // The hour: what happens at each second is fixed by the schedule, not drawn.
  const rss: Array<{ minute: number; mib: number }> = [];
  const log: string[] = [];
  const say = (line: string) => { log.push(line); out(line); };
  let degraded = 0;
  let restarts = 0;
  let kills = 0;
  for (let second = 1; second <= MINUTES * 60; second++) {
    await sleep(Math.max(0, started + second * 1000 - Date.now()));
    if (second % DEGRADE_EVERY_S === 0 && degraded < DEGRADATIONS) {
      const app = name(degraded++);
      await degrade(cluster, app).then(() => say(`${minute(started)} min  ${app} Degraded`), (error: Error) => say(`${minute(started)} min  could not degrade ${app}: ${error.message}`));
    }
    if (second % RESTART_EVERY_S === 0) {
      const target = restartable(stack)[restarts++ % 5]!;
      const from = Date.now();
      await target.process.restart().then(() => say(`${minute(started)} min  restarted ${target.name} in place (${((Date.now() - from) / 1000).toFixed(1)} s)`), (error: Error) => say(`${minute(started)} min  restart of ${target.name} failed: ${error.message}`));
    }
    if (second % KILL_EVERY_S === 0) {
      kills++;
      killing = true;
      operator!.kill('SIGKILL');
      await operator!.exited;
      killing = false;
      const from = Date.now();
      await launch();
      say(`${minute(started)} min  SIGKILLed the operator; ready again in ${((Date.now() - from) / 1000).toFixed(1)} s`);
    }
    if (second % 60 === 0) rss.push({ minute: second / 60, mib: rssMiB(operator!.pid!) });
  }

  // The last attempts finish: three checks, CI, the merge, 60 s of restored health.
  const settleFrom = Date.now();
  const allEnded = async () => {
    const attempts = await store.allAttempts();
    return attempts.length >= degraded && attempts.every((r) => ['RollbackComplete', 'Abort', 'Idle'].includes(r.state));
  };
  while (!(await allEnded().catch(() => false)) && Date.now() - settleFrom < 600_000) await sleep(2000);
  await sleep(5000);
  stop = true;
  await world;

  const attempts = await store.allAttempts();
  const prs = await sim.control<Array<{ number: number; title: string; state: string; merged: boolean; head: string }>>('pulls', REPO);
  const events = await streamEvents(endpoints.nats);
  const records = await readAuditDir(auditDir);
  const problems: string[] = [];
  const apps = new Set(attempts.map((r) => r.app.name));
  for (let i = 0; i < degraded; i++) if (!apps.has(name(i))) problems.push(`${name(i)} degraded and got no attempt`);
  for (const r of attempts.filter((a) => a.state !== 'RollbackComplete')) problems.push(`${r.app.name}: ${r.state} (${r.reason}) ${r.message}`);
  if (prs.length !== attempts.length) problems.push(`${prs.length} PRs for ${attempts.length} attempts`);
  const merged = prs.filter((p) => p.merged).length;
  if (merged !== attempts.filter((r) => r.merge).length) problems.push(`${merged} merged PRs for ${attempts.filter((r) => r.merge).length} merged attempts`);
  const ids = events.map((e) => e.id);
  if (new Set(ids).size !== ids.length) problems.push(`${ids.length - new Set(ids).size} duplicate event ids`);
  let transitions = 0;
  for (const r of attempts) {
    transitions += r.transitions.length;
    const published = events.filter((e) => e.correlationid === r.correlationId && e.type === 'io.ai-operator.fsm.transition').length;
    if (published !== r.transitions.length) problems.push(`${r.app.name}: ${published} fsm.transition events for ${r.transitions.length} transitions`);
    const audited = records.filter((a) => a.correlationId === r.correlationId && ['FSM_TRANSITION', 'ABORT', 'RESET'].includes(a.actionType)).map((a) => a.eventId);
    if (audited.length !== r.transitions.length || new Set(audited).size !== audited.length) problems.push(`${r.app.name}: ${audited.length} transition audit records for ${r.transitions.length} transitions`);
  }
  const chain = verifyChain(records);
  if (!chain.ok) problems.push(`audit chain: ${JSON.stringify(chain)}`);
  const left = {
    outbox: (await store.pendingOutbox(100)).length,
    auditOutbox: (await kv.getPrefix(KEYS.auditOutboxPrefix, 100)).length,
    active: (await kv.getPrefix(KEYS.appsPrefix)).filter((e) => e.key.endsWith('/active')).length,
  };
  if (left.outbox || left.auditOutbox || left.active) problems.push(`left in etcd: ${JSON.stringify(left)}`);

  // After five minutes of warm-up (fewer on a short run), ten minutes early against the last ten.
  const skip = Math.min(5, Math.floor(rss.length / 4));
  const firstTen = rss.slice(skip, skip + 10).map((s) => s.mib);
  const lastTen = rss.slice(-10).map((s) => s.mib);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  out(`\nSoak report — ${MINUTES} min, ${APPS} Applications`);
  out(`  RSS (MiB) by minute: ${rss.map((s) => `${s.minute}:${s.mib.toFixed(0)}`).join(' ')}`);
  out(`  RSS mean, minutes ${skip + 1}-${skip + firstTen.length}: ${mean(firstTen).toFixed(0)} MiB; last 10 minutes: ${mean(lastTen).toFixed(0)} MiB (ratio ${(mean(lastTen) / mean(firstTen)).toFixed(2)})`);
  out(`  degradations ${degraded}, attempts ${attempts.length}, RollbackComplete ${attempts.filter((r) => r.state === 'RollbackComplete').length}; PRs ${prs.length} (${merged} merged)`);
  out(`  dependency restarts ${restarts}, operator kills ${kills}`);
  out(`  JetStream events ${events.length} (${new Set(ids).size} distinct ids); transitions ${transitions}; audit records ${records.length} (chain ${chain.ok ? 'intact' : 'BROKEN'})`);
  out(`  left in etcd: outbox ${left.outbox}, audit outbox ${left.auditOutbox}, active keys ${left.active}`);
  out(problems.length === 0 ? '  lost or doubled: nothing' : `  PROBLEMS (${problems.length}):\n${problems.map((p) => `    - ${p}`).join('\n')}`);
  process.exitCode = problems.length === 0 ? 0 : 1;
} finally {
  finished = true;
  await operator?.stop();
  await sim.process.stop();
  await kv.close().catch(() => undefined);
  await stack.stop();
}
