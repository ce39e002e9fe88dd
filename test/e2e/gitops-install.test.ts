// The operator installed the GitOps way (config/samples/argocd-application.yaml):
// real Argo CD 3.6 on the stack's GitOps cluster renders charts/ai-operator with
// the real helm from a git repository holding this checkout's chart, crds/ and
// config/ (the chart's links included), and syncs it in waves: the CRDs and the
// approval policy first. The operator's pod lands on KWOK's node, which runs no
// container: what is checked is the objects, their order and Argo CD's verdict.
//
// Shared-cluster care: the binding is scoped to this test's namespace
// (admission.namespaceSelector), so other tests' approvals are judged as before,
// and the Application has no finalizer, so deleting it never deletes the CRDs.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { binaries } from '../../dev/stack/binaries.ts';
import type { StackEndpoints } from '../../dev/stack/index.ts';
import { kubectlOk, repoRoot } from './support/kube.ts';
import { eventually } from './support/operator.ts';

const run = promisify(execFile);
const stack = inject('stack');
type Json = Record<string, any>;
const idOf = (o: Json) => `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

describe.skipIf(!stack.argocd)('GitOps install on real Argo CD', () => {
  it('config/samples/argocd-application.yaml syncs the chart Healthy, the CRDs and the approval policy in the first wave', async () => {
    const argocd = stack.argocd!;
    const gitops: StackEndpoints = { ...stack, kubeUrl: argocd.kubeUrl, kubeconfig: argocd.kubeconfig, kubectl: argocd.kubectl };
    const id = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
    const target = `gitops-install-${id}`;

    // Given this checkout's chart, crds/ and config/ in a repository Argo CD clones (links kept as links)
    const work = mkdtempSync(join(tmpdir(), 'ai-operator-gitops-install-'));
    for (const path of ['charts', 'crds', 'config']) cpSync(join(repoRoot, path), join(work, path), { recursive: true, verbatimSymlinks: true });
    const git = (args: string[], cwd = work) => run('git', ['-c', 'user.name=e2e', '-c', 'user.email=e2e@example.com', ...args], { cwd });
    await git(['init', '-q', '-b', 'main']);
    await git(['add', '-A']);
    await git(['commit', '-qm', 'ai-operator chart']);
    const bare = join(argocd.gitRoot, `gitops-install-${id}`, 'ai-operator.git');
    mkdirSync(join(argocd.gitRoot, `gitops-install-${id}`), { recursive: true });
    await run('git', ['clone', '-q', '--bare', work, bare]);
    const repoURL = `${argocd.gitUrl}/gitops-install-${id}/ai-operator.git`;

    // And the sample Application, pointed at it, into this test's namespace
    const app = parse(readFileSync(join(repoRoot, 'config/samples/argocd-application.yaml'), 'utf8')) as Json;
    expect(app.spec.source.path).toBe('charts/ai-operator');
    expect(app.spec.syncPolicy.syncOptions).toEqual(expect.arrayContaining(['CreateNamespace=true', 'ServerSideApply=true']));
    expect(app.metadata.finalizers).toBeUndefined();
    app.metadata = { name: `ai-operator-${id}`, namespace: argocd.namespace };
    app.spec.source.repoURL = repoURL;
    app.spec.source.targetRevision = 'main';
    app.spec.destination.namespace = target;
    app.spec.source.helm.valuesObject.admission = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': target } } };
    // The spool claim needs a volume (no provisioner here): one made for it.
    await kubectlOk(gitops, ['apply', '--server-side', '-f', '-'], JSON.stringify({
      apiVersion: 'v1', kind: 'PersistentVolume', metadata: { name: `spool-${id}` },
      spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], hostPath: { path: `/tmp/spool-${id}` }, claimRef: { namespace: target, name: 'ai-operator-audit-spool' } },
    }));
    const started = Date.now();
    await kubectlOk(gitops, ['apply', '--server-side', '-f', '-'], JSON.stringify(app));

    // When Argo CD has synced it
    const status = async () => (JSON.parse(await kubectlOk(gitops, ['get', 'application', '-n', argocd.namespace, app.metadata.name, '-o', 'json'])) as Json).status ?? {};
    const synced = await eventually('the Application Synced and Healthy', async () => {
      const s = await status();
      return s.sync?.status === 'Synced' && s.health?.status === 'Healthy' && s.operationState?.phase === 'Succeeded' ? s : undefined;
    }, 180_000, 1000).catch(async (error: Error) => { throw new Error(`${error.message}: ${JSON.stringify(await status()).slice(0, 4000)}`); });
    console.log(`gitops install: Synced and Healthy in ${((Date.now() - started) / 1000).toFixed(1)} s, revision ${synced.sync.revision}`);

    // Then it holds exactly what helm renders with those values
    const { helm } = await binaries('helm');
    const values = join(work, 'values.json');
    writeFileSync(values, JSON.stringify(app.spec.source.helm.valuesObject));
    const { stdout } = await run(helm!, ['template', app.spec.source.helm.releaseName, join(repoRoot, 'charts/ai-operator'), '-n', target, '--include-crds', '--kube-version', '1.33.0', '-f', values], { maxBuffer: 32 << 20 });
    const rendered = parseAllDocuments(stdout).map((d) => d.toJS() as Json).filter(Boolean);
    const resources = synced.resources as Json[];
    expect(resources.map((r) => `${r.kind}/${r.namespace ? `${r.namespace}/` : ''}${r.name}`).sort()).toEqual(rendered.map(idOf).sort());
    expect(resources.filter((r) => r.status !== 'Synced')).toEqual([]);
    // Every object is live, with the chart's labels
    const live = JSON.parse(await kubectlOk(gitops, ['get', '-o', 'json', '-f', '-'], rendered.map((o) => JSON.stringify(o)).join('\n'))) as { items: Json[] };
    expect(live.items.map(idOf).sort()).toEqual(rendered.map(idOf).sort());
    expect(live.items.find((o) => o.kind === 'Deployment')!.metadata.labels['app.kubernetes.io/managed-by']).toBe('Helm');
    expect(live.items.find((o) => o.kind === 'ConfigMap')!.data.GITHUB_ORG).toBe('my-org');
    expect(live.items.find((o) => o.kind === 'ValidatingAdmissionPolicyBinding')!.spec.matchResources.namespaceSelector.matchLabels).toEqual({ 'kubernetes.io/metadata.name': target });

    // And in waves: the approval policy and binding were there before anything of wave 1 was created
    const wave = (o: Json) => o.metadata.annotations?.['argocd.argoproj.io/sync-wave'] ?? '0';
    const createdAt = (o: Json) => Date.parse(o.metadata.creationTimestamp as string);
    const mine = live.items.filter((o) => o.kind !== 'CustomResourceDefinition' && o.kind !== 'ValidatingAdmissionPolicy');
    const first = mine.filter((o) => wave(o) === '0');
    // Wave 1 as this sync created it: the namespaced objects (cluster-scoped ones such as the ClusterRoles may have been
    // created on this shared cluster before, by another install).
    const second = mine.filter((o) => wave(o) === '1' && o.metadata.namespace === target);
    expect(first.map((o) => o.kind)).toEqual(['ValidatingAdmissionPolicyBinding']);
    expect(second.map((o) => o.kind).sort()).toEqual(expect.arrayContaining(['ConfigMap', 'Deployment', 'Service']));
    console.log(`gitops install: wave 0 created at ${first.map((o) => o.metadata.creationTimestamp).join(', ')}, wave 1 from ${second.map((o) => o.metadata.creationTimestamp).sort()[0]}`);
    expect(Math.max(...first.map(createdAt))).toBeLessThan(Math.min(...second.map(createdAt)));
    // The CRDs are the ones crds/ holds, served
    for (const crd of rendered.filter((o) => o.kind === 'CustomResourceDefinition')) {
      await kubectlOk(gitops, ['wait', '--for=condition=Established', '--timeout=30s', `crd/${crd.metadata.name}`]);
    }

    // Deleting the Application (no finalizer) leaves the installation, CRDs included
    await kubectlOk(gitops, ['delete', 'application', '-n', argocd.namespace, app.metadata.name]);
    await eventually('the Application gone', async () => !(await kubectlOk(gitops, ['get', 'applications', '-n', argocd.namespace, '-o', 'name'])).includes(app.metadata.name), 30_000);
    expect((await kubectlOk(gitops, ['get', 'deployment', 'ai-operator', '-n', target, '-o', 'name'])).trim()).toBe('deployment.apps/ai-operator');
  }, 300_000);
});
