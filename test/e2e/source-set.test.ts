// The app's source set (modules/source-set.ts) through the real GitHubClient on
// the GitHub simulator (real git underneath, every answer checked against
// GitHub's OpenAPI description): the shapes of issue 18 — a Kustomize overlay
// over a shared base, a Helm chart with values outside it and a file://
// dependency, a directory with include/exclude — built as commits, their sets
// computed at each commit, and a second computation at a commit already read
// costing no tree or blob request (a commit's files never change).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGitHubSim, type GitHubSim } from '../../dev/github-sim/index.ts';
import { GitHubClient } from '../../src/integrations/github.ts';
import { sourceSet, type SourceSetApp } from '../../src/modules/source-set.ts';
import type { RepoRef } from '../../src/ports/github.ts';

const repo: RepoRef = { owner: 'acme', repo: 'monorepo' };
const URL = 'https://github.com/acme/monorepo.git';
const TREES = 'GET /repos/{owner}/{repo}/git/trees/{tree_sha}';
const BLOBS = 'GET /repos/{owner}/{repo}/git/blobs/{file_sha}';

let sim: GitHubSim;
let token: string;
const c: Record<string, string> = {};

const client = () => new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, timeoutMs: 10_000, sleep: async () => {} });
const reads = () => ({ trees: sim.control.counters()[TREES] ?? 0, blobs: sim.control.counters()[BLOBS] ?? 0 });

const staging: SourceSetApp = { name: 'shop-staging', source: { repoURL: URL, path: 'apps/shop/overlays/staging', targetRevision: 'main' } };
const production: SourceSetApp = { name: 'shop-production', source: { repoURL: URL, path: 'apps/shop/overlays/production', targetRevision: 'main' } };
const chart: SourceSetApp = { name: 'chart-staging', source: { repoURL: URL, path: 'charts/shop', targetRevision: 'main', helm: { valueFiles: ['../../envs/staging/values.yaml'] } } };

beforeAll(async () => {
  sim = await startGitHubSim({ validate: true });
  token = sim.control.addUser({ login: 'ai-operator-bot' }).token;
  // Given a monorepo: a Kustomize base with two overlays, a Helm chart with per-environment values and a
  // local library chart, a plain directory app.
  c.v1 = (await sim.control.createRepo({
    ...repo, author: 'alice', message: 'shop v1',
    files: {
      'apps/shop/base/kustomization.yaml': 'resources:\n  - deployment.yaml\n',
      'apps/shop/base/deployment.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n',
      'apps/shop/overlays/staging/kustomization.yaml': 'resources:\n  - ../../base\n  - https://github.com/acme/platform//monitoring?ref=v1\n',
      'apps/shop/overlays/production/kustomization.yaml': 'resources:\n  - ../../base\n',
      'charts/shop/Chart.yaml': 'apiVersion: v2\nname: shop\nversion: 0.1.0\ndependencies:\n  - name: lib\n    version: 0.1.0\n    repository: file://../lib\n',
      'charts/shop/templates/deployment.yaml': 'kind: Deployment\n',
      'charts/lib/Chart.yaml': 'apiVersion: v2\nname: lib\nversion: 0.1.0\ntype: library\n',
      'envs/staging/values.yaml': 'image: shop:1\n',
      'envs/production/values.yaml': 'image: shop:1\n',
      'apps/web/deployment.yaml': 'kind: Deployment\n', 'apps/web/notes.md': '# notes\n', 'apps/web/test/fixture.yaml': 'kind: ConfigMap\n',
    },
  })).sha!;
  // Then the staging overlay gains a patch, and a component shared with nobody else.
  c.v2 = (await sim.control.push({
    ...repo, author: 'alice', message: 'staging: debug component',
    files: {
      'apps/shop/overlays/staging/kustomization.yaml': 'resources:\n  - ../../base\ncomponents:\n  - ../../components/debug\npatches:\n  - path: ../../patches/replicas.yaml\n',
      'apps/shop/components/debug/kustomization.yaml': 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n',
      'apps/shop/patches/replicas.yaml': 'kind: Deployment\n',
    },
  })).sha;
});

afterEach(() => {
  const violations = sim.violations();
  sim.control.clearViolations();
  expect(violations).toEqual([]);
});

afterAll(async () => {
  await sim?.stop();
});

describe('the source set through the GitHub API', () => {
  it('is the overlay plus the shared base for each overlay, at each commit (the remote base is not followed)', async () => {
    const github = client();
    expect(await sourceSet(github, staging, c.v1!)).toEqual({ kind: 'Kustomize', paths: ['apps/shop/base', 'apps/shop/overlays/staging'] });
    expect(await sourceSet(github, staging, c.v2!)).toEqual({
      kind: 'Kustomize', paths: ['apps/shop/base', 'apps/shop/components/debug', 'apps/shop/overlays/staging', 'apps/shop/patches/replicas.yaml'],
    });
    expect(await sourceSet(github, production, c.v2!)).toEqual({ kind: 'Kustomize', paths: ['apps/shop/base', 'apps/shop/overlays/production'] });
  });

  it('is the chart, its file:// dependency and its values file outside the chart', async () => {
    expect(await sourceSet(client(), chart, c.v2!)).toEqual({ kind: 'Helm', paths: ['charts/lib', 'charts/shop', 'envs/staging/values.yaml'] });
  });

  it('honours a directory app\'s recurse and include/exclude', async () => {
    const web = (directory?: Record<string, unknown>): SourceSetApp => ({ name: 'web', source: { repoURL: URL, path: 'apps/web', ...(directory ? { directory } : {}) } });
    expect((await sourceSet(client(), web(), c.v2!)).paths).toEqual(['apps/web/deployment.yaml']);
    expect((await sourceSet(client(), web({ recurse: true }), c.v2!)).paths).toEqual(['apps/web/deployment.yaml', 'apps/web/test/fixture.yaml']);
    expect((await sourceSet(client(), web({ recurse: true, exclude: 'test/*' }), c.v2!)).paths).toEqual(['apps/web/deployment.yaml']);
  });

  it('costs no tree or blob read the second time at the same commit, and one tree read for a new commit', async () => {
    // Given a client that has computed the staging set at v2
    const github = client();
    sim.control.resetCounters();
    const first = await sourceSet(github, staging, c.v2!);
    const afterFirst = reads();
    expect(afterFirst.trees).toBe(1); // the commit's whole tree, read once for every listing and file
    expect(afterFirst.blobs).toBe(3); // the overlay's, the base's and the component's kustomizations (a file not in the tree costs nothing)
    // When it computes it again, and the production set at the same commit (sharing the base's blob)
    expect(await sourceSet(github, staging, c.v2!)).toEqual(first);
    await sourceSet(github, production, c.v2!);
    // Then no tree and only production's own kustomization was read
    expect(reads().trees).toBe(afterFirst.trees);
    expect(reads().blobs).toBe(afterFirst.blobs + 1);
    // And at v1 the tree is new, but the blobs v1 shares with v2 (the base's kustomization) are not read again
    await sourceSet(github, staging, c.v1!);
    expect(reads().trees).toBe(afterFirst.trees + 1);
    expect(reads().blobs).toBe(afterFirst.blobs + 2); // v1's own staging kustomization only
  });

  it('reads files and listings through a truncated tree too (GitHub cuts large trees short)', async () => {
    sim.control.setTreeEntryLimit({ limit: 3 });
    try {
      expect(await sourceSet(client(), chart, c.v1!)).toEqual({ kind: 'Helm', paths: ['charts/lib', 'charts/shop', 'envs/staging/values.yaml'] });
    } finally {
      sim.control.setTreeEntryLimit({ limit: 100_000 });
    }
  });
});
