// The simulator renders Kustomize and Helm sources with the real kustomize and helm
// (provision.sh's, as on the real repo server), over a real bare repository.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploymentsIn } from './rules.ts';
import { renderSource, sourceTypeOf } from './render.ts';

let root: string;
let bare: string;
let head: string;
const app = { name: 'shop-staging', namespace: 'shop' };

const deployment = (image: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers: [{name: shop, image: "${image}"}]
`;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'argocd-sim-render-'));
  bare = join(root, 'acme', 'gitops.git');
  execFileSync('git', ['init', '-q', '--bare', '--initial-branch=main', bare]);
  const work = join(root, 'work');
  execFileSync('git', ['clone', '-q', bare, work], { stdio: 'ignore' });
  const files: Record<string, string> = {
    'apps/shop/base/deployment.yaml': deployment('registry.example/shop:v1'),
    'apps/shop/base/kustomization.yaml': 'resources: [deployment.yaml]\n',
    'apps/shop/overlays/staging/kustomization.yaml': 'resources: [../../base]\nnamespace: shop-staging\ncommonAnnotations: {stage: staging}\n',
    'apps/plain/deployment.yaml': deployment('registry.example/plain:v1'),
    'charts/shop/Chart.yaml': 'apiVersion: v2\nname: shop\nversion: 0.1.0\n',
    'charts/shop/values.yaml': 'image: registry.example/shop:chart-default\nreplicas: 1\n',
    'charts/shop/templates/deployment.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec:\n      containers: [{name: shop, image: "{{ .Values.image }}"}]\n',
    'envs/staging/values.yaml': 'image: registry.example/shop:v2\nreplicas: 3\n',
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(work, path)), { recursive: true });
    writeFileSync(join(work, path), content);
  }
  const git = (...args: string[]) => execFileSync('git', ['-C', work, ...args], { encoding: 'utf8' }).trim();
  git('add', '-A');
  git('-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'shop');
  git('push', '-q', 'origin', 'HEAD:main');
  head = git('rev-parse', 'HEAD');
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('rendering a source as Argo CD\'s repo server does', () => {
  it('detects the type as Argo CD does: declared, else Chart.yaml, else a kustomization, else a directory', async () => {
    expect(await sourceTypeOf(bare, head, { path: 'apps/shop/overlays/staging' })).toBe('Kustomize');
    expect(await sourceTypeOf(bare, head, { path: 'charts/shop' })).toBe('Helm');
    expect(await sourceTypeOf(bare, head, { path: 'apps/plain' })).toBe('Directory');
    expect(await sourceTypeOf(bare, head, { path: 'apps/plain', helm: {} })).toBe('Helm');
    expect(await sourceTypeOf(bare, head, { path: 'no/such/path' })).toBe('Directory');
  });

  it('builds a Kustomize overlay with its base outside the path (kustomize build)', async () => {
    const { type, files } = await renderSource(bare, head, { path: 'apps/shop/overlays/staging' }, app);
    expect(type).toBe('Kustomize');
    const [d] = deploymentsIn(files, app.namespace);
    expect(d).toMatchObject({ name: 'shop', namespace: 'shop-staging', replicas: 2 });
    expect(d!.object.metadata?.annotations).toEqual({ stage: 'staging' });
    expect(JSON.stringify(d!.object)).toContain('registry.example/shop:v1');
  });

  it('templates a Helm chart with a values file outside the chart (helm template --values)', async () => {
    const plain = await renderSource(bare, head, { path: 'charts/shop' }, app);
    expect(deploymentsIn(plain.files, app.namespace)).toMatchObject([{ name: 'shop-staging', namespace: 'shop', replicas: 1 }]);
    const staged = await renderSource(bare, head, { path: 'charts/shop', helm: { valueFiles: ['../../envs/staging/values.yaml'] } }, app);
    expect(staged.type).toBe('Helm');
    const [d] = deploymentsIn(staged.files, app.namespace);
    expect(d).toMatchObject({ name: 'shop-staging', replicas: 3 });
    expect(JSON.stringify(d!.object)).toContain('registry.example/shop:v2');
  });

  it('reads a plain directory as it is, and says which render failed and why', async () => {
    expect((await renderSource(bare, head, { path: 'apps/plain' }, app)).files.map((f) => f.file)).toEqual(['apps/plain/deployment.yaml']);
    await expect(renderSource(bare, head, { path: 'charts/shop', helm: { valueFiles: ['missing.yaml'] } }, app)).rejects.toThrow(/^rendering Helm source charts\/shop at [0-9a-f]{7} failed: .*missing\.yaml/);
  });
});
