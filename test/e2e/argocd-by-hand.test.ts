// The operator against Application statuses written by hand, as real Argo CD (or
// someone with patch rights) can write them and the simulator never does:
// flapping health, no sync revision, malformed statuses, a degradation Git did
// not cause, a repository outside GITHUB_ORG. The real operator process, etcd,
// NATS JetStream and API server; GitHub is the simulator.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { givenHandDrivenNamespace, streamEventsAbout } from './support/by-hand.ts';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { deployment, givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const PULLS = 'POST /repos/{owner}/{repo}/pulls';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** A scenario whose operator also watches a namespace the test drives by hand. */
async function given(name: string, env: Record<string, string> = {}) {
  const s = await givenRollbackScenario(stack, name, { environment: 'staging', startOperator: false }, stoppers);
  const hand = await givenHandDrivenNamespace(stack, `${name}-hand`);
  const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
  stoppers.push(() => kv.close());
  const operator = await s.startOperator({ WATCH_NAMESPACES: `${s.namespace},${hand.namespace}`, ...env });
  const log = () => readFileSync(operator.log, 'utf8');
  return { s, hand, kv, operator, log };
}

describe('a flapping Application (issue 8 §2, §3)', () => {
  it('is never rolled back: no attempt, no RollbackAttempt, no PR; its events all flow, none dead-lettered', async () => {
    // Given an app whose health alternates Degraded / Healthy about once per check interval (1 s),
    // and which Argo CD reports without any synced revision
    const { s, hand, kv } = await given('flapping');
    const app = await hand.app({ name: 'flappy', environment: 'staging', repoURL: 'https://github.com/acme/gitops.git', path: 'apps/flappy', status: {
      sync: { status: 'OutOfSync' }, health: { status: 'Healthy' },
    } });
    // When it flaps for 20 s: 0.9 s Degraded, 0.15 s Healthy
    const until = Date.now() + 20_000;
    let blips = 0;
    while (Date.now() < until) {
      await app.setStatus({ health: { status: 'Degraded', message: 'Deployment "flappy" exceeded its progress deadline' } });
      await sleep(900);
      await app.setStatus({ health: { status: 'Healthy', message: null } });
      blips++;
      await sleep(150);
    }
    await sleep(3000);

    // Then nothing was started: no attempt record in etcd, no RollbackAttempt, no PR
    expect((await kv.getPrefix(KEYS.rollbackPrefix)).map((e) => e.key)).toEqual([]);
    expect(JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', hand.namespace, '-o', 'json'])).items).toEqual([]);
    expect(s.github.control.counters()[PULLS]).toBeUndefined();
    // And the health key is gone once health settled
    expect(await kv.get(KEYS.health(`${hand.namespace}_flappy`))).toBeUndefined();
    // And every event was published — degradation.detected without a revision too — and none was dead-lettered
    await eventually('outbox drained', async () => (await kv.getPrefix(KEYS.outboxPrefix)).length === 0, 15_000);
    expect(await kv.getPrefix(KEYS.outboxDeadPrefix)).toEqual([]);
    const events = await streamEventsAbout(stack, `${hand.namespace}/flappy`, s.stream);
    const detected = events.filter((e) => e.type === 'io.ai-operator.degradation.detected');
    const cleared = events.filter((e) => e.type === 'io.ai-operator.degradation.cleared');
    expect(detected.length).toBeGreaterThan(0);
    expect(detected.length).toBeLessThanOrEqual(blips);
    expect(cleared).toHaveLength(detected.length);
    expect(detected.every((e) => !('revision' in (e.data as object)))).toBe(true);
    expect(events.some((e) => e.type === 'io.ai-operator.fsm.transition')).toBe(false);
  }, 120_000);
});

describe('a degradation Git did not cause (issue 8 §5)', () => {
  it('opens no PR: NothingToRollBack, with a message a human can act on and an Event on the Application', async () => {
    // Given v1 (good, CI green), v2 (bad), then v3: a human's revert of the path to v1's content
    const { s, hand } = await given('nothing-to-roll-back');
    const path = 'apps/restored';
    const manifest = (image: string) => deployment('restored', `${hand.namespace}-workload`, image);
    const v1 = (await s.github.control.push({ ...REPO, files: { [`${path}/deployment.yaml`]: manifest('v1') }, message: 'Release v1' })).sha;
    s.ci(v1, 'success');
    const v2 = (await s.github.control.push({ ...REPO, files: { [`${path}/deployment.yaml`]: manifest('v2') }, message: 'Release v2' })).sha;
    const v3 = (await s.github.control.push({ ...REPO, files: { [`${path}/deployment.yaml`]: manifest('v1') }, message: 'Revert to v1' })).sha;
    // And Argo CD reports v3 deployed and Degraded — something outside Git broke it
    await hand.app({ name: 'restored', environment: 'staging', repoURL: 'https://github.com/acme/gitops.git', path, status: {
      sync: { status: 'Synced', revision: v3 },
      health: { status: 'Degraded', message: 'Deployment "restored" exceeded its progress deadline' },
      history: [
        { id: 0, revision: v1, deployedAt: hoursAgo(48), deployStartedAt: hoursAgo(48) },
        { id: 1, revision: v2, deployedAt: hoursAgo(2), deployStartedAt: hoursAgo(2) },
        { id: 2, revision: v3, deployedAt: hoursAgo(1), deployStartedAt: hoursAgo(1) },
      ],
      resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: `${hand.namespace}-workload`, name: 'restored', status: 'Synced' }],
    } });

    // Then the attempt ends in NothingToRollBack and no PR is opened
    const aborted = await eventually('attempt in Abort', async () => (await s.store.allAttempts()).find((r) => r.app.name === 'restored' && r.state === 'Abort'), 60_000);
    expect(aborted.reason).toBe('NothingToRollBack');
    expect(aborted.message).toBe(`${path}/deployment.yaml on main already matches ${v1.slice(0, 7)}: the degradation is not in Git, so no pull request was opened`);
    expect(s.github.control.counters()[PULLS]).toBeUndefined();
    expect(s.github.control.pulls(REPO)).toEqual([]);
    // And the Application carries an Event saying so
    const events = await eventually('NothingToRollBack Event', async () => {
      const list = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', hand.namespace, '-o', 'json'])) as { items: Array<{ reason: string; note: string; regarding: { kind: string; name: string; uid?: string } }> };
      return list.items.find((e) => e.reason === 'NothingToRollBack' && e.regarding.kind === 'Application') ?? undefined;
    });
    expect(events.note).toContain('the degradation is not in Git');
    expect(events.regarding.uid).toBeTruthy();
    expect(s.github.violations()).toEqual([]);
  }, 120_000);
});

describe('Applications the operator must not act on (issue 8 §1, §6)', () => {
  it('refuses a repository outside GITHUB_ORG once, and logs each malformed status once per change with its field', async () => {
    const { s, hand, kv, log } = await given('refused');
    // Given an app of a repository outside GITHUB_ORG (acme), Degraded
    await hand.app({ name: 'foreign', environment: 'staging', repoURL: 'https://github.com/elsewhere/gitops.git', path: 'apps/foreign', status: {
      sync: { status: 'Synced', revision: 'a'.repeat(40) }, health: { status: 'Degraded' },
    } });
    // And two apps whose statuses Argo CD would never write: no health at all, a lower-case health
    const noHealth = await hand.app({ name: 'no-health', environment: 'staging', repoURL: 'https://github.com/acme/gitops.git', path: 'apps/a', status: { sync: { status: 'Synced' } } });
    const lowerCase = await hand.app({ name: 'lower-case', environment: 'staging', repoURL: 'https://github.com/acme/gitops.git', path: 'apps/b', status: { sync: { status: 'Synced' }, health: { status: 'degraded' } } });
    // When their statuses are rewritten with nothing new in them, several times
    for (let i = 0; i < 3; i++) {
      await sleep(1500);
      await noHealth.setStatus({ reconciledAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') });
      await lowerCase.setStatus({ reconciledAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') });
    }
    await sleep(3000);

    // Then the foreign app gets no attempt and one Event naming GITHUB_ORG
    expect(await kv.get(KEYS.active(`${hand.namespace}_foreign`))).toBeUndefined();
    expect(await kv.get(KEYS.health(`${hand.namespace}_foreign`))).toBeUndefined();
    const refusals = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', hand.namespace, '-o', 'json'])).items
      .filter((e: { reason: string }) => e.reason === 'ApplicationRefused') as Array<{ note: string; regarding: { name: string }; series?: { count: number } }>;
    expect(refusals).toHaveLength(1);
    expect(refusals[0]!.regarding.name).toBe('foreign');
    expect(refusals[0]!.note).toContain('is outside GITHUB_ORG acme');
    expect(refusals[0]!.series).toBeUndefined();
    // And a RollbackPolicy governing it says so in a condition
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'all', namespace: hand.namespace }, spec: { environment: 'staging' } }));
    const condition = await eventually('ApplicationsRefused condition', async () => {
      const policy = JSON.parse(await kubectlOk(stack, ['get', 'rollbackpolicy', 'all', '-n', hand.namespace, '-o', 'json'])) as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
      return policy.status?.conditions?.find((c) => c.type === 'ApplicationsRefused');
    });
    expect(condition).toMatchObject({ status: 'True', reason: 'RepositoryOutsideOrg' });
    expect(condition.message).toBe('1 governed Application(s) refused, their repository outside GITHUB_ORG acme: foreign');
    // And each malformed status is logged once, naming the object and the field
    const lines = log().split('\n').filter((l) => l.includes('Application status not understood'));
    expect(lines.filter((l) => l.includes(`${hand.namespace}/no-health`))).toHaveLength(1);
    expect(lines.find((l) => l.includes(`${hand.namespace}/no-health`))).toContain('status.health is missing');
    expect(lines.filter((l) => l.includes(`${hand.namespace}/lower-case`))).toHaveLength(1);
    expect(lines.find((l) => l.includes(`${hand.namespace}/lower-case`))).toContain('status.health.status \\"degraded\\" is not one of');
    // And said where a person looks: one Warning Event on each Application
    const notUnderstood = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', hand.namespace, '-o', 'json'])).items
      .filter((e: { reason: string }) => e.reason === 'ApplicationNotUnderstood') as Array<{ note: string; type: string; regarding: { name: string }; series?: unknown }>;
    expect(notUnderstood.map((e) => [e.regarding.name, e.type]).sort()).toEqual([['lower-case', 'Warning'], ['no-health', 'Warning']]);
    expect(notUnderstood.find((e) => e.regarding.name === 'no-health')!.note).toContain('status.health is missing');
    // When a status goes wrong in another way, that is said once more
    await lowerCase.setStatus({ health: { status: 'Broken' } });
    await eventually('the new problem logged', async () => log().split('\n').filter((l) => l.includes(`${hand.namespace}/lower-case`) && l.includes('Application status not understood')).length === 2);
    expect(s.github.control.counters()[PULLS]).toBeUndefined();
  }, 120_000);

  it('refuses multi-source Applications over two repositories, and source-hydrator ones, with an Event and a policy condition, and starts no attempt (issue 13 §4)', async () => {
    const { s, hand, kv } = await given('shapes');
    const source = { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/multi', targetRevision: 'main' };
    const degraded = { sync: { status: 'Synced', revisions: ['a'.repeat(40), 'b'.repeat(40)] }, health: { status: 'Degraded' },
      history: [{ id: 1, revisions: ['c'.repeat(40), 'b'.repeat(40)], deployedAt: hoursAgo(30) }, { id: 2, revisions: ['a'.repeat(40), 'b'.repeat(40)], deployedAt: hoursAgo(1) }] };
    // Given a Degraded multi-source app and a Degraded source-hydrator app, both of GITHUB_ORG's repository
    await hand.app({ name: 'multi', environment: 'staging', repoURL: source.repoURL, path: source.path, status: degraded,
      spec: { sources: [source, { repoURL: 'https://github.com/acme/values.git', path: 'multi', targetRevision: 'main' }] } });
    await hand.app({ name: 'hydrated', environment: 'staging', repoURL: source.repoURL, path: source.path,
      status: { sync: { status: 'Synced', revision: 'a'.repeat(40) }, health: { status: 'Degraded' } },
      spec: { sourceHydrator: { drySource: { repoURL: source.repoURL, path: 'apps/hydrated', targetRevision: 'main' }, syncSource: { targetBranch: 'env/staging', path: 'apps/hydrated' } } } });
    // When a policy governs them
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'all', namespace: hand.namespace }, spec: { environment: 'staging' } }));

    // Then each gets one Warning Event naming the field that makes it unsupported
    const refusals = await eventually('both refusals', async () => {
      const events = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', hand.namespace, '-o', 'json'])).items
        .filter((e: { reason: string }) => e.reason === 'ApplicationRefused') as Array<{ note: string; type: string; regarding: { name: string } }>;
      return events.length === 2 ? events : undefined;
    }, 30_000);
    const note = (name: string) => refusals.find((e) => e.regarding.name === name)?.note;
    expect(note('multi')).toBe('spec.sources reads two repositories (https://github.com/acme/gitops.git and https://github.com/acme/values.git): one rollback commit cannot restore both');
    expect(note('hydrated')).toMatch(/^spec\.sourceHydrator is set: source-hydrator Applications are not handled yet/);
    expect(refusals.every((e) => e.type === 'Warning')).toBe(true);
    // And the policy's ApplicationsRefused condition lists both
    const condition = await eventually('UnsupportedShape condition', async () => {
      const policy = JSON.parse(await kubectlOk(stack, ['get', 'rollbackpolicy', 'all', '-n', hand.namespace, '-o', 'json'])) as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
      const c = policy.status?.conditions?.find((x) => x.type === 'ApplicationsRefused');
      return c?.status === 'True' ? c : undefined;
    });
    expect(condition).toMatchObject({ reason: 'UnsupportedShape', message: '2 governed Application(s) refused, their shape not handled yet (sources in several repositories, or a source hydrator): hydrated, multi' });
    // And no attempt, no counting, no PR: nothing was misread
    await sleep(3000);
    for (const name of ['multi', 'hydrated']) {
      expect(await kv.get(KEYS.active(`${hand.namespace}_${name}`))).toBeUndefined();
      expect(await kv.get(KEYS.health(`${hand.namespace}_${name}`))).toBeUndefined();
    }
    expect(s.github.control.counters()[PULLS]).toBeUndefined();
  }, 120_000);
});
