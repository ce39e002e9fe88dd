import { describe, expect, it } from 'vitest';
import type { RepoRef, RepositorySnapshotReader } from '../ports/github.ts';
import { collapsePaths, repositoryKey, sameRepository, discoveredSourceType, explicitSourceType, globRegExp, resolvePath, sourceSet, type AppSource, type SourceSetApp } from './source-set.ts';

const URL = 'https://github.com/acme/gitops.git';
const SHA = 'a'.repeat(40);

/** A repository at one commit, and what was asked of it. */
function repoOf(files: Record<string, string>) {
  const asked: string[] = [];
  const reader: RepositorySnapshotReader = {
    async readFileAt(repo: RepoRef, sha: string, path: string) {
      expect(repo).toEqual({ owner: 'acme', repo: 'gitops' });
      expect(sha).toBe(SHA);
      asked.push(`read ${path}`);
      return files[path];
    },
    async listFilesAt(_repo: RepoRef, _sha: string, prefix: string) {
      asked.push(`list ${prefix}`);
      return Object.keys(files).filter((f) => prefix === '' || f === prefix || f.startsWith(`${prefix}/`)).sort();
    },
  };
  return { reader, asked };
}

const app = (source: Partial<AppSource>, extra: Partial<SourceSetApp> = {}): SourceSetApp => ({ name: 'shop-staging', source: { repoURL: URL, ...source }, ...extra });
const setOf = (files: Record<string, string>, a: SourceSetApp) => sourceSet(repoOf(files).reader, a, SHA);

const shop = {
  'apps/shop/base/kustomization.yaml': 'resources:\n  - deployment.yaml\n',
  'apps/shop/base/deployment.yaml': 'kind: Deployment\n',
  'apps/shop/overlays/staging/kustomization.yaml': 'resources:\n  - ../../base\npatches:\n  - path: patch.yaml\n',
  'apps/shop/overlays/staging/patch.yaml': 'kind: Deployment\n',
  'apps/shop/overlays/production/kustomization.yaml': 'resources:\n  - ../../base\n',
  'apps/other/deployment.yaml': 'kind: Deployment\n',
};

describe('source type, as Argo CD tells it', () => {
  it('takes the type the source declares, refusing two or a plugin', () => {
    expect(explicitSourceType({ helm: {} })).toBe('Helm');
    expect(explicitSourceType({ kustomize: {} })).toBe('Kustomize');
    expect(explicitSourceType({ directory: {} })).toBe('Directory');
    expect(explicitSourceType({})).toBeUndefined();
    expect(explicitSourceType({ helm: {}, kustomize: {} })).toEqual({ refused: expect.stringContaining('several types (Kustomize, Helm)') });
    expect(explicitSourceType({ plugin: { name: 'x' } })).toEqual({ refused: expect.stringContaining('plugin') });
  });

  it('discovers from the names at the path: a Chart.yaml is Helm, a kustomization Kustomize, the later name winning', () => {
    expect(discoveredSourceType(['Chart.yaml', 'values.yaml'])).toBe('Helm');
    for (const k of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) expect(discoveredSourceType([k])).toBe('Kustomize');
    expect(discoveredSourceType(['deployment.yaml', 'kustomization.yaml.bak'])).toBe('Directory');
    // filepath.Walk's byte order: C < K < k, so a kustomization beside a Chart.yaml wins …
    expect(discoveredSourceType(['kustomization.yaml', 'Chart.yaml'])).toBe('Kustomize');
    // … and a name ending in Chart.yaml that sorts after it wins back.
    expect(discoveredSourceType(['Kustomization', 'myChart.yaml'])).toBe('Helm');
  });

  it('detects the type at the revision when the source declares none', async () => {
    expect((await setOf(shop, app({ path: 'apps/shop/overlays/staging' }))).kind).toBe('Kustomize');
    expect((await setOf({ 'charts/shop/Chart.yaml': 'name: shop\n' }, app({ path: 'charts/shop' }))).kind).toBe('Helm');
    expect((await setOf(shop, app({ path: 'apps/other' }))).kind).toBe('Directory');
    // A kustomization below the path does not make the path a Kustomize app.
    expect((await setOf(shop, app({ path: 'apps/shop' }))).kind).toBe('Directory');
  });
});

describe('paths', () => {
  it('resolves, normalises and refuses what leaves the root', () => {
    expect(resolvePath('apps/shop/overlays/staging', '../../base')).toBe('apps/shop/base');
    expect(resolvePath('a/b', './c/./d/')).toBe('a/b/c/d');
    expect(resolvePath('a', '../..')).toBeUndefined();
    expect(resolvePath('a', '/etc/passwd')).toBeUndefined();
    expect(resolvePath('a/b', '/envs/x.yaml', 'root')).toBe('envs/x.yaml');
    expect(resolvePath('a', '..')).toBe('');
  });

  it('collapses: sorted, deduplicated, nothing under a directory already in the set', () => {
    expect(collapsePaths(['b', 'a/x.yaml', 'a', 'b', 'ab/y'])).toEqual(['a', 'ab/y', 'b']);
    expect(collapsePaths(['', 'a'])).toEqual(['']);
  });

  it('matches globs in the dialect each field uses', () => {
    expect(globRegExp('*.yaml', 'gobwas')!.test('sub/x.yaml')).toBe(true);
    expect(globRegExp('*.yaml', 'filepath')!.test('sub/x.yaml')).toBe(false);
    expect(globRegExp('{config.json,env-usw2/*}', 'gobwas')!.test('env-usw2/a.yaml')).toBe(true);
    expect(globRegExp('{config.json,env-usw2/*}', 'gobwas')!.test('other.yaml')).toBe(false);
    expect(globRegExp('envs/**/values.yaml', 'doublestar')!.test('envs/values.yaml')).toBe(true);
    expect(globRegExp('envs/**/values.yaml', 'doublestar')!.test('envs/a/b/values.yaml')).toBe(true);
    expect(globRegExp('envs/*/values.yaml', 'doublestar')!.test('envs/a/b/values.yaml')).toBe(false);
    expect(globRegExp('x[!a].yaml', 'gobwas')!.test('xb.yaml')).toBe(true);
    expect(globRegExp('x[!a].yaml', 'gobwas')!.test('xa.yaml')).toBe(false);
    expect(globRegExp('{a,b', 'gobwas')).toBeUndefined();
  });
});

describe('Directory', () => {
  const files = {
    'apps/web/deployment.yaml': '', 'apps/web/service.yml': '', 'apps/web/config.json': '', 'apps/web/README.md': '',
    'apps/web/extra/cm.yaml': '', 'apps/web/extra/deep/secret.yaml': '', 'apps/web-canary/deployment.yaml': '',
  };

  it('is the top-level manifest files by default (recurse is false in Argo CD), nothing of a sibling that shares the prefix', async () => {
    expect(await setOf(files, app({ path: 'apps/web' }))).toEqual({ kind: 'Directory', paths: ['apps/web/config.json', 'apps/web/deployment.yaml', 'apps/web/service.yml'] });
  });

  it('recurses when asked', async () => {
    expect((await setOf(files, app({ path: 'apps/web', directory: { recurse: true } }))).paths).toEqual([
      'apps/web/config.json', 'apps/web/deployment.yaml', 'apps/web/extra/cm.yaml', 'apps/web/extra/deep/secret.yaml', 'apps/web/service.yml',
    ]);
  });

  it('applies exclude, then include, to the path relative to the app (a * crosses directories)', async () => {
    expect((await setOf(files, app({ path: 'apps/web', directory: { recurse: true, exclude: 'extra/deep/*' } }))).paths)
      .toEqual(['apps/web/config.json', 'apps/web/deployment.yaml', 'apps/web/extra/cm.yaml', 'apps/web/service.yml']);
    expect((await setOf(files, app({ path: 'apps/web', directory: { recurse: true, include: '*.yaml' } }))).paths)
      .toEqual(['apps/web/deployment.yaml', 'apps/web/extra/cm.yaml', 'apps/web/extra/deep/secret.yaml']);
    expect((await setOf(files, app({ path: 'apps/web', directory: { recurse: true, include: '{config.json,extra/*}', exclude: '*secret*' } }))).paths)
      .toEqual(['apps/web/config.json', 'apps/web/extra/cm.yaml']);
  });

  it('takes every file when the extension filter is off', async () => {
    expect((await setOf(files, app({ path: 'apps/web', directory: { disableExtensionFilter: true } }))).paths).toContain('apps/web/README.md');
  });

  it('is empty when the path holds nothing at the revision', async () => {
    expect(await setOf(files, app({ path: 'apps/gone' }))).toEqual({ kind: 'Directory', paths: [] });
  });

  it('refuses Jsonnet, whose imports are not followed', async () => {
    const set = await setOf({ 'apps/j/main.jsonnet': 'import "../lib/x.libsonnet"' }, app({ path: 'apps/j' }));
    expect(set.refused).toContain('apps/j/main.jsonnet is Jsonnet');
    expect(set.paths).toEqual([]);
  });
});

describe('Kustomize', () => {
  it('is the overlay plus the base it reaches (the issue\'s shape)', async () => {
    expect(await setOf(shop, app({ path: 'apps/shop/overlays/staging' }))).toEqual({ kind: 'Kustomize', paths: ['apps/shop/base', 'apps/shop/overlays/staging'] });
    expect((await setOf(shop, app({ path: 'apps/shop/overlays/production' }))).paths).toEqual(['apps/shop/base', 'apps/shop/overlays/production']);
  });

  it('follows every field that names a local path, transitively, and only local ones', async () => {
    const files = {
      'k/app/kustomization.yml': [
        'bases: [../bases/one]',
        'components: [../components/c]',
        'resources:',
        '  - ../shared/ns.yaml',
        '  - https://github.com/acme/remote//deploy?ref=v1',
        '  - github.com/acme/other/deploy?ref=main',
        '  - git@github.com:acme/x.git',
        'patches: [{ path: ../patches/p.yaml }, { patch: "inline" }]',
        'patchesStrategicMerge:',
        '  - ../patches/sm.yaml',
        '  - |-',
        '    kind: Deployment',
        '    metadata: { name: x }',
        'patchesJson6902: [{ path: ../patches/j.yaml, target: { kind: Deployment } }]',
        'configMapGenerator: [{ name: c, files: [../cfg/a.properties, key=../cfg/b.txt], envs: [../cfg/c.env] }]',
        'secretGenerator: [{ name: s, env: ../cfg/s.env }]',
        'replacements: [{ path: ../repl/r.yaml }]',
        'crds: [../crds/crd.yaml]',
        'configurations: [../conf/c.yaml]',
        'openapi: { path: ../openapi/schema.json }',
        'transformers: [../trans]',
        'helmGlobals: { chartHome: ../charts }',
        'helmCharts: [{ name: local, valuesFile: ../vals/local.yaml, additionalValuesFiles: [../vals/more.yaml] }, { name: pulled, repo: https://charts.example.com, version: 1.0.0 }]',
      ].join('\n'),
      'k/bases/one/Kustomization': 'resources: [../two]\n',
      'k/bases/two/kustomization.yaml': 'resources: [svc.yaml]\n',
      'k/bases/two/svc.yaml': '',
      'k/components/c/kustomization.yaml': 'kind: Component\npatches: [{ path: ../../patches/comp.yaml }]\n',
      'k/shared/ns.yaml': '',
      'k/trans/kustomization.yaml': 'resources: [labels.yaml]\n',
      'k/trans/labels.yaml': '',
      'k/charts/local/Chart.yaml': 'name: local\ndependencies: [{ name: lib, repository: "file://../lib" }]\n',
      'k/charts/lib/Chart.yaml': 'name: lib\n',
      'k/unrelated.yaml': '',
    };
    const set = await setOf(files, app({ path: 'k/app' }));
    expect(set).toEqual({
      kind: 'Kustomize',
      paths: [
        'k/app', 'k/bases/one', 'k/bases/two', 'k/cfg/a.properties', 'k/cfg/b.txt', 'k/cfg/c.env', 'k/cfg/s.env', 'k/charts/lib', 'k/charts/local',
        'k/components/c', 'k/conf/c.yaml', 'k/crds/crd.yaml', 'k/openapi/schema.json', 'k/patches/comp.yaml', 'k/patches/j.yaml', 'k/patches/p.yaml',
        'k/patches/sm.yaml', 'k/repl/r.yaml', 'k/shared/ns.yaml', 'k/trans', 'k/vals/local.yaml', 'k/vals/more.yaml',
      ],
    });
  });

  it('keeps a host-like entry that exists in the repository as a local path (kustomize tries local first)', async () => {
    const files = { 'k/kustomization.yaml': 'resources: [example.com/deploy.yaml]\n', 'k/example.com/deploy.yaml': '' };
    expect((await setOf(files, app({ path: 'k' }))).paths).toEqual(['k']);
    const remote = { 'k/kustomization.yaml': 'resources: [example.com/org/repo/deploy]\n' };
    expect((await setOf(remote, app({ path: 'k' }))).paths).toEqual(['k']);
  });

  it('terminates on a cycle', async () => {
    const files = {
      'a/kustomization.yaml': 'resources: [../b]\n',
      'b/kustomization.yaml': 'resources: [../c]\n',
      'c/kustomization.yaml': 'resources: [../a, ../b]\n',
    };
    expect((await setOf(files, app({ path: 'a' }))).paths).toEqual(['a', 'b', 'c']);
  });

  it('refuses a path that leaves the repository root, naming it', async () => {
    const set = await setOf({ 'apps/x/kustomization.yaml': 'resources: [../../../outside]\n' }, app({ path: 'apps/x' }));
    expect(set.kind).toBe('Kustomize');
    expect(set.paths).toEqual([]);
    expect(set.refused).toContain('apps/x/kustomization.yaml: resources entry ../../../outside leaves the repository root');
    expect(set.refused).toContain('shop-staging');
    expect((await setOf({ 'k/kustomization.yaml': 'patches: [{ path: /etc/patch.yaml }]\n' }, app({ path: 'k' }))).refused).toContain('patches[].path entry /etc/patch.yaml leaves');
  });

  it('refuses a kustomization that is not YAML rather than guess what it reaches', async () => {
    expect((await setOf({ 'k/kustomization.yaml': 'resources: [a\n  b: {' }, app({ path: 'k' }))).refused).toContain('k/kustomization.yaml is not YAML');
  });

  it('adds Argo CD\'s kustomize.components, resolved from the path', async () => {
    const files = { ...shop, 'apps/shop/components/debug/kustomization.yaml': 'kind: Component\n' };
    expect((await setOf(files, app({ path: 'apps/shop/overlays/production', kustomize: { components: ['../../components/debug'] } }))).paths)
      .toEqual(['apps/shop/base', 'apps/shop/components/debug', 'apps/shop/overlays/production']);
  });
});

describe('Helm', () => {
  const charts = {
    'charts/shop/Chart.yaml': 'apiVersion: v2\nname: shop\ndependencies:\n  - name: lib\n    repository: file://../lib\n  - name: redis\n    repository: https://charts.bitnami.com/bitnami\n',
    'charts/shop/templates/deployment.yaml': '',
    'charts/lib/Chart.yaml': 'apiVersion: v2\nname: lib\ndependencies: [{ name: base, repository: "file://../base-lib" }]\n',
    'charts/base-lib/Chart.yaml': 'name: base-lib\ndependencies: [{ name: lib, repository: "file://../lib" }]\n',
    'envs/staging/values.yaml': 'image: shop:2\n',
    'envs/production/values.yaml': 'image: shop:1\n',
    'charts/shop/values-extra.yaml': '',
  };

  it('is the chart, its file:// dependencies transitively (a cycle ends), and value files outside the chart (the issue\'s shape)', async () => {
    expect(await setOf(charts, app({ path: 'charts/shop', helm: { valueFiles: ['../../envs/staging/values.yaml'] } })))
      .toEqual({ kind: 'Helm', paths: ['charts/base-lib', 'charts/lib', 'charts/shop', 'envs/staging/values.yaml'] });
  });

  it('detects Helm by its Chart.yaml without a helm block, and reads a v1 chart\'s requirements.yaml', async () => {
    const v1 = { 'c/Chart.yaml': 'apiVersion: v1\nname: c\n', 'c/requirements.yaml': 'dependencies: [{ name: d, repository: "file://../d" }]\n', 'd/Chart.yaml': 'name: d\n' };
    expect(await setOf(v1, app({ path: 'c' }))).toEqual({ kind: 'Helm', paths: ['c', 'd'] });
  });

  it('resolves an absolute value file from the repository root, skips URLs, expands globs, substitutes the app name', async () => {
    const set = await setOf(charts, app({ path: 'charts/shop', helm: { valueFiles: ['/envs/production/values.yaml', 'https://example.com/values.yaml', '../../envs/*/values.yaml', 'values-extra.yaml', '../../envs/$ARGOCD_APP_NAME.yaml'] } }));
    expect(set.paths).toEqual(['charts/base-lib', 'charts/lib', 'charts/shop', 'envs/production/values.yaml', 'envs/shop-staging.yaml', 'envs/staging/values.yaml']);
  });

  it('includes helm.fileParameters files', async () => {
    expect((await setOf(charts, app({ path: 'charts/shop', helm: { fileParameters: [{ name: 'cfg', path: '../../envs/staging/values.yaml' }] } }))).paths).toContain('envs/staging/values.yaml');
  });

  it('refuses a $ref value file no source declares, and one that leaves the root, naming them', async () => {
    const ref = await setOf(charts, app({ path: 'charts/shop', helm: { valueFiles: ['$values/envs/staging/values.yaml'] } }));
    expect(ref).toMatchObject({ kind: 'Helm', paths: [] });
    expect(ref.refused).toContain('helm.valueFiles entry $values/envs/staging/values.yaml refers to $values, which no source of the Application declares as its ref');
    expect((await setOf(charts, app({ path: 'charts/shop', helm: { valueFiles: ['../../../x.yaml'] } }))).refused).toContain('helm.valueFiles entry ../../../x.yaml leaves the repository root');
    expect((await setOf({ 'c/Chart.yaml': 'dependencies: [{ name: x, repository: "file://../../x" }]\n' }, app({ path: 'c' }))).refused).toContain('c/Chart.yaml: dependency x (file://../../x) leaves the repository root');
  });
});

describe('the manifest-generate-paths annotation', () => {
  const annotated = (value: string, source: Partial<AppSource> = { path: 'apps/shop/overlays/staging' }) => app(source, { annotations: { 'argocd.argoproj.io/manifest-generate-paths': value } });

  it('adds its paths to what is computed: relative to the path, absolute from the root, . the path itself', async () => {
    const files = { ...shop, 'shared/config/a.yaml': '', 'apps/shop/values/x.yaml': '' };
    expect((await setOf(files, annotated('.;/shared/config; ../../values/x.yaml;')))).toEqual({
      kind: 'Kustomize', paths: ['apps/shop/base', 'apps/shop/overlays/staging', 'apps/shop/values/x.yaml', 'shared/config'],
    });
  });

  it('expands a glob item as filepath.Match does (* stays within a directory)', async () => {
    const files = { ...shop, 'shared/a/x.yaml': '', 'shared/b/x.yaml': '', 'shared/b/deep/x.yaml': '' };
    expect((await setOf(files, annotated('/shared/*/x.yaml'))).paths).toEqual(['apps/shop/base', 'apps/shop/overlays/staging', 'shared/a/x.yaml', 'shared/b/x.yaml']);
  });

  it('never narrows the set: an annotation naming only the overlay keeps the base', async () => {
    expect((await setOf(shop, annotated('.'))).paths).toEqual(['apps/shop/base', 'apps/shop/overlays/staging']);
  });

  it('refuses an item leaving the root', async () => {
    expect((await setOf(shop, annotated('../../../../../x'))).refused).toContain('lists ../../../../../x, which leaves the repository root');
  });
});

describe('what is out of scope is refused, naming the source', () => {
  it('multi-source over two repositories, or one at two revisions', async () => {
    const two = await setOf(shop, { name: 'shop', sources: [{ repoURL: URL, path: 'charts/shop' }, { repoURL: 'https://github.com/acme/values.git', ref: 'values' }] });
    expect(two).toMatchObject({ paths: [], refused: 'shop: spec.sources reads two repositories (https://github.com/acme/gitops.git and https://github.com/acme/values.git): one rollback commit cannot restore both' });
    const revisions = await setOf(shop, { name: 'shop', sources: [{ repoURL: URL, path: 'a', targetRevision: 'main' }, { repoURL: `${URL}`, path: 'b', targetRevision: 'release' }] });
    expect(revisions.refused).toContain('deploys one repository at main and release');
  });

  it('a Helm repository chart, a plugin, two declared types, an absolute path, no source', async () => {
    expect((await setOf(shop, app({ chart: 'redis', repoURL: 'https://charts.bitnami.com/bitnami' }))).refused).toContain('chart redis: a chart from a Helm repository has no path in Git');
    expect((await setOf(shop, app({ path: 'x', plugin: { name: 'p' } }))).refused).toContain('config management plugin');
    expect((await setOf(shop, app({ path: 'x', helm: {}, kustomize: {} }))).refused).toContain('several types');
    expect((await setOf(shop, app({ path: '/etc' }))).refused).toContain('the path is absolute');
    expect((await setOf(shop, { name: 'x' })).refused).toContain('spec.source is missing');
  });

  it('reads nothing for what it refuses before the type is known', async () => {
    const { reader, asked } = repoOf(shop);
    await sourceSet(reader, { name: 'shop', sources: [{ repoURL: URL, path: 'a' }, { repoURL: 'https://github.com/acme/other.git', path: 'b' }] }, SHA);
    expect(asked).toEqual([]);
  });
});

describe('a multi-source Application in one repository (issue 18 §1)', () => {
  const files = {
    'charts/shop/Chart.yaml': 'apiVersion: v2\nname: shop\n',
    'charts/shop/templates/deployment.yaml': '',
    'envs/staging/values.yaml': 'image: v1\n',
  };

  it('is the union of its Git sources with a path, $ref value files resolved from the ref source\'s root', async () => {
    const set = await setOf(files, { name: 'shop', sources: [
      { repoURL: URL, path: 'charts/shop', helm: { valueFiles: ['$values/envs/staging/values.yaml'] } },
      { repoURL: 'git@github.com:acme/gitops', ref: 'values' },
      { repoURL: 'https://charts.example.com', chart: 'redis', targetRevision: '9.1.0' },
    ] });
    expect(set.refused).toBeUndefined();
    expect(set).toMatchObject({ kind: 'Helm' });
    expect(set.paths).toContain('charts/shop');
    expect(set.paths).toContain('envs/staging/values.yaml');
    expect(set.paths.every((p) => !p.startsWith('redis'))).toBe(true);
  });

  it('refuses a $ref to a source of another repository', async () => {
    const set = await setOf(files, { name: 'shop', sources: [
      { repoURL: URL, path: 'charts/shop', helm: { valueFiles: ['$values/envs/staging/values.yaml'] } },
      { repoURL: URL, ref: 'values', targetRevision: 'HEAD' },
      { repoURL: 'https://github.com/acme/values.git', ref: 'other' },
    ] });
    expect(set.refused).toContain('spec.sources reads two repositories');
  });
});

it('reads the repository through the reader only, once per listing within one computation', async () => {
  const { reader, asked } = repoOf(shop);
  await sourceSet(reader, app({ path: 'apps/shop/overlays/staging' }), SHA);
  expect(new Set(asked.filter((a) => a.startsWith('list '))).size).toBe(asked.filter((a) => a.startsWith('list ')).length);
  expect(asked).toContain('read apps/shop/base/kustomization.yaml');
});

describe('one repository, however its URL is spelled', () => {
  it('is host and path without scheme, user or .git; another host or path prefix is another repository', () => {
    expect(repositoryKey('https://github.com/Acme/GitOps.git')).toBe('github.com/acme/gitops');
    expect(sameRepository('https://github.com/acme/gitops.git', 'git@github.com:acme/gitops')).toBe(true);
    expect(sameRepository('ssh://git@github.com/acme/gitops/', 'https://github.com/acme/gitops')).toBe(true);
    expect(sameRepository('https://github.com/acme/gitops', 'https://ghe.example.com/acme/gitops')).toBe(false);
    expect(sameRepository('git://127.0.0.1:9418/test-a/acme/gitops.git', 'git://127.0.0.1:9418/test-b/acme/gitops.git')).toBe(false);
  });
});
