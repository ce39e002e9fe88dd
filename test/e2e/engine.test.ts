// The engine against the real etcd, NATS JetStream and API server, with the
// outside world (GitHub, Argo CD) faked in etcd. Written as the runbook reads.
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { FakeWorld, scenarioApp } from '../../dev/fakes/world.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { attemptName, type AttemptRecord } from '../../src/fsm/record.ts';
import type { State } from '../../src/fsm/table.ts';
import { AttemptStore, KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { freshNamespace, kubectl, kubectlOk } from './support/kube.ts';
import { eventually, OperatorProcess, testEnvironment, type TestEnvironment } from './support/operator.ts';

const stack = inject('stack');
const running: OperatorProcess[] = [];
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.kill('SIGKILL')));
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function setUp(name: string, environment: 'staging' | 'production', extra: Record<string, string> = {}) {
  const namespace = await freshNamespace(stack, name);
  // Only this namespace's RollbackPolicies are this operator's to judge: other tests' operators run beside it.
  const env = testEnvironment(stack, name, { WATCH_NAMESPACES: namespace, ...extra });
  const kv = new EtcdKV([stack.etcd], { prefix: env.prefix });
  closers.push(() => kv.close());
  const world = new FakeWorld(kv);
  const scenario = scenarioApp(name, environment);
  const app = { ...scenario.app, ref: { namespace, name } };
  await world.addApp(app);
  await world.setCommits(app.source!.path, scenario.commits);
  await world.setCi(scenario.good, { state: 'success', runs: [{ name: 'ci/build', state: 'success' }] });
  const store = new AttemptStore(kv);
  const appKey = `${namespace}_${name}`;
  const latest = async (): Promise<AttemptRecord | undefined> => {
    const all = (await store.allAttempts()).filter((r) => r.app.name === name);
    return all.sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1);
  };
  return { namespace, env, kv, world, app, scenario, store, appKey, latest };
}

function operator(env: TestEnvironment, id: string): OperatorProcess {
  const process = new OperatorProcess(env, id);
  running.push(process);
  return process;
}

async function stateIs(latest: () => Promise<AttemptRecord | undefined>, state: State, timeoutMs = 30_000): Promise<AttemptRecord> {
  return eventually(`attempt in ${state}`, async () => {
    const record = await latest();
    return record?.state === state ? record : undefined;
  }, timeoutMs);
}

/** Every event on the test's stream, read with an ordered consumer. */
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

describe('RollbackAttempt, the window onto etcd', () => {
  it('appears for an attempt, follows the etcd record, and obeys abort and reset annotations', async () => {
    // Given a production app that turns Degraded, watched by one operator
    const t = await setUp('window', 'production');
    await operator(t.env, 'op-a').start();
    await t.world.setHealth(t.app.ref, 'Degraded', [{ name: 'window', desired: 3, updated: 3, available: 0, unavailable: 3, progressDeadlineExceeded: true }]);

    // Then an attempt reaches PRCreated and its RollbackAttempt shows the etcd record
    const record = await stateIs(t.latest, 'PRCreated');
    const name = attemptName(t.app.ref, record.correlationId);
    const status = await eventually('RollbackAttempt status PRCreated', async () => {
      const got = await kubectl(stack, ['get', 'rollbackattempt', name, '-n', t.namespace, '-o', 'json']);
      const object = got.code === 0 ? JSON.parse(got.stdout) as { spec: Record<string, unknown>; status?: Record<string, unknown> } : undefined;
      return object?.status?.phase === 'PRCreated' ? object : undefined;
    });
    expect(status.spec).toMatchObject({ application: { name: 'window', namespace: t.namespace }, environment: 'production', correlationId: record.correlationId });
    expect(status.status).toMatchObject({
      reason: record.reason, currentRevision: t.scenario.bad,
      candidate: { revision: t.scenario.good, shortRevision: t.scenario.good.slice(0, 7) },
      pullRequest: { number: record.pullRequest!.number, ref: `#${record.pullRequest!.number}`, state: 'open' },
    });
    expect((status.status!.transitions as unknown[]).length).toBe(record.transitions.length);
    const table = await kubectlOk(stack, ['get', 'rollbackattempts', '-n', t.namespace]);
    expect(table).toMatch(new RegExp(`${name}\\s+window\\s+production\\s+PRCreated\\s+${t.scenario.good.slice(0, 7)}\\s+#1`));

    // When a human stops it
    await kubectlOk(stack, ['annotate', 'rollbackattempt', name, '-n', t.namespace, 'ai-operator.io/abort=investigating by hand']);
    // Then it aborts with the reason, in etcd and in the status
    const aborted = await stateIs(t.latest, 'Abort');
    expect(aborted).toMatchObject({ reason: 'AbortRequested', message: 'abort requested: investigating by hand' });
    await eventually('status Abort', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', t.namespace, '-o', 'json'])).status.phase === 'Abort');
    expect(await t.kv.get(KEYS.active(t.appKey))).toBeDefined();

    // When a human resets it
    await kubectlOk(stack, ['annotate', 'rollbackattempt', name, '-n', t.namespace, 'ai-operator.io/reset=true']);
    // Then the attempt ends in Idle, its PR is closed, and the app may get a new attempt
    const reset = await eventually('attempt reset', async () => {
      const again = await t.store.getAttempt(t.appKey, record.correlationId);
      return again?.record.state === 'Idle' ? again.record : undefined;
    });
    expect(reset.reason).toBe('Reset');
    await eventually('status Idle', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', t.namespace, '-o', 'json'])).status.phase === 'Idle');
    expect((await t.world.pullRequests()).find((p) => p.number === record.pullRequest!.number)).toMatchObject({ state: 'closed', merged: false });
    // Still Degraded: a new attempt starts, and there is never more than one open rollback PR.
    const next = await stateIs(t.latest, 'PRCreated');
    expect(next.correlationId).not.toBe(record.correlationId);
    expect((await t.world.pullRequests()).filter((p) => p.state === 'open')).toHaveLength(1);
  });
});

describe('RollbackPolicy, declared in Git', () => {
  it('governs the apps of its namespace: its environment and approvers win, and its status counts them', async () => {
    // Given a staging-labelled app and a policy of its namespace that says production
    const t = await setUp('policy', 'staging');
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'payments', namespace: t.namespace },
      spec: { applications: ['policy'], environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 2 }, merge: { approvers: { users: ['alice'] } } },
    }));
    await operator(t.env, 'op-policy').start();
    // Then the policy's status counts the app
    await eventually('policy status', async () => {
      const policy = JSON.parse(await kubectlOk(stack, ['get', 'rollbackpolicy', 'payments', '-n', t.namespace, '-o', 'json'])) as { status?: { matchedApplications?: number; conditions?: Array<{ type: string; status: string }> } };
      return policy.status?.matchedApplications === 1 && policy.status.conditions?.[0]?.status === 'True';
    });
    // When the app degrades, the attempt runs under the policy: production, two checks
    await t.world.setHealth(t.app.ref, 'Degraded', [{ name: 'policy', desired: 2, updated: 2, available: 0, unavailable: 2, progressDeadlineExceeded: true }]);
    const record = await stateIs(t.latest, 'PRCreated');
    expect(record).toMatchObject({ environment: 'production', policyRef: { name: 'payments', namespace: t.namespace }, degradation: { checks: 2 } });
    expect(record.settings).toMatchObject({ persistenceChecks: 2, approvers: { users: ['alice'], groups: [] } });
  });
});

describe('a killed operator resumes from etcd', () => {
  // Where to kill, and how the world is held there long enough to do it.
  const points: Array<{ state: State; hold?: (t: Awaited<ReturnType<typeof setUp>>) => Promise<void>; release?: (t: Awaited<ReturnType<typeof setUp>>) => Promise<void> }> = [
    // The attempt starts once persistence is confirmed and leaves DegradationDetected when the candidate search
    // ends: held there by a slow commit list.
    { state: 'DegradationDetected', hold: (t) => t.world.setDelayAfter('readRepositoryContent', 4000), release: (t) => t.world.setDelayAfter('readRepositoryContent', 0) },
    // Killed while the PR is opened, before PRCreated is written: the restart must adopt it.
    { state: 'CandidateResolved', hold: (t) => t.world.setDelayAfter('createPullRequest', 4000), release: (t) => t.world.setDelayAfter('createPullRequest', 0) },
    { state: 'PRCreated' },
    // Killed after merging, before RollbackMerged is written: the restart must not merge twice.
    { state: 'AwaitingMergeApproval', hold: (t) => t.world.setDelayAfter('mergePullRequest', 4000), release: (t) => t.world.setDelayAfter('mergePullRequest', 0) },
    { state: 'RollbackMerged' },
  ];

  async function runScenario(name: string, killAt?: (typeof points)[number]) {
    // A shorter leader lease: the restarted process waits out the killed one's lease.
    const t = await setUp(name, 'staging', { LEADER_TTL_SECONDS: '8' });
    await killAt?.hold?.(t);
    let op = operator(t.env, `${name}-1`);
    await op.start();
    await t.world.setHealth(t.app.ref, 'Degraded', [{ name, desired: 3, updated: 3, available: 1, unavailable: 2, progressDeadlineExceeded: true }]);
    // CI turns green once the PR is there — except when the kill is to land while CI is pending.
    const greenCi = async () => {
      await eventually('PR opened', async () => (await t.world.pullRequests()).length >= 1, 60_000);
      await t.world.setCiOfOpenPullRequests('success');
    };
    const ciTurnsGreen = killAt?.state === 'PRCreated' ? undefined : greenCi();
    let killedIn: State | undefined;
    if (killAt) {
      const at = await stateIs(t.latest, killAt.state, 60_000);
      // For the held points, wait until the effect happened and the operator sits in the pause.
      if (killAt.state === 'CandidateResolved') await eventually('PR opened', async () => (await t.world.pullRequests()).length === 1);
      // Merged and synced by "Argo CD": the fake world does both inside the merge call, before its pause.
      if (killAt.state === 'AwaitingMergeApproval') {
        await eventually('PR merged and synced', async () => {
          const pr = (await t.world.pullRequests())[0];
          return pr?.merged === true && (await t.world.app(t.app.ref))?.syncRevision === pr.mergeCommitSha;
        });
      }
      await op.kill('SIGKILL');
      killedIn = (await t.latest())?.state;
      // The kill lands in the state waited for, or (a race of milliseconds) the next one; never after the end.
      expect(killedIn === at.state || killedIn !== 'RollbackComplete', `killed in ${killedIn}`).toBe(true);
      await killAt.release?.(t);
      op = operator(t.env, `${name}-2`);
      await op.start();
    }
    await (ciTurnsGreen ?? greenCi());
    const done = await stateIs(t.latest, 'RollbackComplete', 90_000);
    await eventually('outbox drained', async () => (await t.store.pendingOutbox(10)).length === 0, 30_000);
    return { t, done, killedIn, events: await streamEvents(t.env), prs: await t.world.pullRequests(), merges: await t.world.callCount('mergePullRequest'), creates: await t.world.callCount('createPullRequest') };
  }

  const summary = (r: AttemptRecord) => r.transitions.map((x) => `${x.from}->${x.to}:${x.reason}`);

  it('ends every attempt as an uninterrupted run does, with one PR, one merge and each event once', async () => {
    const reference = await runScenario('uninterrupted');
    expect(summary(reference.done)).toEqual([
      'Idle->DegradationDetected:DegradationConfirmed', 'DegradationDetected->CandidateResolved:StableCandidateFound',
      'CandidateResolved->PRCreated:PullRequestOpened', 'PRCreated->AwaitingMergeApproval:CISucceeded',
      'AwaitingMergeApproval->RollbackMerged:AutoMerged', 'RollbackMerged->RollbackComplete:HealthRestored',
    ]);
    const expectedTypes = reference.events.map((e) => e.type).sort();

    for (const point of points) {
      const run = await runScenario(`kill-${point.state.toLowerCase()}`, point);
      console.log(`killed while in ${run.killedIn}: resumed to ${run.done.state}, ${run.prs.length} PR, ${run.merges} merge call(s), ${run.events.length} events`);
      const expected = summary(reference.done).map((s) => point.state === 'CandidateResolved' ? s.replace('PullRequestOpened', 'PullRequestAdopted') : s);
      expect(summary(run.done), `killed in ${point.state}`).toEqual(expected);
      expect(run.prs, `killed in ${point.state}`).toHaveLength(1);
      expect(run.creates, `killed in ${point.state}`).toBe(1);
      expect(run.prs[0]!.merged).toBe(true);
      const ids = run.events.map((e) => e.id);
      expect(new Set(ids).size, `killed in ${point.state}: no event published twice`).toBe(ids.length);
      expect(run.events.map((e) => e.type).sort(), `killed in ${point.state}`).toEqual(expectedTypes);
    }
  }, 600_000);
});

describe('leader election', () => {
  it('lets only the leader act, and a standby finishes the attempts when the leader is killed', async () => {
    const t = await setUp('leader', 'staging');
    const a = operator(t.env, 'replica-a');
    // Each replica its own audit spool, as each pod has its own volume (the spool is one process's: spool-lock.ts).
    const b = operator({ ...t.env, env: { ...t.env.env, AUDIT_FALLBACK_DIR: join(t.env.dir, 'audit-b') } }, 'replica-b');
    await a.start();
    const leaderOf = async () => (await t.kv.get(KEYS.leader))?.value;
    const first = await eventually('a leader', leaderOf);
    await b.start();
    expect(first).toBe('replica-a');

    // An attempt starts under the first leader and waits for CI.
    await t.world.setHealth(t.app.ref, 'Degraded', [{ name: 'leader', desired: 3, updated: 3, available: 1, unavailable: 2, progressDeadlineExceeded: true }]);
    await stateIs(t.latest, 'PRCreated');
    expect(await leaderOf()).toBe('replica-a');

    // The leader is killed; the standby takes over within 20 s and finishes.
    const killedAt = Date.now();
    await a.kill('SIGKILL');
    await eventually('replica-b leads', async () => (await leaderOf()) === 'replica-b', 25_000, 200);
    const takeover = (Date.now() - killedAt) / 1000;
    expect(takeover).toBeLessThan(20);
    // While replica-a led, replica-b wrote no transition.
    const { readFileSync } = await import('node:fs');
    const actedBeforeTakeover = readFileSync(b.logFile, 'utf8').split('\n').filter((l) => l.includes('"Transitioned attempt"') || l.includes('"from":'))
      .map((l) => Date.parse((JSON.parse(l) as { timestamp: string }).timestamp)).filter((at) => at < killedAt);
    expect(actedBeforeTakeover).toEqual([]);
    await t.world.setCiOfOpenPullRequests('success');
    const done = await stateIs(t.latest, 'RollbackComplete', 60_000);

    // No transition was written twice: versions only grow and each step appears once.
    const steps = done.transitions.map((x) => `${x.from}->${x.to}`);
    expect(new Set(steps).size).toBe(steps.length);
    expect(await t.world.callCount('mergePullRequest')).toBe(1);
    await eventually('outbox drained', async () => (await t.store.pendingOutbox(10)).length === 0, 30_000);
    const events = await streamEvents(t.env);
    const transitions = events.filter((e) => e.type === 'io.ai-operator.fsm.transition');
    expect(transitions).toHaveLength(done.transitions.length);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    console.log(`leader takeover after SIGKILL: ${takeover.toFixed(1)} s`);
  }, 180_000);
});
