// The kill storm (issue 12 §3, SPEC §14.3, §14.7, §14.8): ten apps degrade
// together, round after round, while the operator is SIGKILLed at least a
// hundred times at moments drawn from a seeded PRNG and started again at once;
// for the middle of the run a second replica stands by, so some kills hand the
// lead over and some hit the standby. The real etcd, NATS JetStream, API server
// (RollbackAttempts, RollbackPolicies, the approval admission policy) and
// Elasticsearch; GitHub, Argo CD and the cluster are the fake world kept in
// etcd, which outlives every kill.
//
// KILL_STORM_SEED replays a run; KILL_STORM_KILLS changes how many kills.
// At the end, nothing lost and nothing doubled: every attempt terminal or Idle,
// one PR per attempt (open or merged), one merge per merged attempt, every
// event once in JetStream and each transition's event exactly once, the audit
// chains intact (in the spool and through `node src/cli.ts audit verify`), each
// transition's audit record exactly once (a kill between a commit and its audit
// record is what the audit outbox is for), no audit outbox entry and no active
// key left to an attempt that no longer holds its app.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { appPathOf, fakeSha, FakeWorld, type FakeApp } from '../../dev/fakes/world.ts';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { verifyChain, type AuditRecord } from '../../src/audit/record.ts';
import { readCheckpoint } from '../../src/audit/shipper.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { attemptName, branchName, type AttemptRecord } from '../../src/fsm/record.ts';
import { holdsApp, isTerminal, STATES, type State } from '../../src/fsm/table.ts';
import type { CommitInfo } from '../../src/ports/github.ts';
import { AttemptStore, KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { freshNamespace, kubectl, kubectlOk, repoRoot } from './support/kube.ts';
import { eventually, OperatorProcess, testEnvironment, type TestEnvironment } from './support/operator.ts';

const stack = inject('stack');
const SEED = Number(process.env.KILL_STORM_SEED ?? 1202);
const KILLS = Number(process.env.KILL_STORM_KILLS ?? 100);
const APPS = 10;
/** Kills with a second replica standing by: the middle of the run. */
const TWO_REPLICAS = { from: Math.round(KILLS * 0.2), until: Math.round(KILLS * 0.8) };

const running = new Set<OperatorProcess>();
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  await Promise.all([...running].map((p) => p.kill('SIGKILL')));
  for (const close of closers.splice(0)) await close();
});

/** mulberry32: small, seedable, the same sequence on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface StormApp {
  name: string;
  environment: 'staging' | 'production';
  /** CI fails on this app's first rollback PR: its attempt ends in Abort (CIFailure) and holds the app to the end. */
  ciRed: boolean;
}

/** Round `round` of an app: three good releases and a bad one deployed now, every sha new to the round. */
function release(app: StormApp, namespace: string, round: number, health: FakeApp['health']): { app: FakeApp; commits: CommitInfo[]; good: string } {
  const now = Date.now();
  const hours = (h: number) => new Date(now - h * 3600_000).toISOString();
  const shas = ['v1', 'v2', 'v3', 'bad'].map((v) => fakeSha(`${namespace}/${app.name}:r${round}:${v}`));
  const path = `apps/${app.name}`;
  const commits: CommitInfo[] = shas.map((sha, i) => ({
    sha, message: i === 3 ? `Round ${round}: a broken build` : `Round ${round}: release v${i + 1}`, author: i === 3 ? 'bob' : 'carol',
    date: hours(72 - i * 24), url: `https://github.example/acme/gitops/commit/${sha}`,
  })).reverse();
  const degraded = health === 'Degraded';
  return {
    commits, good: shas[2]!,
    app: {
      ref: { namespace, name: app.name }, labels: { 'ai-operator.enabled': 'true', environment: app.environment }, health,
      syncRevision: shas[3]!, history: shas.map((revision, id) => ({ id, revision, deployedAt: hours(72 - id * 24) })),
      resources: [{ kind: 'Deployment', name: app.name, namespace: app.name }],
      source: { repoURL: 'https://github.com/acme/gitops.git', path, targetRevision: 'main' },
      deployments: [{ name: app.name, desired: 3, updated: degraded ? 1 : 3, available: 3, unavailable: degraded ? 1 : 0, progressDeadlineExceeded: degraded }],
      uptime: { [shas[0]!]: 0.999, [shas[1]!]: 0.95, [shas[2]!]: 0.997 },
      healthAfterMerge: 'Healthy',
    },
  };
}

/** The app's state as etcd has it: its active attempt's, else its last attempt's if that completed, else Idle. */
function stateOf(app: string, attempts: AttemptRecord[], active: Map<string, string>, namespace: string): State {
  const id = active.get(`${namespace}_${app}`);
  const mine = attempts.filter((r) => r.app.name === app);
  const held = id ? mine.find((r) => r.correlationId === id) : undefined;
  if (held) return held.state;
  const last = mine.sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1);
  return last?.state === 'RollbackComplete' ? 'RollbackComplete' : 'Idle';
}

async function streamEvents(env: TestEnvironment): Promise<CloudEvent[]> {
  const nc = await connect({ servers: stack.nats });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(env.stream);
    const events: CloudEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const message = await jsm.streams.getMessage(env.stream, { seq }).catch(() => undefined);
      if (message) events.push(message.json<CloudEvent>());
    }
    return events;
  } finally {
    await nc.close();
  }
}

/** `node src/cli.ts audit verify` for one chain, as an SRE runs it. */
async function auditVerify(since: Date, chainId: string): Promise<{ code: number; out: string }> {
  const child = spawn(process.execPath, ['src/cli.ts', 'audit', 'verify', '--since', since.toISOString(), '--chain', chainId], {
    cwd: repoRoot, env: { PATH: process.env.PATH ?? '', ELASTICSEARCH_URL: stack.elasticsearch }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? -1)));
  return { code, out: out.trim() };
}

describe('a kill storm', () => {
  it(`loses and doubles nothing through ${KILLS} SIGKILLs at random moments, with a leader handover part of the way`, async () => {
    const startedAt = Date.now();
    const since = new Date(startedAt - 60_000);
    const random = prng(SEED);
    console.log(`kill storm: seed ${SEED} (KILL_STORM_SEED=${SEED} replays it), ${KILLS} kills, two replicas for kills ${TWO_REPLICAS.from + 1}-${TWO_REPLICAS.until}`);

    // Given ten apps in one namespace: seven staging, one staging whose CI fails, two production approved by alice
    const namespace = await freshNamespace(stack, 'kill-storm');
    const apps: StormApp[] = Array.from({ length: APPS }, (_, i) => ({ name: `storm-${i}`, environment: i >= APPS - 2 ? 'production' : 'staging', ciRed: i === APPS - 3 }));
    // The fastest settings that still pass through every state: checks every second, two to confirm,
    // Healthy held 2 s; timeouts far beyond the run, so that only a kill can disturb an attempt. Rounds come as
    // fast as the attempts end: the hour's attempt limit (3 by default) is raised, or a storm that gets through
    // three rounds turns every app's fourth degradation into AttemptLimitReached — an attempt with no PR, and
    // rounds that start every 500 ms with nothing to wait for.
    const env = testEnvironment(stack, 'kill-storm', {
      WATCH_NAMESPACES: namespace, LEADER_TTL_SECONDS: '2', POLL_INTERVAL_SEC: '1', DEGRADATION_PERSISTENCE_CHECKS: '2',
      HEALTH_RESTORATION_DURATION: '2', RECOVERY_TIMEOUT: '900', CI_WAIT_TIMEOUT: '900', MERGE_APPROVAL_TIMEOUT: '900', ROLLBACK_COOLDOWN: '0', MAX_ATTEMPTS_PER_HOUR: '1000',
      RESYNC_INTERVAL_MS: '1000', LOG_LEVEL: process.env.KILL_STORM_LOG_LEVEL ?? 'INFO',
    });
    const kv = new EtcdKV([stack.etcd], { prefix: env.prefix });
    closers.push(() => kv.close());
    const world = new FakeWorld(kv);
    const store = new AttemptStore(kv);
    await installApprovalPolicy(stack, namespace);
    await grantPatch(stack, namespace, 'alice');
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'production', namespace },
      spec: { selector: { matchLabels: { 'ai-operator.enabled': 'true', environment: 'production' } }, environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 2 }, merge: { approvers: { users: ['alice'] } },
        // The CRD defaults these (1800, 600) over ROLLBACK_COOLDOWN and RECOVERY_TIMEOUT: say them.
        cooldownSeconds: 0, recoveryTimeoutSeconds: 900, healthRestorationSeconds: 2 },
    }));
    for (const app of apps) {
      const { app: view, commits, good } = release(app, namespace, 0, 'Healthy');
      await world.addApp(view);
      await world.setCommits(view.source!.path, commits);
      await world.setCi(good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
    }
    // Windows between an effect and its record, so that kills land there too.
    await world.setDelayAfter('readRepositoryContent', 300);
    await world.setDelayAfter('createPullRequest', 400);
    await world.setDelayAfter('mergePullRequest', 400);

    // Replicas: slot a runs throughout, slot b in the middle. Each slot keeps its own audit spool across
    // restarts, as a pod keeps its volume; two live processes never share one.
    const slots = { a: undefined as OperatorProcess | undefined, b: undefined as OperatorProcess | undefined };
    let lives = 0;
    const start = async (slot: 'a' | 'b') => {
      const slotEnv: TestEnvironment = { ...env, env: { ...env.env, AUDIT_FALLBACK_DIR: join(env.dir, `audit-${slot}`) } };
      const process = new OperatorProcess(slotEnv, `${slot}-${++lives}`);
      running.add(process);
      slots[slot] = process;
      await process.start();
    };
    const kill = async (slot: 'a' | 'b') => {
      const process = slots[slot];
      slots[slot] = undefined;
      if (!process) return;
      await process.kill('SIGKILL');
      running.delete(process);
    };
    await start('a');

    // The outside world's people and machines: CI reports a second after a PR opens (red on the one app's
    // first PR), and alice approves each production attempt that waits for her.
    let stop = false;
    const ciSet = new Set<string>();
    const firstSeen = new Map<string, number>();
    const approved = new Set<string>();
    const people = (async () => {
      while (!stop) {
        try {
          for (const pr of await world.pullRequests()) {
            if (pr.state !== 'open' || ciSet.has(pr.headSha)) continue;
            const seen = firstSeen.get(pr.headSha) ?? Date.now();
            firstSeen.set(pr.headSha, seen);
            if (Date.now() - seen < 1000) continue;
            const red = apps.find((a) => appPathOf(pr.spec.paths) === `apps/${a.name}`)?.ciRed === true && pr.number === Math.min(...(await world.pullRequests()).filter((p) => appPathOf(p.spec.paths) === appPathOf(pr.spec.paths)).map((p) => p.number));
            await world.setCi(pr.headSha, { state: red ? 'failure' : 'success', runs: [{ name: 'ci/build', state: red ? 'failure' : 'success' }] });
            ciSet.add(pr.headSha);
          }
          for (const record of await store.allAttempts()) {
            if (record.environment !== 'production' || record.state !== 'AwaitingMergeApproval') continue;
            const name = attemptName(record.app, record.correlationId);
            if (approved.has(name)) continue;
            const done = await kubectl(stack, ['--as=alice', 'annotate', 'rollbackattempt', name, '-n', namespace, 'ai-operator.io/approve=alice', '--overwrite']);
            if (done.code === 0) approved.add(name);
          }
        } catch {
          // etcd or the API server busy: the next pass tries again.
        }
        await sleep(300);
      }
    })();

    // Rounds: every app not held by an Abort degrades with a new bad release, together; the next round
    // starts once each of this round's attempts has ended.
    let stormOver = false;
    let rounds = 0;
    const settled = async (roundStart: string): Promise<boolean> => {
      const attempts = await store.allAttempts();
      return apps.every((app) => {
        const mine = attempts.filter((r) => r.app.name === app.name);
        const current = mine.filter((r) => r.createdAt >= roundStart);
        // Held by an earlier Abort: no attempt may start, so none is waited for.
        if (mine.some((r) => r.createdAt < roundStart && r.state === 'Abort')) return current.length === 0;
        return current.length > 0 && current.every((r) => isTerminal(r.state) || r.state === 'Idle');
      });
    };
    const degradations = (async () => {
      while (!stormOver) {
        rounds++;
        const roundStart = new Date().toISOString();
        for (const app of apps) {
          const { app: view, commits, good } = release(app, namespace, rounds, 'Degraded');
          await world.setCommits(view.source!.path, commits);
          await world.setCi(good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
          await world.addApp(view);
        }
        while (!(await settled(roundStart).catch(() => false))) {
          if (stop) return;
          await sleep(500);
        }
      }
    })();

    // The storm. Before each kill a replica leads (so that attempts move between kills), then the kill
    // comes 0.2-1.6 s later; one in six kills instead hits a replica 0.1-1.2 s after it was started, before
    // it could lead. With two replicas, the leader or the other one at even odds. Every draw from the seed;
    // the killed replica is started again at once. (A kill of the leader costs a lease TTL, 2 s, of no leader.)
    const landed: Array<{ kill: number; victim: string; leader: boolean; states: Record<string, State> }> = [];
    /** Waits until some replica leads; which slot, or undefined after `timeoutMs`. */
    const leading = async (timeoutMs: number): Promise<'a' | 'b' | undefined> => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const id = (await kv.get(KEYS.leader).catch(() => undefined))?.value;
        if (id !== undefined && id === slots.a?.id) return 'a';
        if (id !== undefined && id === slots.b?.id) return 'b';
        await sleep(100);
      }
      return undefined;
    };
    for (let n = 1; n <= KILLS; n++) {
      const two = n > TWO_REPLICAS.from && n <= TWO_REPLICAS.until;
      if (two && !slots.b) await start('b');
      // Scaled down: the second replica stops gracefully (a leader hands its lease back).
      if (!two && slots.b) {
        const standby = slots.b;
        slots.b = undefined;
        await standby.kill('SIGTERM');
        running.delete(standby);
      }
      let slot: 'a' | 'b' = 'a';
      if (random() < 1 / 6) {
        await sleep(100 + random() * 1100);
        // The replica started last, the one least likely to be up yet.
        if (two) slot = lives === Number(slots.b!.id.slice(2)) ? 'b' : 'a';
      } else {
        const leader = await leading(15_000);
        await sleep(200 + random() * 1400);
        const other = leader === 'a' ? 'b' : 'a';
        if (two) slot = random() < 0.5 ? leader ?? 'a' : other;
      }
      const leaderId = (await kv.get(KEYS.leader).catch(() => undefined))?.value;
      const victim = slots[slot]!.id;
      await kill(slot);
      const [attempts, active] = await Promise.all([store.allAttempts(), kv.getPrefix(KEYS.appsPrefix)]);
      const activeIds = new Map(active.filter((e) => e.key.endsWith('/active')).map((e) => [e.key.slice(KEYS.appsPrefix.length, -'/active'.length), e.value]));
      landed.push({ kill: n, victim, leader: victim === leaderId, states: Object.fromEntries(apps.map((a) => [a.name, stateOf(a.name, attempts, activeIds, namespace)])) });
      await start(slot);
    }
    stormOver = true;
    const stormSeconds = (Date.now() - startedAt) / 1000;

    // Then, with two replicas left to run, every attempt ends
    if (!slots.a) await start('a');
    if (!slots.b) await start('b');
    const report = join(env.dir, 'kill-storm.json');
    try {
      // The round under way when the storm ended finishes; no new one starts.
      await Promise.race([degradations, sleep(150_000).then(async () => {
        const open = (await store.allAttempts()).filter((r) => !isTerminal(r.state) && r.state !== 'Idle');
        throw new Error(`the last round did not settle within 150 s of the storm: ${open.map((r) => `${r.app.name} ${r.state} (${r.reason}) since ${r.since}`).join(', ')}`);
      })]);
    } finally {
      stop = true;
      await people;
      writeFileSync(report, JSON.stringify({ seed: SEED, landed }, null, 1));
    }
    await eventually('outbox drained', async () => (await store.pendingOutbox(10)).length === 0, 60_000);

    // Where the kills landed
    const histogram = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<State, number>;
    for (const kill of landed) for (const state of Object.values(kill.states)) histogram[state]++;
    for (const kill of landed) {
      const counts = new Map<State, number>();
      for (const s of Object.values(kill.states)) counts.set(s, (counts.get(s) ?? 0) + 1);
      console.log(`kill ${String(kill.kill).padStart(3)} ${kill.victim.padEnd(6)} ${kill.leader ? 'leader ' : 'standby'} ${[...counts].map(([s, c]) => `${s}×${c}`).join(' ')}`);
    }

    const attempts = await store.allAttempts();
    const prs = await world.pullRequests();
    const events = await streamEvents(env);
    const problems: string[] = [];

    // Every attempt is terminal or Idle
    const unfinished = attempts.filter((r) => !isTerminal(r.state) && r.state !== 'Idle');
    if (unfinished.length) problems.push(`unfinished: ${unfinished.map((r) => `${r.app.name}/${r.correlationId} ${r.state}`).join(', ')}`);

    // One rollback PR per attempt, open or merged, on the attempt's own branch
    const openOrMerged = prs.filter((p) => p.state === 'open' || p.merged);
    const closedUnmerged = prs.filter((p) => p.state === 'closed' && !p.merged);
    for (const record of attempts) {
      const mine = prs.filter((p) => p.branch === branchName(record.app, record.correlationId));
      if (mine.length !== 1) problems.push(`${record.app.name}/${record.correlationId}: ${mine.length} PRs on its branch`);
      else if (record.pullRequest?.number !== mine[0]!.number) problems.push(`${record.app.name}/${record.correlationId}: record names PR #${record.pullRequest?.number}, GitHub has #${mine[0]!.number}`);
    }
    if (openOrMerged.length !== attempts.length) problems.push(`${openOrMerged.length} PRs open or merged for ${attempts.length} attempts`);
    if (closedUnmerged.length) problems.push(`closed unmerged PRs: ${closedUnmerged.map((p) => `#${p.number}`).join(', ')}`);

    // One merge per merged attempt: merged PRs are exactly the merged attempts', and no merge was asked twice
    const mergedAttempts = attempts.filter((r) => r.merge);
    const mergedPrs = prs.filter((p) => p.merged);
    const mergeCalls = await world.callCount('mergePullRequest');
    const mergedAgain = await world.callCount('mergePullRequest:already-merged');
    if (mergedPrs.length !== mergedAttempts.length) problems.push(`${mergedPrs.length} merged PRs for ${mergedAttempts.length} merged attempts`);
    for (const record of mergedAttempts) {
      const pr = prs.find((p) => p.number === record.pullRequest?.number);
      if (!pr?.merged || pr.mergeCommitSha !== record.merge!.commitSha) problems.push(`${record.app.name}/${record.correlationId}: merge ${record.merge!.commitSha} not PR #${pr?.number}'s ${pr?.mergeCommitSha}`);
    }
    if (mergedAgain > 0) problems.push(`${mergedAgain} merge call(s) on an already merged PR`);

    // JetStream: every id once; each transition's event exactly once; one pr.created and pr.merged per attempt that had them
    const ids = events.map((e) => e.id);
    const duplicateIds = ids.filter((id, i) => ids.indexOf(id) !== i);
    if (duplicateIds.length) problems.push(`duplicate event ids: ${duplicateIds.join(', ')}`);
    let transitionEvents = 0;
    for (const record of attempts) {
      const mine = events.filter((e) => e.correlationid === record.correlationId);
      const transitions = mine.filter((e) => e.type === 'io.ai-operator.fsm.transition').map((e) => e.data as { to: string; version: number }).sort((a, b) => a.version - b.version);
      transitionEvents += transitions.length;
      const versions = transitions.map((t) => t.version);
      if (new Set(versions).size !== versions.length) problems.push(`${record.app.name}/${record.correlationId}: fsm.transition twice for a version: ${versions.join(', ')}`);
      const published = transitions.map((t) => t.to).join(' ');
      const happened = record.transitions.map((t) => t.to).join(' ');
      if (published !== happened) problems.push(`${record.app.name}/${record.correlationId}: fsm.transition events [${published}], transitions [${happened}]`);
      const count = (type: string) => mine.filter((e) => e.type === `io.ai-operator.${type}`).length;
      if (count('pr.created') !== (record.pullRequest ? 1 : 0)) problems.push(`${record.app.name}/${record.correlationId}: ${count('pr.created')} pr.created events`);
      if (count('pr.merged') !== (record.merge ? 1 : 0)) problems.push(`${record.app.name}/${record.correlationId}: ${count('pr.merged')} pr.merged events`);
    }
    const recordedTransitions = attempts.reduce((n, r) => n + r.transitions.length, 0);

    // The audit chains: each slot's spool intact, and the same chain read back from Elasticsearch by `audit verify`
    const audit: AuditRecord[] = [];
    const chains: string[] = [];
    for (const slot of ['a', 'b'] as const) {
      const dir = join(env.dir, `audit-${slot}`);
      const records = await readAuditDir(dir);
      audit.push(...records);
      const chain = verifyChain(records);
      if (!chain.ok) problems.push(`audit spool ${slot}: ${JSON.stringify(chain)}`);
      const checkpoint = await eventually(`audit spool ${slot} shipped`, async () => {
        const c = await readCheckpoint(dir);
        return c && c.nextSeq >= records.length ? c : undefined;
      }, 60_000, 500);
      const verified = await eventually(`audit verify of chain ${slot}`, async () => {
        const result = await auditVerify(since, checkpoint.chainId);
        return result.code !== 0 || result.out.startsWith(`${records.length} records`) ? result : undefined;
      }, 60_000, 1000);
      chains.push(`${slot}: ${verified.out}`);
      if (verified.code !== 0) problems.push(`audit verify, chain ${slot}: exit ${verified.code}: ${verified.out}`);
    }
    // Each transition's audit record, once (the audit outbox carries it over a kill between the commit and the record)
    const transitionAudits = audit.filter((a) => a.actionType === 'FSM_TRANSITION' || a.actionType === 'ABORT' || a.actionType === 'RESET');
    const auditIds = transitionAudits.map((a) => a.eventId);
    const auditDuplicates = auditIds.filter((id, i) => auditIds.indexOf(id) !== i);
    if (auditDuplicates.length) problems.push(`transition audit records twice: ${auditDuplicates.join(', ')}`);
    const missingAudit = attempts.flatMap((r) => {
      const audited = transitionAudits.filter((a) => a.correlationId === r.correlationId).length;
      return audited < r.transitions.length ? [`${r.app.name}/${r.correlationId} (${audited} of ${r.transitions.length})`] : [];
    });
    if (missingAudit.length) problems.push(`transitions without their audit record: ${missingAudit.join(', ')}`);
    // What a kill left between a commit and its audit records was recorded at the chain's next start.
    const auditOutboxLeft = (await kv.getPrefix(KEYS.auditOutboxPrefix, 100)).map((e) => e.key);
    if (auditOutboxLeft.length) problems.push(`audit outbox entries left in etcd: ${auditOutboxLeft.join(', ')}`);

    // No orphaned active key: each names an attempt that still holds its app (Abort, at the end), and each Abort is held
    const activeKeys = (await kv.getPrefix(KEYS.appsPrefix)).filter((e) => e.key.endsWith('/active'));
    const orphans = activeKeys.filter((e) => {
      const record = attempts.find((r) => r.correlationId === e.value);
      return !record || !holdsApp(record.state);
    });
    if (orphans.length) problems.push(`orphaned active keys: ${orphans.map((e) => `${e.key} -> ${e.value}`).join(', ')}`);
    for (const record of attempts.filter((r) => r.state === 'Abort')) {
      if (!activeKeys.some((e) => e.value === record.correlationId)) problems.push(`${record.app.name}/${record.correlationId}: Abort without its active key`);
    }

    const byState = new Map<string, number>();
    for (const r of attempts) byState.set(`${r.state}(${r.reason})`, (byState.get(`${r.state}(${r.reason})`) ?? 0) + 1);
    const wall = (Date.now() - startedAt) / 1000;
    console.log([
      `kill storm report — seed ${SEED}`,
      `  kills: ${landed.length} (${landed.filter((k) => k.leader).length} of the leader, ${landed.filter((k) => !k.leader).length} of a standby or a replica not yet leading), rounds: ${rounds}, operator lives: ${lives}`,
      `  where they landed (app states at each kill, ${APPS} apps × ${landed.length} kills): ${STATES.map((s) => `${s} ${histogram[s]}`).join(', ')}`,
      `  attempts: ${attempts.length} — ${[...byState].map(([s, c]) => `${s} ×${c}`).join(', ')}`,
      `  1. attempts not terminal or Idle: ${unfinished.length}`,
      `  2. rollback PRs open + merged: ${openOrMerged.length} (${prs.filter((p) => p.state === 'open').length} open, ${mergedPrs.length} merged) for ${attempts.length} attempts; closed unmerged: ${closedUnmerged.length}`,
      `  3. merged attempts ${mergedAttempts.length}, merged PRs ${mergedPrs.length}, merge calls ${mergeCalls}, of them on an already merged PR ${mergedAgain}`,
      `  4. JetStream: ${events.length} events, ${new Set(ids).size} distinct ids; fsm.transition ${transitionEvents} for ${recordedTransitions} transitions`,
      `  audit: ${audit.length} records; ${chains.join('; ')}; transition records ${transitionAudits.length} for ${recordedTransitions} transitions (missing ${missingAudit.length}${missingAudit.length ? `: ${missingAudit.slice(0, 5).join(', ')}` : ''})`,
      `  active keys: ${activeKeys.length}, orphaned ${orphans.length}; audit outbox entries left ${auditOutboxLeft.length}`,
      `  wall time: ${wall.toFixed(0)} s (storm ${stormSeconds.toFixed(0)} s); per-kill detail in ${report}`,
    ].join('\n'));

    expect(problems).toEqual([]);
    expect(landed.length).toBeGreaterThanOrEqual(KILLS);
    // The storm reached every state an attempt passes through (not Idle, which kills always see).
    for (const state of ['DegradationDetected', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete', 'Abort'] as const) {
      expect(histogram[state], `kills that found an app in ${state}`).toBeGreaterThan(0);
    }
  }, 600_000);
});
