// The Helm chart (charts/ai-operator, README "Install") with the real helm
// (dev/scripts/provision.sh helm): lint, template, the same objects as
// `kubectl kustomize config/default` but for the documented differences, the
// CRDs from crds/ and nothing else, bad values refused by name; then a server-side
// dry run, install, upgrade and uninstall on a real API server.
//
// Like install.test.ts, what is installed goes into a private kube-apiserver
// (with its own etcd): the chart binds the approval admission policy
// cluster-wide, which on the shared test API server would refuse every other
// test's admin-written approval annotations.
import { execFile } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { argocdCmData, argoHelmValues } from '../../dev/scripts/argocd-cm.ts';
import { binaries } from '../../dev/stack/binaries.ts';
import { startEtcd } from '../../dev/stack/etcd.ts';
import { startKube, useExistingCluster } from '../../dev/stack/kube.ts';
import { LOG_LEVELS } from '../../src/observability/log.ts';
import { kubectl, kubectlOk, repoRoot } from './support/kube.ts';
import type { Stopper } from './support/rollback-scenario.ts';

const run = promisify(execFile);
const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

type Json = Record<string, any>;
const CHART = 'charts/ai-operator';
const NS = 'ai-operator-system';
const KUBE_VERSION = '1.33.0';
const read = (file: string) => readFileSync(join(repoRoot, file), 'utf8');
const docs = (text: string): Json[] => parseAllDocuments(text).map((d) => d.toJS() as Json).filter(Boolean);
const idOf = (o: Json) => `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

let helmBin = '';
beforeAll(async () => { helmBin = (await binaries('helm')).helm!; }, 20 * 60_000);

interface HelmResult { stdout: string; stderr: string; code: number }
async function helm(args: string[], env: Record<string, string> = {}): Promise<HelmResult> {
  try {
    const { stdout, stderr } = await run(helmBin, args, { cwd: repoRoot, maxBuffer: 32 << 20, timeout: 180_000, env: { ...process.env, ...env } });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}
/** Helm's notes on the links it follows (crds/, files/): expected, and nothing else on stderr. */
const withoutLinkNotes = (stderr: string) => stderr.split('\n').filter((l) => l.trim() && !/walk\.go:\d+: found symbolic link in path: .* Contents of linked file included and used/.test(l)).join('\n');
async function helmOk(args: string[]): Promise<string> {
  const result = await helm(args);
  if (result.code !== 0) throw new Error(`helm ${args.join(' ')} failed: ${result.stderr.trim()}`);
  expect(withoutLinkNotes(result.stderr)).toBe('');
  return result.stdout;
}

const template = async (...set: string[]) => docs(await helmOk(['template', 'ai-operator', CHART, '-n', NS, '--include-crds', '--kube-version', KUBE_VERSION, ...set.flatMap((s) => ['--set', s])]));
const kustomize = async (dir: string) => docs(await kubectlOk(stack, ['kustomize', dir]));

/**
 * README "Install" lists the differences between the chart and config/: these,
 * and only these, are taken out before the two renders are compared.
 *  - no Namespace object (`helm install --create-namespace`, or Argo CD's CreateNamespace=true);
 *  - Helm's standard labels beside config/'s own;
 *  - the Argo CD sync wave annotation on every object (values: argocd.syncWaves);
 *  - `helm.sh/resource-policy: keep` on the audit spool claim (values: auditSpool.keepOnUninstall);
 *  - the pod template's checksum/config annotation (a configuration change rolls the pods).
 * And one of YAML parsers, not of content: Helm's reads a more-indented line inside a
 * folded (`>-`) scalar of config/ as a space where kustomize keeps the line break, so
 * the approval policy's CEL expressions are compared with their whitespace collapsed.
 */
const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by'];
function normalised(objects: Json[]): Record<string, Json> {
  const strip = (meta: Json | undefined, annotations: string[]) => {
    if (!meta) return;
    for (const l of HELM_LABELS) delete meta.labels?.[l];
    for (const a of annotations) delete meta.annotations?.[a];
    if (meta.annotations && Object.keys(meta.annotations).length === 0) delete meta.annotations;
  };
  const out: Record<string, Json> = {};
  for (const o of structuredClone(objects)) {
    if (o.kind === 'Namespace') continue;
    strip(o.metadata, ['argocd.argoproj.io/sync-wave', 'helm.sh/resource-policy']);
    strip(o.spec?.template?.metadata, ['checksum/config']);
    if (o.kind === 'ValidatingAdmissionPolicy') {
      for (const entry of [...o.spec.variables, ...o.spec.validations] as Json[]) {
        for (const key of ['expression', 'messageExpression']) if (typeof entry[key] === 'string') entry[key] = entry[key].replace(/\s+/g, ' ');
      }
    }
    out[idOf(o)] = o;
  }
  return out;
}

describe('the chart, rendered', () => {
  it('helm lint passes, and the CRDs are crds/ itself: a link Helm follows, rendering exactly the CRDs crds/kustomization.yaml lists', async () => {
    const lint = await helm(['lint', CHART, '--strict', '--kube-version', KUBE_VERSION]);
    console.log(`helm lint --strict\n${lint.stdout}`);
    expect(lint.code).toBe(0);
    expect(lint.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(lint.stdout).not.toMatch(/\[(ERROR|WARNING)\]/);

    // One copy: the chart's crds/ is a link to the top-level crds/, nothing copied.
    expect(lstatSync(join(repoRoot, CHART, 'crds')).isSymbolicLink()).toBe(true);
    expect(realpathSync(join(repoRoot, CHART, 'crds'))).toBe(realpathSync(join(repoRoot, 'crds')));
    // And every file the chart reads from files/ is a link into config/.
    for (const file of readdirSync(join(repoRoot, CHART, 'files'))) {
      expect(lstatSync(join(repoRoot, CHART, 'files', file)).isSymbolicLink(), file).toBe(true);
      expect(realpathSync(join(repoRoot, CHART, 'files', file)).startsWith(realpathSync(join(repoRoot, 'config')) + '/'), file).toBe(true);
    }
    // What Helm installs as CRDs is what kustomize takes from crds/, document for document.
    const listed = (parse(read('crds/kustomization.yaml')) as { resources: string[] }).resources;
    expect(readdirSync(join(repoRoot, 'crds')).filter((f) => f !== 'kustomization.yaml').sort()).toEqual([...listed].sort());
    // (`helm show crds` joins the files without a document separator: what is installed is what template renders.)
    const fromHelm = (await template()).filter((o) => o.kind === 'CustomResourceDefinition');
    expect(fromHelm.map((o) => o.kind)).toEqual(listed.map(() => 'CustomResourceDefinition'));
    const fromKustomize = await kustomize('config/crd');
    const byName = (list: Json[]) => Object.fromEntries(list.map((o) => [o.metadata.name, o]));
    expect(byName(fromHelm)).toEqual(byName(fromKustomize));

    // `helm package` (what an OCI or HTTP chart repository serves) resolves the links: the archive renders the same.
    const out = mkdtempSync(join(tmpdir(), 'ai-operator-chart-package-'));
    await helmOk(['package', CHART, '-d', out]);
    const archive = join(out, `ai-operator-${(parse(read(`${CHART}/Chart.yaml`)) as Json).version}.tgz`);
    const { stdout: listing } = await run('tar', ['tzf', archive]);
    expect(listing.split('\n').filter((f) => f.startsWith('ai-operator/crds/')).sort()).toEqual(listed.map((f) => `ai-operator/crds/${f}`).sort());
    const fromArchive = docs((await helm(['template', 'ai-operator', archive, '-n', NS, '--include-crds', '--kube-version', KUBE_VERSION])).stdout);
    expect(fromArchive).toEqual(await template());
  });

  it('renders the objects of config/default, but for the differences README "Install" documents', async () => {
    const chart = await template();
    const base = await kustomize('config/default');
    expect(base.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name)).toEqual([NS]);
    const [c, k] = [normalised(chart), normalised(base)];
    expect(Object.keys(c).sort()).toEqual(Object.keys(k).sort());
    for (const id of Object.keys(k)) expect(c[id], id).toEqual(k[id]);
    // What was taken out is what README "Install" says, on the objects it says.
    const deployment = chart.find((o) => o.kind === 'Deployment')!;
    expect(deployment.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'Helm', 'app.kubernetes.io/instance': 'ai-operator' });
    expect(deployment.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
    expect(chart.find((o) => o.kind === 'PersistentVolumeClaim')!.metadata.annotations['helm.sh/resource-policy']).toBe('keep');
    const readme = read('README.md');
    for (const phrase of ['--create-namespace', 'helm.sh/resource-policy: keep', 'checksum/config', 'argocd.argoproj.io/sync-wave']) expect(readme).toContain(phrase);
  });

  it('ha.enabled renders config/overlays/ha (a StatefulSet of 3, a claim per replica, a PodDisruptionBudget); monitoring.enabled adds config/prometheus', async () => {
    const ha = normalised(await template('ha.enabled=true'));
    const overlay = normalised(await kustomize('config/overlays/ha'));
    expect(Object.keys(ha).sort()).toEqual(Object.keys(overlay).sort());
    for (const id of Object.keys(overlay)) expect(ha[id], id).toEqual(overlay[id]);

    const monitoring = normalised(await template('monitoring.enabled=true'));
    const withAlerts = normalised(await kustomize('config/overlays/monitoring'));
    expect(Object.keys(monitoring).sort()).toEqual(Object.keys(withAlerts).sort());
    for (const id of Object.keys(withAlerts)) expect(monitoring[id], id).toEqual(withAlerts[id]);
  });

  it('values: one config key per variable src/config.ts reads (the rest are the Secret\'s and the pod\'s), defaults as config/manager/config.yaml, and every value reaches its object', async () => {
    const values = parse(read(`${CHART}/values.yaml`)) as Json;
    const schema = JSON.parse(read(`${CHART}/values.schema.json`)) as Json;
    // Every reader call of src/config.ts (r.integer('POLL_INTERVAL_SEC', ...), this.secret('GITHUB_TOKEN'), ...).
    const variables = new Set([...read('src/config.ts').matchAll(/\b(?:r|this)\.\w+\('([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!));
    expect(variables.size).toBeGreaterThan(20);
    const covered = [...Object.keys(values.config), ...Object.keys(values.secret.keys), 'AUDIT_FALLBACK_DIR', 'HTTP_PORT'];
    expect([...covered].sort()).toEqual([...variables].sort());
    expect(values.config).toEqual((parse(read('config/manager/config.yaml')) as Json).data);
    expect(Object.keys(schema.properties.config.properties).sort()).toEqual(Object.keys(values.config).sort());
    expect(schema.properties.config.properties.LOG_LEVEL.enum).toEqual([...LOG_LEVELS]);

    const set = await template(
      'config.GITHUB_ORG=my-org', 'config.DRY_RUN=true', 'image.repository=registry.example.com/ai-operator', 'image.tag=0.1.1',
      'secret.name=my-secrets', 'resources.limits.memory=2Gi', 'probes.readiness.periodSeconds=7', 'auditSpool.size=5Gi',
      'auditSpool.storageClassName=fast', 'serviceAccount.annotations.team=sre', 'monitoring.enabled=true', 'monitoring.labels.release=kps',
      'argocd.syncWaves=false',
    );
    const byKind = (kind: string) => set.find((o) => o.kind === kind)!;
    expect(byKind('ConfigMap').data).toMatchObject({ GITHUB_ORG: 'my-org', DRY_RUN: 'true', LOG_LEVEL: 'INFO' });
    const container = byKind('Deployment').spec.template.spec.containers[0];
    expect(container.image).toBe('registry.example.com/ai-operator:0.1.1');
    expect((container.env as Json[]).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom.secretKeyRef.name)).toEqual(Array(7).fill('my-secrets'));
    expect(container.resources.limits.memory).toBe('2Gi');
    expect(container.readinessProbe.periodSeconds).toBe(7);
    expect(byKind('PersistentVolumeClaim').spec).toMatchObject({ storageClassName: 'fast', resources: { requests: { storage: '5Gi' } } });
    expect(byKind('ServiceAccount').metadata.annotations).toEqual({ team: 'sre' });
    expect(byKind('ServiceMonitor').metadata.labels.release).toBe('kps');
    expect(byKind('PrometheusRule').metadata.labels.release).toBe('kps');
    // Without sync waves no object carries one.
    expect(set.filter((o) => o.metadata.annotations?.['argocd.argoproj.io/sync-wave'])).toEqual([]);
    // A configuration change changes the pod template (a restart: src/config.ts reads it once).
    const plain = (await template()).find((o) => o.kind === 'Deployment')!;
    expect(byKind('Deployment').spec.template.metadata.annotations['checksum/config']).not.toBe(plain.spec.template.metadata.annotations['checksum/config']);
    // With sync waves (the default), the CRDs (no annotation: wave 0) and the approval policy come first.
    const waves = Object.fromEntries((await template()).map((o) => [idOf(o), o.metadata.annotations?.['argocd.argoproj.io/sync-wave'] ?? '0']));
    const first = Object.entries(waves).filter(([, w]) => w === '0').map(([id]) => id.split('/')[0]).sort();
    expect(first).toEqual(['CustomResourceDefinition', 'CustomResourceDefinition', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
    expect(new Set(Object.values(waves))).toEqual(new Set(['0', '1']));
  });

  it('bad values are refused, naming the value', async () => {
    const refused = async (set: string[], message: RegExp) => {
      const result = await helm(['template', 'x', CHART, '--kube-version', KUBE_VERSION, ...set.flatMap((s) => ['--set', s])]);
      expect(result.code, set.join(' ')).not.toBe(0);
      expect(result.stderr, set.join(' ')).toMatch(message);
    };
    await refused(['config.GITHUB_ORGG=acme'], /additional properties 'GITHUB_ORGG' not allowed/);
    await refused(['config.GITHUB_ORG=not an org'], /\/config\/GITHUB_ORG/);
    await refused(['config.LOG_LEVEL=LOUD'], /\/config\/LOG_LEVEL/);
    await refused(['replicas=3'], /replicas=3 needs ha.enabled=true/);
    await refused(['ha.enabled=yes'], /\/ha\/enabled/);
    await refused(['auditSpool.size=lots'], /\/auditSpool\/size/);
    await refused(['config.APPROVAL_POLICY_NAME=other'], /config.APPROVAL_POLICY_NAME must be ai-operator-approvals while admission.enabled=true/);
    await refused(['secret.keys.GITHUB_TOKN=x'], /additional properties 'GITHUB_TOKN' not allowed/);
    // And on a Kubernetes without ValidatingAdmissionPolicy v1
    const old = await helm(['template', 'x', CHART, '--kube-version', '1.29.0']);
    expect(old.stderr).toMatch(/chart requires kubeVersion: >=1.30.0-0/);
  });

  it('argo-cd-values.yaml carries config/argocd\'s argocd-cm entries for argo-helm\'s argo-cd chart, as generated (node dev/scripts/argocd-cm.ts --write)', () => {
    const text = read(`${CHART}/argo-cd-values.yaml`);
    expect(text).toBe(argoHelmValues());
    expect((parse(text) as Json).configs.cm).toEqual(argocdCmData());
    expect((parse(read('config/argocd/argocd-cm-patch.yaml')) as Json).data).toEqual(argocdCmData());
  });
});

describe.skipIf(useExistingCluster())('helm on a real API server', () => {
  it('server-side dry run, install, upgrade (no object recreated, only the changed ones touched) and uninstall (the CRDs and the spool claim stay)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ai-operator-chart-'));
    const etcd = await startEtcd(dir, 'etcd-chart');
    stoppers.push(() => etcd.process.stop());
    const kube = await startKube(dir, etcd.endpoint);
    stoppers.push(() => kube.process!.stop());
    const admin = { kubectl: kube.kubectl, kubeconfig: kube.kubeconfig };
    const h = (args: string[]) => helmOk([...args, '--kubeconfig', kube.kubeconfig]);

    // Given the prometheus-operator CRDs (the chart's monitoring objects are checked against them)
    const { stdout: crdPaths } = await run('bash', [join(repoRoot, 'dev/scripts/provision.sh'), 'prometheus-operator-crds'], { timeout: 10 * 60_000 });
    for (const line of crdPaths.trim().split('\n')) await kubectlOk(admin, ['apply', '--server-side', '-f', line.split('=')[1]!]);

    // When everything the chart renders (monitoring too) is dry-run on the server, CRDs applied first as Helm does
    const rendered = await helmOk(['template', 'ai-operator', CHART, '-n', NS, '--include-crds', '--kube-version', KUBE_VERSION, '--set', 'monitoring.enabled=true']);
    await kubectlOk(admin, ['create', 'namespace', NS]);
    const all = docs(rendered);
    const crds = all.filter((o) => o.kind === 'CustomResourceDefinition');
    const dry = await kubectl(admin, ['apply', '--server-side', '--dry-run=server', '-f', '-'], all.filter((o) => !crds.includes(o)).map((o) => JSON.stringify(o)).join('\n'));
    console.log(`helm template | kubectl apply --server-side --dry-run=server\n${dry.stdout}${dry.stderr}`);
    expect(dry.stderr).toBe('');
    expect(dry.stdout.trim().split('\n')).toHaveLength(all.length - crds.length);
    expect(dry.code).toBe(0);

    // And the chart is installed as README "Install" says
    const started = Date.now();
    console.log(await h(['install', 'ai-operator', CHART, '-n', NS, '--set', 'config.GITHUB_ORG=acme', '--set', 'monitoring.enabled=true']));
    console.log(`helm install: ${Date.now() - started} ms`);
    const manifest = async () => docs(await h(['get', 'manifest', 'ai-operator', '-n', NS]));
    const live = async () => {
      const objects = await manifest();
      const list = JSON.parse(await kubectlOk(admin, ['get', '-o', 'json', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n'))) as { items: Json[] };
      return Object.fromEntries(list.items.map((o) => [idOf(o), { uid: o.metadata.uid as string, version: o.metadata.resourceVersion as string, o }]));
    };
    const installed = await live();
    expect(Object.keys(installed).sort()).toEqual(all.filter((o) => !crds.includes(o)).map(idOf).sort());
    // Helm installed the CRDs from crds/ and they are served.
    await kubectlOk(admin, ['wait', '--for=condition=Established', '--timeout=60s', ...crds.map((o) => `crd/${o.metadata.name}`)]);
    expect(installed[`ConfigMap/${NS}/ai-operator-config`]!.o.data.GITHUB_ORG).toBe('acme');

    // Then an upgrade that changes the configuration and the resources replaces no object, and touches only those it changes
    console.log(await h(['upgrade', 'ai-operator', CHART, '-n', NS, '--set', 'config.GITHUB_ORG=acme', '--set', 'monitoring.enabled=true',
      '--set', 'config.LOG_LEVEL=DEBUG', '--set', 'resources.limits.memory=2Gi']));
    const upgraded = await live();
    expect(Object.keys(upgraded).sort()).toEqual(Object.keys(installed).sort());
    for (const [id, now] of Object.entries(upgraded)) expect(`${id} ${now.uid}`).toBe(`${id} ${installed[id]!.uid}`);
    const changed = Object.keys(upgraded).filter((id) => upgraded[id]!.version !== installed[id]!.version).sort();
    expect(changed).toEqual([`ConfigMap/${NS}/ai-operator-config`, `Deployment/${NS}/ai-operator`]);
    const deployment = upgraded[`Deployment/${NS}/ai-operator`]!.o;
    expect(deployment.spec.template.spec.containers[0].resources.limits.memory).toBe('2Gi');
    expect(deployment.spec.template.metadata.annotations['checksum/config']).not.toBe(installed[`Deployment/${NS}/ai-operator`]!.o.spec.template.metadata.annotations['checksum/config']);
    expect(upgraded[`ConfigMap/${NS}/ai-operator-config`]!.o.data.LOG_LEVEL).toBe('DEBUG');
    // And an upgrade with the same values changes nothing at all
    await h(['upgrade', 'ai-operator', CHART, '-n', NS, '--reuse-values']);
    const again = await live();
    expect(Object.fromEntries(Object.entries(again).map(([id, v]) => [id, `${v.uid} ${v.version}`])))
      .toEqual(Object.fromEntries(Object.entries(upgraded).map(([id, v]) => [id, `${v.uid} ${v.version}`])));
    // A bad upgrade is refused before anything is sent
    const bad = await helm(['upgrade', 'ai-operator', CHART, '-n', NS, '--reuse-values', '--set', 'replicas=2', '--kubeconfig', kube.kubeconfig]);
    expect(bad.stderr).toMatch(/replicas=2 needs ha.enabled=true/);
    expect(Object.fromEntries(Object.entries(await live()).map(([id, v]) => [id, v.version])))
      .toEqual(Object.fromEntries(Object.entries(again).map(([id, v]) => [id, v.version])));

    // When it is uninstalled
    const uninstall = await h(['uninstall', 'ai-operator', '-n', NS]);
    console.log(uninstall);
    // Then every object is gone but the spool claim (it may hold audit records not yet shipped) and the CRDs (Helm never deletes crds/)
    expect(uninstall).toMatch(/These resources were kept due to the resource policy:\s*\[PersistentVolumeClaim\] ai-operator-audit-spool/);
    const left = await kubectl(admin, ['get', '-o', 'name', '-f', '-'], all.filter((o) => !crds.includes(o)).map((o) => JSON.stringify(o)).join('\n'));
    expect(left.stdout.trim().split('\n').filter(Boolean)).toEqual(['persistentvolumeclaim/ai-operator-audit-spool']);
    expect(left.stderr.trim().split('\n')).toHaveLength(all.length - crds.length - 1);
    expect((await kubectlOk(admin, ['get', 'crd', '-o', 'name'])).split('\n').filter((l) => l.includes('ai-operator.io')).sort())
      .toEqual(crds.map((o) => `customresourcedefinition.apiextensions.k8s.io/${o.metadata.name}`).sort());
  }, 240_000);
});
