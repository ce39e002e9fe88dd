// Bad input on the real stack (issue 12 §4): Applications the API server admits
// but the operator must not act on, next to a healthy neighbour that degrades and
// must still be rolled back — while its RollbackPolicy's uptime query answers a
// matrix (not a vector) and GitHub answers the PR's creation with an HTML page.
// The real operator process, etcd, NATS JetStream, API server and Prometheus;
// GitHub and Argo CD are the simulators. What the schema rejects outright is in
// bad-input-crds.test.ts; multi-source and source-hydrator apps in
// argocd-by-hand.test.ts.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { givenHandDrivenNamespace, type HandDrivenSpec } from './support/by-hand.ts';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const SHA = 'c'.repeat(40);

type Expectation = { log: string } | { refused: string };

interface ApplicationCase {
  name: string;
  input: Omit<HandDrivenSpec, 'name' | 'environment'>;
  expect: Expectation;
}

const degraded = { sync: { status: 'Synced', revision: SHA }, health: { status: 'Degraded', message: 'Deployment exceeded its progress deadline' } };
const git = { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/x' };

// Each Degraded, each opted in, none to be acted on.
const CASES: ApplicationCase[] = [
  { name: 'no-health', input: { ...git, status: { sync: { status: 'Synced', revision: SHA } } }, expect: { log: 'status.health is missing' } },
  { name: 'empty-health', input: { ...git, status: { ...degraded, health: { status: '' } } }, expect: { log: 'status.health.status is \\"\\", not a health status' } },
  { name: 'no-source', input: { ...git, status: degraded, spec: { project: 'default' } }, expect: { refused: 'spec.source is missing: there is no repository to roll back in' } },
  { name: 'no-repo-url', input: { ...git, status: degraded, spec: { source: { path: 'apps/x', targetRevision: 'main' } } }, expect: { refused: 'spec.source.repoURL is missing: there is no repository to roll back in' } },
  { name: 'helm-chart', input: { ...git, status: { ...degraded, sync: { status: 'Synced', revision: '17.0.0' } }, spec: { source: { repoURL: 'https://charts.example.com', chart: 'redis', targetRevision: '17.0.0' } } },
    expect: { refused: 'spec.source.chart is set (redis): a Helm repository source has no Git path a rollback could restore' } },
  { name: 'other-host', input: { repoURL: 'https://gitlab.com/other-team/gitops.git', path: 'apps/x', status: degraded }, expect: { refused: 'spec.source.repoURL https://gitlab.com/other-team/gitops.git is not a GitHub repository URL (host gitlab.com' } },
  { name: 'not-a-repo-url', input: { repoURL: 'gitops', path: 'apps/x', status: degraded }, expect: { refused: 'spec.source.repoURL gitops is not a GitHub repository URL' } },
  { name: 'huge-status', input: { ...git, status: {
    sync: { status: 'Synced', revision: SHA }, health: { status: 'Healthy', message: 'h'.repeat(300_000) },
    history: Array.from({ length: 1000 }, (_, i) => ({ id: i, revision: i % 2 ? SHA : 'd'.repeat(40), deployedAt: hoursAgo(1000 - i) })),
    resources: Array.from({ length: 3000 }, (_, i) => ({ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'x-workload', name: `deployment-${i}`, status: 'Synced' })),
  } }, expect: { log: '' } },
];

describe('bad input next to a healthy neighbour', () => {
  it('refuses or ignores each malformed Application with its field named, and still rolls the neighbour back', async () => {
    // Given the scenario's app (the neighbour), governed by a policy whose uptime query answers a matrix
    const s = await givenRollbackScenario(stack, 'bad-apps', { environment: 'staging', startOperator: false }, stoppers);
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'matrix', namespace: s.namespace },
      spec: { environment: 'staging', candidate: { uptimeQuery: 'argocd_app_info{name="$app"}[$window]' } } }));
    // And the malformed apps in a namespace of their own
    const hand = await givenHandDrivenNamespace(stack, 'bad-apps-hand');
    for (const c of CASES) await hand.app({ name: c.name, environment: 'staging', ...c.input });
    const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
    stoppers.push(() => kv.close());
    // And GitHub answers the creation of the neighbour's PR with an HTML page (after opening it)
    s.github.control.corrupt({ route: 'POST /repos/{owner}/{repo}/pulls', times: 1, text: '<!DOCTYPE html><html><body>Unicorn! No server is currently available</body></html>' });
    const operator = await s.startOperator({ WATCH_NAMESPACES: `${s.namespace},${hand.namespace}` });
    const log = () => readFileSync(operator.log, 'utf8');

    // When the neighbour's release breaks it
    await s.release('v2', true);

    // Then its rollback PR is opened once — the HTML answer's retry found the PR it had opened
    const pr = await s.firstPull(90_000);
    s.ci(pr.headSha, 'success');
    const record = await s.inState('RollbackComplete', 120_000);
    expect(s.github.control.pulls(REPO)).toHaveLength(1);
    expect(s.github.control.counters()['POST /repos/{owner}/{repo}/pulls']).toBe(1);
    // And the matrix made the candidate search fall back to CI, saying why
    expect(record.candidate).toMatchObject({ revision: s.good, mode: 'ci-only' });
    expect(record.candidate!.evidence).toContain('the query returned a matrix; an uptime query must return a vector or a scalar');
    expect(record.invariants.find((i) => i.id === 'I5_stable_previous')!.detail).toContain('the query returned a matrix');

    // And no malformed app got an attempt, a health record or an active key
    for (const c of CASES) {
      expect(await kv.get(KEYS.active(`${hand.namespace}_${c.name}`)), c.name).toBeUndefined();
      expect(await kv.get(KEYS.health(`${hand.namespace}_${c.name}`)), c.name).toBeUndefined();
    }
    expect((await s.store.allAttempts()).map((r) => r.app.name)).toEqual(['cart']);
    // And each refused one carries one Warning Event naming the field
    const events = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', hand.namespace, '-o', 'json'])).items as Array<{ reason: string; type: string; note: string; regarding: { name: string } }>;
    for (const c of CASES) {
      if (!('refused' in c.expect)) continue;
      const mine = events.filter((e) => e.regarding.name === c.name && e.reason === 'ApplicationRefused');
      expect(mine, c.name).toHaveLength(1);
      expect(mine[0]!.type).toBe('Warning');
      expect(mine[0]!.note).toContain(c.expect.refused);
    }
    // And each malformed status is one log line naming the app and the field
    const lines = log().split('\n').filter((l) => l.includes('Application status not understood'));
    for (const c of CASES) {
      if (!('log' in c.expect) || c.expect.log === '') continue;
      const mine = lines.filter((l) => l.includes(`${hand.namespace}/${c.name}`));
      expect(mine, c.name).toHaveLength(1);
      expect(mine[0]).toContain(c.expect.log);
    }
    // And the huge status was read without a word: nothing wrong in it, nothing said
    expect(lines.filter((l) => l.includes(`${hand.namespace}/huge-status`))).toEqual([]);

    // And the operator never crashed: one process, alive and ready throughout
    expect(operator.child.exitCode).toBeNull();
    expect((await fetch(`http://127.0.0.1:${operator.httpPort}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${operator.httpPort}/readyz`)).status).toBe(200);
    // And the one answer outside GitHub's description was the test's
    expect(s.github.violations()).toEqual([expect.stringMatching(/^POST \/repos\/\{owner\}\/\{repo\}\/pulls → 201: body replaced by \d+ bytes of text\/html/)]);
    s.github.control.clearViolations();
  }, 240_000);
});
