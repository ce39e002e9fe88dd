// Issue 19 §3: two installations of the operator on one cluster, as a new user
// runs them — two operator processes (src/main.ts) with their own ETCD_PREFIX on
// the one stack, watching the same namespace. Each has its own events (its wake
// consumer is delivered none of the other's), exactly one acts on an app (one
// PR, never two; the other says once that it ignores the policy and never writes
// its status; an app without policy is acted on by the holder of its claim
// Lease alone), and a replica configured for another GITHUB_ORG never carries on
// an attempt it could not have started.
import { jetstreamManager, type ConsumerInfo, type JetStreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { wakeConsumerName } from '../../src/bus/jetstream.ts';
import { installationNameFrom } from '../../src/config.ts';
import { streamNameFor } from '../../src/fsm/cloud-events.ts';
import { AttemptStore } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { deployment, givenRollbackScenario, REPO, type OperatorHandle, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

type Json = Record<string, any>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tail = (handle: OperatorHandle, count = 20) => readFileSync(handle.log, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
const lines = (handle: OperatorHandle, pattern: RegExp) => readFileSync(handle.log, 'utf8').split('\n').filter((l) => pattern.test(l));
const api = () => kubeConfig(stack).makeApiClient(CustomObjectsApi);
const POLICIES = { group: 'ai-operator.io', version: 'v1alpha1', plural: 'rollbackpolicies' };
const getPolicy = async (namespace: string, name: string) => await api().getNamespacedCustomObject({ ...POLICIES, namespace, name }) as Json;
/** Created through the API (not kubectl's strict validation), as a GitOps tool would. */
const createPolicy = (namespace: string, name: string, spec: Json) => api().createNamespacedCustomObject({ ...POLICIES, namespace, body: {
  apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name, namespace },
  spec: { environment: 'staging', detection: { intervalSeconds: 1, persistenceChecks: 3 }, ...spec },
} });

/**
 * A pod's name and its own audit spool: two processes running at once never share one (each pod of the chart's
 * StatefulSet has its own claim), and two that did raced for the spool's checkpoint file at start-up.
 */
const pod = (s: { namespace: string; dir: string }, name: string) => ({ POD_NAME: `${s.namespace}-${name}`, AUDIT_FALLBACK_DIR: join(s.dir, `audit-${name}`) });

/** One installation's side of the stack: its etcd prefix, its records there, and where its wake consumer should be. */
function installation(prefix: string) {
  const kv = new EtcdKV([stack.etcd], { prefix });
  stoppers.push(() => kv.close());
  const store = new AttemptStore(kv);
  return { prefix, store, consumer: { durable: wakeConsumerName(prefix), stream: streamNameFor(installationNameFrom(prefix)!) } };
}

/**
 * The stream holding a durable consumer of this name, and the consumer, wherever the operator put it: the stream
 * it should be in first (one request), then every stream (the stack holds one per installation any test started,
 * hundreds by the end of a run).
 */
async function findConsumer(jsm: JetStreamManager, { durable, stream: expected }: { durable: string; stream: string }): Promise<{ stream: string; info: ConsumerInfo } | undefined> {
  const own = await jsm.consumers.info(expected, durable).catch(() => undefined);
  if (own) return { stream: expected, info: own };
  for await (const stream of jsm.streams.list()) {
    const info = await jsm.consumers.info(stream.config.name, durable).catch(() => undefined);
    if (info) return { stream: stream.config.name, info };
  }
  return undefined;
}

/**
 * The events a wake consumer was delivered: the messages of its stream on its filter subject, from its creation
 * to the last one it was delivered (it delivers new messages only, in order).
 */
async function deliveredTo(jsm: JetStreamManager, durable: { durable: string; stream: string }): Promise<{ stream: string; filter: string; deliveries: number; events: CloudEvent[] }> {
  const found = await findConsumer(jsm, durable);
  if (!found) throw new Error(`no consumer ${durable.durable} in any stream`);
  const { stream, info } = found;
  const filter = info.config.filter_subject ?? info.config.filter_subjects?.[0] ?? '>';
  const matches = (subject: string) => filter === '>' || (filter.endsWith('.>') ? subject.startsWith(filter.slice(0, -1)) : subject === filter);
  const created = Date.parse(info.created);
  const events: CloudEvent[] = [];
  const first = (await jsm.streams.info(stream)).state.first_seq;
  for (let seq = Math.max(first, 1); seq <= info.delivered.stream_seq; seq++) {
    const message = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
    if (!message || !matches(message.subject) || message.timestamp && Date.parse(message.timestamp) < created) continue;
    events.push(message.json<CloudEvent>());
  }
  return { stream, filter, deliveries: info.delivered.consumer_seq, events };
}

describe('two installations watching one namespace', () => {
  it('each has its own events; exactly one acts on an app (one PR), the other says once that it ignores the policy and never writes its status', async () => {
    // Given the staging apps cart, shop and hat in one namespace, all healthy (hat opted in by its label, with no policy)
    const s = await given('installations', { environment: 'staging', startOperator: false });
    const addApp = async (name: string, labels: Record<string, string>) => {
      const good = await s.github.control.push({ ...REPO, files: { [`apps/${name}/deployment.yaml`]: deployment(name, s.target, 'v1') }, message: `Release ${name} v1` });
      s.github.control.setStatus({ ...REPO, sha: good.sha, state: 'success', context: 'ci/build' });
      await api().createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: s.namespace, plural: 'applications', body: {
        apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace: s.namespace, labels: { environment: 'staging', ...labels } },
        spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${name}`, targetRevision: 'main' }, destination: { namespace: s.target } },
      } });
      const dayAgo = new Date(Date.now() - 24 * 3600_000).toISOString();
      await api().patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: s.namespace, plural: 'applications', name, body: {
        status: { sync: { status: 'Synced', revision: good.sha }, health: { status: 'Healthy' }, history: [{ id: 0, revision: good.sha, deployedAt: dayAgo, deployStartedAt: dayAgo }] },
      } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    };
    await addApp('shop', {});
    await addApp('hat', { 'ai-operator.enabled': 'true' });
    await s.argocd.syncNow();

    // And two installations of the operator, with their own etcd prefix, both watching the namespace
    const a = installation(`/e2e/${s.namespace}/a`);
    const b = installation(`/e2e/${s.namespace}/b`);
    const operators = {
      [a.prefix]: await s.startOperator({ ETCD_PREFIX: a.prefix, ...pod(s, 'a') }),
      [b.prefix]: await s.startOperator({ ETCD_PREFIX: b.prefix, ...pod(s, 'b') }),
    };
    const nc = await connect({ servers: stack.nats });
    stoppers.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await eventually('both wake consumers', async () => (await findConsumer(jsm, a.consumer)) && (await findConsumer(jsm, b.consumer)), 60_000, 250)
      .catch(async (error: Error) => {
        const missing = [];
        for (const inst of [a, b]) if (!(await findConsumer(jsm, inst.consumer))) missing.push(`${inst.consumer.stream}/${inst.consumer.durable}, its operator's log ending:\n${tail(operators[inst.prefix]!)}`);
        throw new Error(`${error.message}; missing ${missing.join('\n')}`);
      });

    // And a RollbackPolicy for cart naming no installation: one installation claims it
    await createPolicy(s.namespace, 'cart-policy', { applications: ['cart'] });
    const claimed = await eventually('cart-policy claimed', async () => (await getPolicy(s.namespace, 'cart-policy')).status?.installation as string | undefined, 30_000, 250)
      .catch(() => undefined);
    const names = { [a.prefix]: `e2e-${s.namespace}-a`, [b.prefix]: `e2e-${s.namespace}-b` };
    const [owner, other] = claimed === names[b.prefix] ? [b, a] : [a, b];
    expect.soft(claimed, 'cart-policy status.installation').toBe(names[owner.prefix]);
    // And a policy for shop naming the other installation
    await createPolicy(s.namespace, 'shop-policy', { applications: ['shop'], installation: names[other.prefix] });

    // When the three apps degrade
    await s.release('v2', true, {
      'apps/shop/deployment.yaml': deployment('shop', s.target, 'v2', true), 'apps/hat/deployment.yaml': deployment('hat', s.target, 'v2', true),
    });

    // Then each app gets its rollback PR, and (a few intervals later) no second one
    const pullsFor = (app: string) => s.github.control.pulls(REPO).filter((p) => p.head.includes(`/rollback/${app}-`));
    await eventually('a rollback PR for cart, shop and hat', async () => pullsFor('cart').length > 0 && pullsFor('shop').length > 0 && pullsFor('hat').length > 0, 90_000, 250);
    await sleep(8000);
    for (const app of ['cart', 'shop', 'hat']) expect.soft(pullsFor(app).map((p) => p.head), `rollback PRs for ${app}`).toHaveLength(1);
    // Opened by the installation each policy names, and by the holder of hat's claim Lease: cart's attempt in the
    // claimer's etcd alone, shop's in the other's, hat's in the holder's
    const lease = await kubectlOk(stack, ['get', 'lease', 'ai-operator-claim-hat', '-n', s.namespace, '-o', 'json']).then((out) => JSON.parse(out) as Json, () => undefined);
    const holder = lease?.spec?.holderIdentity as string | undefined;
    expect.soft(lease?.metadata?.labels?.['ai-operator.io/installation'], 'hat\'s claim Lease').toBe(holder);
    expect.soft([names[a.prefix], names[b.prefix]], 'hat\'s claim holder').toContain(holder);
    const apps = async (inst: typeof a) => (await inst.store.allAttempts()).map((r) => r.app.name).sort();
    const hatOf = (inst: typeof a) => (holder === names[inst.prefix] ? ['hat'] : []);
    expect.soft(await apps(owner), `apps with attempts in ${owner.prefix}`).toEqual(['cart', ...hatOf(owner)].sort());
    expect.soft(await apps(other), `apps with attempts in ${other.prefix}`).toEqual(['shop', ...hatOf(other)].sort());

    // And each wake consumer was delivered its own installation's events and none of the other's
    const correlations = async (inst: typeof a) => new Set((await inst.store.allAttempts()).map((r) => r.correlationId));
    const own = { [a.prefix]: await correlations(a), [b.prefix]: await correlations(b) };
    await sleep(2000);
    const counts: Record<string, { stream: string; filter: string; deliveries: number; own: number; others: number; unrelated: number }> = {};
    for (const [inst, peer] of [[a, b], [b, a]] as const) {
      const { stream, filter, deliveries, events } = await deliveredTo(jsm, inst.consumer);
      counts[inst.prefix] = {
        stream, filter, deliveries,
        own: events.filter((e) => own[inst.prefix]!.has(e.correlationid)).length,
        others: events.filter((e) => own[peer.prefix]!.has(e.correlationid)).length,
        unrelated: events.filter((e) => !own[inst.prefix]!.has(e.correlationid) && !own[peer.prefix]!.has(e.correlationid)).length,
      };
    }
    console.log('wake consumers:', JSON.stringify(counts));
    for (const [inst, peer] of [[a, b], [b, a]] as const) {
      expect.soft(counts[inst.prefix]!.others, `events of ${peer.prefix} delivered to ${inst.prefix}'s wake consumer`).toBe(0);
      expect.soft(counts[inst.prefix]!.unrelated, `events of no installation here delivered to ${inst.prefix}'s wake consumer`).toBe(0);
      expect.soft(counts[inst.prefix]!.own, `own events delivered to ${inst.prefix}'s wake consumer`).toBeGreaterThan(0);
      expect.soft(counts[inst.prefix]!.deliveries, `deliveries of ${inst.prefix}'s wake consumer`).toBe(counts[inst.prefix]!.own);
    }
    expect.soft(counts[a.prefix]!.stream, 'the two installations\' streams').not.toBe(counts[b.prefix]!.stream);

    // And each installation said once that it ignores the other's policy: a log line and an Event
    const ignored = (inst: typeof a, policy: string) => lines(operators[inst.prefix]!, new RegExp(`"Ignored RollbackPolicy ${s.namespace}/${policy}:`));
    expect.soft(ignored(other, 'cart-policy'), `${other.prefix} ignoring cart-policy`).toHaveLength(1);
    expect.soft(ignored(owner, 'shop-policy'), `${owner.prefix} ignoring shop-policy`).toHaveLength(1);
    expect.soft(ignored(owner, 'cart-policy'), `${owner.prefix} ignoring its own policy`).toHaveLength(0);
    const events = JSON.parse(await kubectlOk(stack, ['get', 'events.v1.events.k8s.io', '-n', s.namespace, '-o', 'json'])) as { items: Json[] };
    const ignoredEvents = events.items.filter((e) => e.reason === 'ActedOnByAnotherInstallation').map((e) => `${e.regarding.name} x${e.series?.count ?? 1}: ${e.note}`);
    const notHolder = holder === names[a.prefix] ? names[b.prefix] : names[a.prefix];
    expect.soft(ignoredEvents.sort(), 'ActedOnByAnotherInstallation Events').toEqual([
      `cart-policy x1: Ignored RollbackPolicy ${s.namespace}/cart-policy: installation ${names[owner.prefix]} acts on it (status.installation); installation ${names[other.prefix]} neither acts on its Applications nor writes its status`,
      `hat x1: Ignored Application ${s.namespace}/hat: installation ${holder} acts on it (Lease); installation ${notHolder} does not act on it`,
      `shop-policy x1: Ignored RollbackPolicy ${s.namespace}/shop-policy: installation ${names[other.prefix]} acts on it (spec.installation); installation ${names[owner.prefix]} neither acts on its Applications nor writes its status`,
    ]);
    const ignoredHat = Object.values(operators).map((o) => lines(o, new RegExp(`"Ignored Application ${s.namespace}/hat:`)).length);
    expect.soft(ignoredHat.sort(), 'log lines ignoring hat, per installation').toEqual([0, 1]);

    // And each policy's status was written by the installation acting on it alone
    const statusWriters = async (policy: string) => ((await getPolicy(s.namespace, policy)).metadata.managedFields as Json[])
      .filter((f) => f.subresource === 'status').map((f) => f.manager as string).sort();
    const cart = await getPolicy(s.namespace, 'cart-policy');
    expect.soft(cart.status?.installation, 'cart-policy status.installation').toBe(names[owner.prefix]);
    expect.soft(cart.status?.matchedApplications, 'cart-policy matchedApplications').toBe(1);
    expect.soft(await statusWriters('cart-policy'), 'cart-policy status writers').toEqual([`ai-operator-${names[owner.prefix]}`]);
    expect.soft((await getPolicy(s.namespace, 'shop-policy')).status?.installation, 'shop-policy status.installation').toBe(names[other.prefix]);
    expect.soft(await statusWriters('shop-policy'), 'shop-policy status writers').toEqual([`ai-operator-${names[other.prefix]}`]);
    expect(s.github.violations()).toEqual([]);
  }, 300_000);
});

describe('two replicas of one installation with different GITHUB_ORG', () => {
  it('the replica whose GITHUB_ORG does not hold the repository leaves the attempt as it is, once said; a replica whose org does carries it on', async () => {
    // Given a staging rollback PR opened by the replica for acme, waiting for CI
    const s = await given('installations-org', { environment: 'staging', startOperator: false });
    const acme = await s.startOperator({ ...pod(s, 'acme') });
    await eventually('acme replica leading', async () => lines(acme, /became leader/).length > 0, 30_000, 200);
    await s.release('v2', true);
    const opened = await s.inState('PRCreated', 90_000);
    const pr = await s.firstPull();

    // And a standby replica of the same installation (same ETCD_PREFIX) configured for another org, with its own token
    const { token } = s.github.control.addUser({ login: 'other-bot' });
    const other = await s.startOperator({ ...pod(s, 'other'), GITHUB_ORG: 'other-org', GITHUB_TOKEN: token });
    await eventually('the other replica up', async () => lines(other, /Started operator/).length > 0, 30_000, 200);

    // When the acme replica stops and the other one takes over
    acme.child.kill('SIGTERM');
    await eventually('other replica leading', async () => lines(other, /became leader/).length > 0, 45_000, 200);
    const usedAtTakeover = s.github.control.rateLimit({ login: 'other-bot' }).used;
    // And CI passes on the rollback commit (a staging rollback merges itself then)
    s.ci(pr.headSha, 'success');
    await sleep(10_000);

    // Then the attempt is left as it was: not merged, not aborted, not touched with the other token
    const [record] = await s.attempts();
    expect.soft(record && { state: record.state, version: record.version }, 'the attempt while the other replica leads').toEqual({ state: 'PRCreated', version: opened.version });
    expect.soft(s.github.control.pulls(REPO)[0]!, 'the PR while the other replica leads').toMatchObject({ state: 'open', merged: false });
    expect.soft(s.github.control.rateLimit({ login: 'other-bot' }).used - usedAtTakeover, 'GitHub calls with the other replica\'s token').toBe(0);
    // And it said so once, in its log and in an Event on the RollbackAttempt
    expect.soft(lines(other, /"Left RollbackAttempt /), 'the other replica\'s word on the attempt').toHaveLength(1);
    const events = JSON.parse(await kubectlOk(stack, ['get', 'events.v1.events.k8s.io', '-n', s.namespace, '-o', 'json'])) as { items: Json[] };
    expect.soft(events.items.filter((e) => e.reason === 'AttemptOutsideGitHubOrg').map((e) => e.note as string), 'AttemptOutsideGitHubOrg Events')
      .toEqual([expect.stringMatching(/^Left RollbackAttempt .*: spec\.source\.repoURL https:\/\/github\.com\/acme\/gitops\.git is outside GITHUB_ORG other-org/)]);

    // When a replica for acme leads again
    const again = await s.startOperator({ ...pod(s, 'acme-2') });
    await eventually('the new acme replica up', async () => lines(again, /Started operator/).length > 0, 30_000, 200);
    other.child.kill('SIGTERM');

    // Then it carries the attempt on: merged with acme's token, and complete
    const done = await s.inState('RollbackComplete', 90_000);
    expect(done.correlationId).toBe(opened.correlationId);
    expect(s.github.control.pulls(REPO)).toEqual([expect.objectContaining({ number: pr.number, merged: true, mergedBy: 'ai-operator-bot' })]);
    expect(s.github.violations()).toEqual([]);
  }, 300_000);
});
