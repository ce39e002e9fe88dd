// The install (config/, README "Install") on a real API server, and the image
// definition against what the tests run.
//
// config/default binds the approval admission policy cluster-wide, which on the
// shared test API server would refuse every other test's admin-written
// approval annotations. So the install goes, exactly as shipped, into a private
// kube-apiserver (with its own etcd) that this file starts; the rollback
// scenario runs there too (the operator's own state stays in the shared etcd,
// NATS and Elasticsearch, under the scenario's prefix).
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startEtcd } from '../../dev/stack/etcd.ts';
import type { StackEndpoints } from '../../dev/stack/index.ts';
import { startKube, useExistingCluster } from '../../dev/stack/kube.ts';
import { loadConfig } from '../../src/config.ts';
import { attemptName } from '../../src/fsm/record.ts';
import { kubectl, kubectlOk, repoRoot } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

type Json = Record<string, any>;
const NS = 'ai-operator-system';
const SA = 'ai-operator';
const read = (file: string) => readFileSync(join(repoRoot, file), 'utf8');
const docs = (text: string): Json[] => parseAllDocuments(text).map((d) => d.toJS() as Json).filter(Boolean);

/** `kubectl kustomize <dir>` (kubectl's own kustomize, as `apply -k` uses it). */
async function render(dir: string): Promise<Json[]> {
  return docs(await kubectlOk(stack, ['kustomize', dir]));
}

const idOf = (o: Json) => `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

/**
 * Every object of `kubectl get -k`, by id, with its resourceVersion. The API
 * server writes a PersistentVolumeClaim on every update, even one that changes
 * nothing (a no-op `kubectl label` moves its resourceVersion too), so for a
 * claim what is compared is what it says: labels, annotations, spec and who
 * owns which field.
 */
async function versions(target: { kubectl: string; kubeconfig: string }, dir: string): Promise<Record<string, string>> {
  const list = JSON.parse(await kubectlOk(target, ['get', '-k', dir, '-o', 'json', '--show-managed-fields'])) as { items: Json[] };
  return Object.fromEntries(list.items.map((o) => [idOf(o), o.kind === 'PersistentVolumeClaim'
    ? JSON.stringify({ labels: o.metadata.labels, annotations: o.metadata.annotations, managedFields: o.metadata.managedFields, spec: o.spec })
    : o.metadata.resourceVersion as string]));
}

/** A kubeconfig that authenticates with a bearer token, for the API server `admin` points at. */
function tokenKubeconfig(admin: string, server: string, token: string, file: string): string {
  const ca = /certificate-authority-data:\s*(\S+)/.exec(readFileSync(admin, 'utf8'))![1]!;
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: sa',
    'clusters:', '- name: c', '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${ca}`,
    'users:', '- name: sa', '  user:', `    token: ${token}`,
    'contexts:', '- name: sa', '  context:', '    cluster: c', '    user: sa', '',
  ].join('\n'), { mode: 0o600 });
  return file;
}

/** The files src/main.ts loads, following relative imports; and the packages it imports. */
function importGraph(entry: string): { files: string[]; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const [, spec] of text.matchAll(/(?:^|\s)(?:import|export)\b[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/gm)) {
      if (spec === undefined) continue;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(join(repoRoot, entry));
  return { files: [...files].map((f) => relative(repoRoot, f)), packages };
}

describe('the image definition runs what the tests run', () => {
  it('Dockerfile: the pinned Node (provision.sh, and the Node running these tests), npm start as CMD, every file and package main.ts loads', () => {
    const dockerfile = read('Dockerfile');
    const pinned = /^NODE_VERSION=(\S+)$/m.exec(read('dev/scripts/provision.sh'))![1]!;
    const imageNode = /^ARG NODE_VERSION=(\S+)$/m.exec(dockerfile)![1]!;
    expect(imageNode).toBe(pinned);
    // Official images only, on that version.
    expect([...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])).toEqual(['node:${NODE_VERSION}-bookworm-slim', 'node:${NODE_VERSION}-bookworm-slim']);
    // The tests run on the same major (the Makefile provisions Node 24 unless the machine has it).
    expect(process.versions.node.split('.')[0]).toBe(imageNode.split('.')[0]);

    const pkg = JSON.parse(read('package.json')) as { type: string; scripts: { start: string }; dependencies: Record<string, string> };
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
    expect(cmd.join(' ')).toBe(pkg.scripts.start);
    expect(pkg.type).toBe('module');
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);

    // Everything main.ts loads is copied into the image and kept by .dockerignore.
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    expect(copied.sort()).toEqual(['package-lock.json', 'package.json', 'package.json', 'schemas', 'src'].sort());
    const ignore = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    for (const path of new Set(copied)) expect(ignore).toContain(existsDir(path) ? `!${path}/` : `!${path}`);
    const { files, packages } = importGraph('src/main.ts');
    expect(files.filter((f) => !f.startsWith('src/') || f.endsWith('.test.ts'))).toEqual([]);
    // Read at run time, not imported: the event schemas (src/bus/validate.ts).
    expect(readdirSync(join(repoRoot, 'schemas')).length).toBeGreaterThan(0);
    // Only production dependencies are in the image.
    expect([...packages].filter((p) => !(p in pkg.dependencies))).toEqual([]);
  });
});

function existsDir(path: string): boolean {
  try {
    return readdirSync(join(repoRoot, path)) !== undefined;
  } catch {
    return false;
  }
}

/** The overlay README "Install" tells you to write, in a temp dir, its `../config/…` pointing into this checkout (kustomize takes no absolute base). */
function readmeOverlay(): string {
  const text = /cat > my-ai-operator\/kustomization\.yaml <<'YAML'\n([\s\S]*?)\nYAML\n/.exec(read('README.md'))![1]!;
  const dir = mkdtempSync(join(tmpdir(), 'ai-operator-overlay-'));
  writeFileSync(join(dir, 'kustomization.yaml'), text.replace(/\.\.\/config\//g, `${relative(dir, join(repoRoot, 'config'))}/`));
  return dir;
}

describe('the manifests, as rendered', () => {
  it('README "Install": the overlay it shows sets the image and GITHUB_ORG on config/default', async () => {
    const objects = await render(readmeOverlay());
    expect(objects.map(idOf).sort()).toEqual((await render('config/default')).map(idOf).sort());
    expect(objects.find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0].image).toBe('registry.example.com/ai-operator:0.1.0');
    expect(objects.find((o) => o.kind === 'ConfigMap')!.data).toMatchObject({ GITHUB_ORG: 'my-org', LOG_LEVEL: 'INFO' });
  });

  it('config/default: the Deployment reads only variables src/config.ts knows, its ConfigMap plus a token is a valid configuration, no Secret value anywhere', async () => {
    const objects = await render('config/default');
    expect(objects.map((o) => o.kind)).not.toContain('Secret');
    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === container.envFrom[0].configMapRef.name)!;
    const env = Object.fromEntries((container.env as Json[]).map((e) => [e.name, e]));
    // Secrets by reference only, to the one Secret the README says to create.
    expect((container.env as Json[]).filter((e) => e.value === undefined && !e.valueFrom?.fieldRef).map((e) => e.valueFrom.secretKeyRef.name)).toEqual(Array(7).fill('ai-operator-secrets'));
    expect(env.POD_NAME.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    // Every variable the pod sets is one the operator reads (src/config.ts, main.ts).
    const known = new Set([...read('src/config.ts').matchAll(/'([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!).concat('POD_NAME'));
    expect([...Object.keys(configMap.data), ...Object.keys(env)].filter((name) => !known.has(name))).toEqual([]);
    // The shipped ConfigMap is a configuration the operator accepts once GITHUB_ORG and a token are given.
    expect(() => loadConfig({ ...configMap.data })).toThrow(/GITHUB_ORG: .*required, not set/);
    const config = loadConfig({ ...configMap.data, GITHUB_ORG: 'acme', GITHUB_TOKEN: 'x', AUDIT_FALLBACK_DIR: env.AUDIT_FALLBACK_DIR.value, HTTP_PORT: env.HTTP_PORT.value });
    expect(config).toMatchObject({ leaderElection: true, httpPort: 8080, auditFallbackDir: '/var/lib/ai-operator/audit' });
    // The spool is a claim (it must outlive the pod), mounted where AUDIT_FALLBACK_DIR says.
    const spool = (container.volumeMounts as Json[]).find((m) => m.mountPath === env.AUDIT_FALLBACK_DIR.value)!;
    expect((pod.volumes as Json[]).find((v) => v.name === spool.name)!.persistentVolumeClaim.claimName).toBe('ai-operator-audit-spool');
    expect(deployment.spec).toMatchObject({ replicas: 1, strategy: { type: 'Recreate' } });
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    expect(pod.serviceAccountName).toBe(SA);
    // The readiness checks each have 1 s (src/server/readiness.ts): the probe waits longer than that.
    expect(container.readinessProbe).toMatchObject({ httpGet: { path: '/readyz' } });
    expect(container.readinessProbe.timeoutSeconds).toBeGreaterThan(1);
    expect(container.livenessProbe).toMatchObject({ httpGet: { path: '/healthz' } });
    // Cluster-scoped objects carry no namespace (kustomize would give one to a ValidatingAdmissionPolicy).
    expect(objects.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy') && o.metadata.namespace !== undefined)).toEqual([]);
  });

  it('config/overlays/ha: a StatefulSet of 3 with the same pod and a spool claim per replica, a PodDisruptionBudget, spread over nodes', async () => {
    const base = (await render('config/default')).find((o) => o.kind === 'Deployment')!;
    const objects = await render('config/overlays/ha');
    expect(objects.filter((o) => o.kind === 'Deployment' || o.kind === 'PersistentVolumeClaim')).toEqual([]);
    const set = objects.find((o) => o.kind === 'StatefulSet')!;
    expect(set.metadata.name).toBe('ai-operator');
    expect(set.spec).toMatchObject({ replicas: 3, selector: base.spec.selector });
    const { affinity, volumes, ...pod } = set.spec.template.spec;
    const { volumes: baseVolumes, ...basePod } = base.spec.template.spec;
    expect(pod).toEqual(basePod);
    // The pod's spool volume becomes the claim template of the same name; the rest stays.
    const spool = (baseVolumes as Json[]).find((v) => v.persistentVolumeClaim)!;
    expect(volumes).toEqual((baseVolumes as Json[]).filter((v) => v !== spool));
    expect(set.spec.volumeClaimTemplates.map((t: Json) => t.metadata.name)).toEqual([spool.name]);
    expect(affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchLabels).toEqual(base.spec.selector.matchLabels);
    const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget')!;
    expect(pdb.spec).toMatchObject({ maxUnavailable: 1, selector: base.spec.selector });
  });

  it('config/overlays/monitoring: config/default plus the PrometheusRule and the ServiceMonitor, in ai-operator-system', async () => {
    const base = await render('config/default');
    const objects = await render('config/overlays/monitoring');
    expect(objects.map(idOf)).toEqual(expect.arrayContaining(base.map(idOf)));
    const added = objects.filter((o) => !base.some((b) => idOf(b) === idOf(o)));
    expect(added.map((o) => `${o.kind}/${o.metadata.namespace}`).sort()).toEqual([`PrometheusRule/${NS}`, `ServiceMonitor/${NS}`]);
  });
});

describe.skipIf(useExistingCluster())('kubectl apply -k config/default, and the operator as its ServiceAccount', () => {
  it('applies cleanly, a second apply changes nothing; as the shipped ServiceAccount the operator carries a staging rollback to RollbackComplete; that identity may not read Secrets or write Deployments', async () => {
    // A private API server (config/default binds the admission policy cluster-wide)
    const dir = mkdtempSync(join(tmpdir(), 'ai-operator-install-'));
    const etcd = await startEtcd(dir, 'etcd-install');
    stoppers.push(() => etcd.process.stop());
    const kube = await startKube(dir, etcd.endpoint);
    stoppers.push(() => kube.process!.stop());
    const admin = { kubectl: kube.kubectl, kubeconfig: kube.kubeconfig };

    // When the install is applied as the README says
    const first = await kubectl(admin, ['apply', '-k', 'config/default', '--server-side']);
    console.log(`kubectl apply -k config/default --server-side (first)\n${first.stdout}${first.stderr}`);
    expect(first.code).toBe(0);
    expect(first.stderr).toBe('');
    const rendered = await render('config/default');
    expect(first.stdout.trim().split('\n')).toHaveLength(rendered.length);
    expect(first.stdout.trim().split('\n').every((line) => line.endsWith(' serverside-applied'))).toBe(true);
    await kubectlOk(admin, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/rollbackpolicies.ai-operator.io', 'crd/rollbackattempts.ai-operator.io']);
    const before = await versions(admin, 'config/default');
    expect(Object.keys(before).sort()).toEqual(rendered.map(idOf).sort());

    // Then a second apply changes nothing: every object keeps its resourceVersion
    const second = await kubectl(admin, ['apply', '-k', 'config/default', '--server-side']);
    console.log(`kubectl apply -k config/default --server-side (second)\n${second.stdout}${second.stderr}`);
    expect(second.code).toBe(0);
    expect(await versions(admin, 'config/default')).toEqual(before);
    // And the README's own overlay applies over it, changing only what it sets
    const overlay = await kubectl(admin, ['apply', '-k', readmeOverlay(), '--server-side']);
    expect(overlay.code).toBe(0);
    const changed = Object.entries(await versions(admin, 'config/default')).filter(([id, v]) => before[id] !== v).map(([id]) => id);
    expect(changed.sort()).toEqual([`ConfigMap/${NS}/ai-operator-config`, `Deployment/${NS}/ai-operator`]);

    // Given the shipped ServiceAccount's token (TokenRequest), as a kubeconfig
    const token = (await kubectlOk(admin, ['create', 'token', SA, '-n', NS, '--duration=2h'])).trim();
    const saKubeconfig = tokenKubeconfig(kube.kubeconfig, kube.url, token, join(dir, 'kubeconfig-operator'));
    const asOperator = { kubectl: kube.kubectl, kubeconfig: saKubeconfig };
    expect((await kubectlOk(asOperator, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).trim()).toBe(`system:serviceaccount:${NS}:${SA}`);

    // And the Argo CD Application CRD with a staging app; the simulators and the test act as admin
    await kubectlOk(admin, ['apply', '--server-side', '-f', 'dev/crds/']);
    await kubectlOk(admin, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/applications.argoproj.io']);
    const cluster: StackEndpoints = { ...stack, kubeUrl: kube.url, kubeconfig: kube.kubeconfig, kubectl: kube.kubectl };
    const s = await givenRollbackScenario(cluster, 'install', { environment: 'staging', startOperator: false }, stoppers);
    // A RollbackPolicy naming another app: its status is the operator's to write.
    await kubectlOk(admin, ['apply', '--server-side', '-f', '-'], JSON.stringify({
      apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'elsewhere', namespace: s.namespace }, spec: { applications: ['not-this-app'] },
    }));

    // When the operator runs with that identity and a bad commit lands
    const operator = await s.startOperator({ KUBECONFIG: saKubeconfig });
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');

    // Then it rolls back to RollbackComplete: the RBAC suffices
    const record = await s.inState('RollbackComplete', 120_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ merged: true });
    const name = attemptName(record.app, record.correlationId);
    // Its RollbackAttempt was created and its status written (rollbackattempts create, /status patch)
    await eventually('the RollbackAttempt in RollbackComplete', async () =>
      (await kubectlOk(admin, ['get', 'rollbackattempt', name, '-n', s.namespace, '-o', 'jsonpath={.status.phase}'])).trim() === 'RollbackComplete', 30_000);
    // Events on the Application (with its uid: applications get) and on the attempt (events create)
    const events = await eventually('Events on the Application and the attempt', async () => {
      const list = JSON.parse(await kubectlOk(admin, ['get', 'events.v1.events.k8s.io', '-n', s.namespace, '-o', 'json'])) as { items: Json[] };
      const mine = list.items.filter((e) => e.reportingController === 'ai-operator.io/operator');
      const on = (kind: string) => mine.filter((e) => e.regarding.kind === kind);
      return on('Application').some((e) => e.action === 'ToRollbackComplete') && on('RollbackAttempt').length > 0 && on('Application').every((e) => e.regarding.uid) ? mine : undefined;
    }, 30_000);
    console.log(`Events by the operator in ${s.namespace}: ${events.map((e) => `${e.regarding.kind}/${e.reason}`).join(', ')}`);
    // The RollbackPolicy's status (rollbackpolicies list/watch, /status patch)
    await eventually('the RollbackPolicy status', async () =>
      (await kubectlOk(admin, ['get', 'rollbackpolicy', 'elsewhere', '-n', s.namespace, '-o', 'jsonpath={.status.observedGeneration}'])).trim() === '1', 70_000)
      .catch(async (error: Error) => { throw new Error(`${error.message}: ${await kubectlOk(admin, ['get', 'rollbackpolicy', 'elsewhere', '-n', s.namespace, '-o', 'yaml'])}\n${s.logs()}`); });
    // The approval policy and its cluster-wide binding are read and found enforcing (admission objects get)
    await eventually('ai_operator_approval_enforced 1', async () => /^ai_operator_approval_enforced 1$/m.test(await operator.metrics()), 30_000);
    // POST /reset asks the API server: an unknown token is 401 (TokenReview), a known one without RBAC 403 (SubjectAccessReview)
    const reset = (bearer: string) => fetch(`http://127.0.0.1:${operator.httpPort}/reset/${record.correlationId}`, { method: 'POST', headers: { authorization: `Bearer ${bearer}` } });
    expect((await reset('garbage.not.a-token')).status).toBe(401);
    await kubectlOk(admin, ['create', 'serviceaccount', 'bystander', '-n', s.namespace]);
    const bystander = (await kubectlOk(admin, ['create', 'token', 'bystander', '-n', s.namespace])).trim();
    expect(await (await reset(bystander)).json()).toMatchObject({ result: 'forbidden' });
    // And the API server refused it nothing
    const log = readFileSync(operator.log, 'utf8');
    expect(log.split('\n').filter((line) => /forbidden|\b403\b|PERMISSION_DENIED/i.test(line) && !line.includes('Refused reset request'))).toEqual([]);

    // The same identity is refused Secrets and any write of a Deployment
    await kubectlOk(admin, ['create', 'secret', 'generic', 'ai-operator-secrets', '-n', NS, '--from-literal=github-token=not-for-the-operator']);
    for (const [verb, resource, scope] of [
      ['get', 'secrets', ['-n', NS]], ['list', 'secrets', ['-A']], ['watch', 'secrets', ['-A']],
      ['create', 'deployments.apps', ['-n', s.target]], ['update', 'deployments.apps', ['-n', s.target]], ['patch', 'deployments.apps', ['-n', s.target]],
      ['delete', 'deployments.apps', ['-n', s.target]], ['update', 'deployments.apps/scale', ['-n', s.target]],
      ['get', 'deployments.apps', ['-n', s.target]], ['create', 'pods', ['-n', s.target]], ['get', 'configmaps', ['-n', NS]],
    ] as const) {
      const answer = await kubectl(asOperator, ['auth', 'can-i', verb, resource, ...scope]);
      expect(`${verb} ${resource}: ${answer.stdout.trim()}`).toBe(`${verb} ${resource}: no`);
    }
    const secret = await kubectl(asOperator, ['get', 'secret', 'ai-operator-secrets', '-n', NS, '-o', 'json']);
    console.log(`as the operator: kubectl get secret ai-operator-secrets -> ${secret.stderr.trim()}`);
    expect(secret.code).not.toBe(0);
    expect(secret.stderr).toMatch(/\(Forbidden\).*cannot get resource "secrets"/);
    expect(secret.stdout).not.toContain('not-for-the-operator');
    // kubectl scale and patch read the Deployment first, which this identity may only list: the writes go to the API as they are
    const deploymentPath = `/apis/apps/v1/namespaces/${s.target}/deployments/${s.app}`;
    const scale = await kubectl(asOperator, ['replace', '--raw', `${deploymentPath}/scale`, '-f', '-'],
      JSON.stringify({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: s.app, namespace: s.target }, spec: { replicas: 0 } }));
    console.log(`as the operator: PUT ${deploymentPath}/scale -> ${scale.stderr.trim()}`);
    expect(scale.stderr).toMatch(/\(Forbidden\).*cannot update resource "deployments\/scale"/);
    const live = JSON.parse(await kubectlOk(admin, ['get', 'deployment', s.app, '-n', s.target, '-o', 'json'])) as Json;
    const update = await kubectl(asOperator, ['replace', '--raw', deploymentPath, '-f', '-'], JSON.stringify({ ...live, metadata: { ...live.metadata, labels: { ...live.metadata.labels, x: 'y' } } }));
    expect(update.stderr).toMatch(/\(Forbidden\).*cannot update resource "deployments"/);
    // What it may do there is list them (I3 reads the Deployments Argo CD's tracking gives the app), nothing else
    expect((await kubectl(asOperator, ['get', 'deployments', '-n', s.target, '-o', 'name'])).stdout.trim()).toBe(`deployment.apps/${s.app}`);

    // README "Uninstall", in its order (the namespace never finishes deleting without a controller-manager: no wait)
    operator.child.kill('SIGTERM');
    await kubectlOk(admin, ['-n', NS, 'delete', 'deployment/ai-operator']);
    await kubectlOk(admin, ['delete', '-k', 'config/admission']);
    await kubectlOk(admin, ['delete', '-k', 'config/rbac']);
    await kubectlOk(admin, ['delete', 'namespace', NS, '--wait=false']);
    const attemptsBefore = JSON.parse(await kubectlOk(admin, ['get', 'rollbackattempts', '-A', '-o', 'json'])).items.length as number;
    expect(attemptsBefore).toBeGreaterThan(0);
    await kubectlOk(admin, ['delete', '-k', 'config/crd']);
    // Deleting the CRDs took every RollbackAttempt with them, as the README warns.
    await eventually('no RollbackAttempt left', async () => (await kubectl(admin, ['get', '--raw', '/apis/ai-operator.io/v1alpha1/rollbackattempts'])).stderr.includes('NotFound'), 30_000);
    expect((await kubectl(admin, ['get', 'clusterroles', '-l', 'app.kubernetes.io/name=ai-operator', '-o', 'name'])).stdout.trim()).toBe('');
  }, 240_000);
});
