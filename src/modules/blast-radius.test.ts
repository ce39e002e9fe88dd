// The blast radius over a scripted repository: which other apps a rollback's files deploy.
import { describe, expect, it } from 'vitest';
import type { ApplicationView, AppSource } from '../ports/argocd.ts';
import type { GitHubPort, RepoRef } from '../ports/github.ts';
import { blastRadius, SourceSetCache } from './blast-radius.ts';

const URL = 'https://github.com/acme/gitops.git';
const HEAD = 'h'.repeat(40);
const repo = { owner: 'acme', repo: 'gitops' };

const files: Record<string, string> = {
  'apps/shop/base/kustomization.yaml': 'resources: [deployment.yaml]\n',
  'apps/shop/base/deployment.yaml': 'kind: Deployment\n',
  'apps/shop/overlays/staging/kustomization.yaml': 'resources: [../../base]\n',
  'apps/shop/overlays/production/kustomization.yaml': 'resources: [../../base]\n',
  'envs/deployment.yaml': 'kind: Deployment\n',
  'envs/prod/x/deployment.yaml': 'kind: Deployment\n',
  'other/app.yaml': 'kind: ConfigMap\n',
};

/** The repository at HEAD, its default branch `main`. */
const github = {
  async readFileAt(_repo: RepoRef, sha: string, path: string) { expect(sha).toBe(HEAD); return files[path]; },
  async listFilesAt(_repo: RepoRef, _sha: string, prefix: string) { return Object.keys(files).filter((f) => prefix === '' || f === prefix || f.startsWith(`${prefix}/`)).sort(); },
  async defaultBranch() { return 'main'; },
} as unknown as GitHubPort;

function view(name: string, source: AppSource, environment?: string): ApplicationView {
  return {
    ref: { namespace: 'argocd', name }, labels: environment ? { environment } : {}, history: [], resources: [],
    source: { repoURL: source.repoURL, path: source.path ?? '.', targetRevision: source.targetRevision ?? 'HEAD' }, rendered: { source },
  };
}

const staging = view('shop-staging', { repoURL: URL, path: 'apps/shop/overlays/staging', targetRevision: 'main' }, 'staging');
const production = view('shop-production', { repoURL: 'git@github.com:acme/gitops', path: 'apps/shop/overlays/production' }, 'production');
const environmentOf = (app: ApplicationView) => (app.labels.environment as 'staging' | 'production' | undefined) ?? 'ungoverned';
const radius = (changed: string[], others: ApplicationView[], app = staging) =>
  blastRadius(github, { app, repo, branch: 'main', headSha: HEAD, files: changed.map((path) => ({ path, change: 'restored' as const })), others, environmentOf });

describe('blastRadius', () => {
  it('names a production app that renders the shared base the rollback restores (HEAD is the default branch, another URL spelling)', async () => {
    expect(await radius(['apps/shop/base/deployment.yaml'], [staging, production])).toEqual([
      { namespace: 'argocd', name: 'shop-production', environment: 'production', paths: ['apps/shop/base'] },
    ]);
  });

  it('names nobody for a change in the staging overlay alone, and never the app itself', async () => {
    expect(await radius(['apps/shop/overlays/staging/kustomization.yaml'], [staging, production])).toEqual([]);
  });

  it('overlapping paths: a staging app at envs restores only its own manifests, so envs/prod/x is untouched and named only if changed', async () => {
    const envs = view('envs-staging', { repoURL: URL, path: 'envs', targetRevision: 'main' }, 'staging');
    const prodX = view('x-production', { repoURL: URL, path: 'envs/prod/x', targetRevision: 'main' }, 'production');
    expect(await radius(['envs/deployment.yaml'], [envs, prodX], envs)).toEqual([]);
    expect(await radius(['envs/prod/x/deployment.yaml'], [envs, prodX], envs)).toEqual([
      { namespace: 'argocd', name: 'x-production', environment: 'production', paths: ['envs/prod/x/deployment.yaml'] },
    ]);
  });

  it('weighs apps no policy governs, and leaves out apps on another branch, a tag, or another repository', async () => {
    const ungoverned = view('shop-preview', { repoURL: URL, path: 'apps/shop/overlays/production', targetRevision: 'main' });
    const release = view('shop-release', { repoURL: URL, path: 'apps/shop/overlays/production', targetRevision: 'release' }, 'production');
    const tagged = view('shop-tagged', { repoURL: URL, path: 'apps/shop/overlays/production', targetRevision: 'v1.0.0' }, 'production');
    const elsewhere = view('shop-fork', { repoURL: 'https://github.com/acme/fork.git', path: 'apps/shop/overlays/production', targetRevision: 'main' }, 'production');
    expect(await radius(['apps/shop/base/deployment.yaml'], [ungoverned, release, tagged, elsewhere])).toEqual([
      { namespace: 'argocd', name: 'shop-preview', environment: 'ungoverned', paths: ['apps/shop/base'] },
    ]);
  });

  it('counts an app whose source set cannot be computed as affected, saying why', async () => {
    const plugin = view('shop-plugin', { repoURL: URL, path: 'other', targetRevision: 'main', plugin: { name: 'cmp' } }, 'staging');
    const [affected] = await radius(['apps/shop/base/deployment.yaml'], [plugin]);
    expect(affected).toMatchObject({ name: 'shop-plugin', environment: 'staging' });
    expect(affected!.paths[0]).toContain('config management plugin');
  });

  it('lists the head\'s tree once for every app, and with a cache computes each app\'s set once per head for a burst of rollbacks', async () => {
    const listed: string[] = [];
    const counting = { ...github, listFilesAt: async (r: RepoRef, sha: string, prefix: string) => { listed.push(`${sha}:${prefix}`); return github.listFilesAt(r, sha, prefix); } } as unknown as GitHubPort;
    const cache = new SourceSetCache();
    const ask = () => blastRadius(counting, { app: staging, repo, branch: 'main', headSha: HEAD, files: [{ path: 'apps/shop/base/deployment.yaml', change: 'restored' }], others: [staging, production], environmentOf, cache });
    const first = await ask();
    expect(listed).toEqual([`${HEAD}:`]);
    expect(await ask()).toEqual(first);
    expect(await ask()).toEqual(first);
    expect(listed).toHaveLength(1);
  });

  it('reads the default branch once for a repository full of HEAD apps, and not at all when the rollback is on another branch', async () => {
    let asked = 0;
    const counting = { ...github, defaultBranch: async () => { asked += 1; return 'main'; } } as unknown as GitHubPort;
    const many = Array.from({ length: 50 }, (_, i) => view(`shop-${i}`, { repoURL: i % 2 ? URL : 'git@github.com:acme/gitops', path: 'apps/shop/overlays/production' }, 'production'));
    const onMain = await blastRadius(counting, { app: staging, repo, branch: 'main', headSha: HEAD, files: [{ path: 'apps/shop/base/deployment.yaml', change: 'restored' }], others: many, environmentOf });
    expect(onMain).toHaveLength(50);
    expect(asked).toBe(1);
    const onRelease = await blastRadius(counting, { app: staging, repo, branch: 'release', headSha: HEAD, files: [{ path: 'apps/shop/base/deployment.yaml', change: 'restored' }], others: many, environmentOf });
    expect(onRelease).toEqual([]);
    expect(asked).toBe(2);
  });
});
