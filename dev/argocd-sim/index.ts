// An Argo CD simulator for tests and the demo. Every `intervalMs` it reads each
// Application whose repoURL maps to a bare repository under `repoRoot`
// (`https://github.com/{owner}/{repo}.git` → `${repoRoot}/{owner}/{repo}.git`)
// and does what Argo CD's auto-sync would: a new commit of the tracked branch
// that changes the app's path (or an app seen for the first time) is "synced" —
// its Deployments are applied to the API server with Argo CD 3.x's tracking id
// annotation (which the operator reads to know an app's Deployments), and the Application's status
// gets the revision, a history entry, the resources and the health of rules.ts —
// through the status subresource, as Argo CD 3.6 writes it (each resource's health
// only with `persistResourceHealth`, as with --persist-resource-health). No controller-manager
// runs: on every poll the simulator writes each deployed Deployment's status as
// the deployment controller would (rules.ts `deploymentStatus`), when it
// changed. A commit that leaves the path alone only moves `sync.revision`, as
// Argo CD's comparison does.
// Sources are rendered as Argo CD's repo server renders them (render.ts): a plain
// directory of YAML is read as it is; a Kustomize app (a kustomization.yaml at the
// path) goes through `kustomize build` and a Helm app (`spec.source.helm`, or a
// Chart.yaml at the path) through `helm template` with its valueFiles — the same
// kustomize and helm binaries provision.sh puts on the real repo server's PATH,
// over the repository's whole tree at the revision. For those, "changed" is what
// Argo CD compares: the rendered manifests, wherever in the repository the change was.
// Optionally it serves `argocd_app_info` on /metrics for a Prometheus to scrape.
import { createServer, type Server } from 'node:http';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Deployment } from '@kubernetes/client-node';
import { Gauge, Registry } from 'prom-client';
import { createLogger, type Logger } from '../../src/observability/log.ts';
import { pathChanged, repoDirOf, resolveRevision } from './git.ts';
import { renderSource, type RenderedSource, type SourceType } from './render.ts';
import { appendHistory, appInfoLabels, applicationStatus, argoTime, deploymentsIn, deploymentStatuses, type DeploymentManifest, type DeploymentStatus, type HistoryEntry } from './rules.ts';

export { BROKEN_ANNOTATION } from './rules.ts';

export interface ArgoCdSimOptions {
  kubeConfig: KubeConfig;
  /** Where the GitHub simulator keeps its bare repositories. */
  repoRoot: string;
  /** Poll period; 1 s by default. */
  intervalMs?: number;
  /** How long a broken revision stays Progressing before it is Degraded; 0 by default. */
  degradeAfterMs?: number;
  /**
   * Write each resource's health into status.resources, as an application controller run with
   * --persist-resource-health does. Off by default, as in Argo CD 3.x.
   */
  persistResourceHealth?: boolean;
  /** Namespaces whose Applications are simulated; all by default. */
  namespaces?: string[];
  /**
   * Argo CD's own namespace (its controller's): the tracking id names an Application
   * elsewhere `<namespace>_<name>`, as Application.InstanceName does. `argocd` by default.
   */
  controlPlaneNamespace?: string;
  /** Serve `argocd_app_info` on http://127.0.0.1:{port}/metrics (0: any free port). */
  metricsPort?: number;
  log?: Logger;
  now?: () => Date;
}

export interface ArgoCdSim {
  /** Runs one poll now and resolves when it is done (rejects with what failed). */
  syncNow(): Promise<void>;
  stop(): Promise<void>;
  metricsUrl?: string;
}

const GROUP = 'argoproj.io';
const VERSION = 'v1alpha1';
const PLURAL = 'applications';
const MANAGER = 'argocd-application-controller';

interface Source extends RenderedSource { repoURL?: string; path?: string; targetRevision?: string }
interface Application {
  metadata: { name: string; namespace: string; generation?: number };
  spec: { project?: string; source?: Source; sources?: Source[]; destination?: { server?: string; namespace?: string }; revisionHistoryLimit?: number; syncPolicy?: { automated?: unknown } };
  status?: {
    sync?: { status?: string; revision?: string };
    health?: { status?: string; lastTransitionTime?: string };
    history?: HistoryEntry[];
    resources?: Array<{ group?: string; kind?: string; namespace?: string; name?: string }>;
  };
}

const isNotFound = (error: unknown) => (error as { code?: number }).code === 404;
const isConflict = (error: unknown) => (error as { code?: number }).code === 409;

/** JSON with sorted keys and nulls dropped: the API server returns objects with sorted keys. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).sort(([a], [b]) => a.localeCompare(b)));
  });
}

export async function startArgoCdSim(options: ArgoCdSimOptions): Promise<ArgoCdSim> {
  const sim = new Simulator(options);
  await sim.serveMetrics();
  sim.schedule();
  return { syncNow: () => sim.tick(), stop: () => sim.stop(), ...(sim.metricsUrl ? { metricsUrl: sim.metricsUrl } : {}) };
}

class Simulator {
  metricsUrl?: string;
  private readonly options: ArgoCdSimOptions;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly custom: CustomObjectsApi;
  private readonly appsApi: AppsV1Api;
  private readonly core: CoreV1Api;
  /** Rendered manifests per (repository, revision, source, namespace): commits never change. */
  private readonly manifests = new Map<string, Promise<Rendered>>();
  /** Per Deployment (`namespace/name`): its generation and the status last written, so an unchanged one is not rewritten. */
  private readonly rolledOut = new Map<string, { generation: number; status?: string }>();
  /** What /metrics reports: the apps as last written. */
  private readonly info = new Map<string, Record<string, string>>();
  private chain: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private server?: Server;

  constructor(options: ArgoCdSimOptions) {
    this.options = options;
    this.log = options.log ?? createLogger('WARN').child('argocd-sim');
    this.now = options.now ?? (() => new Date());
    this.custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.appsApi = options.kubeConfig.makeApiClient(AppsV1Api);
    this.core = options.kubeConfig.makeApiClient(CoreV1Api);
  }

  /** Runs one poll after any running one; resolves with what failed (poll() has logged it). */
  private enqueue(): Promise<unknown[]> {
    const run = this.chain.then(() => this.poll());
    this.chain = run.then(() => undefined);
    return run;
  }

  async tick(): Promise<void> {
    const failures = await this.enqueue();
    if (failures.length > 0) throw new AggregateError(failures, `simulated Argo CD: ${failures.length} failure(s): ${failures.map(String).join('; ')}`);
  }

  schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.enqueue().then(() => this.schedule()), this.options.intervalMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.chain;
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Never rejects: every failure is logged and returned, and one broken app does not stall the others. */
  private async poll(): Promise<unknown[]> {
    let apps: Application[];
    try {
      apps = await this.listApplications();
    } catch (error) {
      this.log.warn('Listing Applications failed', { error: String(error) });
      return [error];
    }
    const failures: unknown[] = [];
    const seen = new Set<string>();
    for (const app of apps) {
      seen.add(`${app.metadata.namespace}/${app.metadata.name}`);
      try {
        await this.reconcile(app);
      } catch (error) {
        this.log.warn('Simulated sync failed', { app: `${app.metadata.namespace}/${app.metadata.name}`, error: String(error) });
        failures.push(error);
      }
    }
    for (const key of this.info.keys()) if (!seen.has(key)) this.info.delete(key);
    return failures;
  }

  private async listApplications(): Promise<Application[]> {
    const lists = this.options.namespaces?.length
      ? await Promise.all(this.options.namespaces.map((namespace) => this.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace })))
      : [await this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })];
    return lists.flatMap((l) => (l as { items: Application[] }).items);
  }

  private async reconcile(app: Application): Promise<void> {
    const source = app.spec.source ?? app.spec.sources?.[0];
    const gitDir = source?.repoURL ? repoDirOf(this.options.repoRoot, source.repoURL) : undefined;
    if (!source || !gitDir) return; // not a repository of ours: another Argo CD's business
    const head = await resolveRevision(gitDir, source.targetRevision || 'HEAD');
    if (!head) {
      this.log.warn('Target revision not found', { app: app.metadata.name, targetRevision: source.targetRevision });
      return;
    }
    const history = app.status?.history ?? [];
    const last = history[history.length - 1];
    const namespace = app.spec.destination?.namespace || app.metadata.namespace;
    const now = this.now();

    let deployed = last;
    let nextHistory = history;
    const firstSight = !app.status?.sync?.revision || !last;
    const rendered = (revision: string) => this.manifestsAt(gitDir, revision, source, { name: app.metadata.name, namespace });
    if (firstSight || (app.status?.sync?.revision !== head && await this.changed(gitDir, last.revision, head, source, rendered))) {
      const { deployments } = await rendered(head);
      const previous = (app.status?.resources ?? []).filter((r) => r.kind === 'Deployment' && r.group === 'apps');
      await this.deploy(app, deployments, previous);
      const at = argoTime(now);
      nextHistory = appendHistory(history, { revision: head, deployedAt: at, deployStartedAt: at, source: { ...source }, initiatedBy: { automated: true } }, app.spec.revisionHistoryLimit ?? 10);
      deployed = nextHistory[nextHistory.length - 1];
      this.log.info('Synced application', { app: app.metadata.name, revision: head, deployments: deployments.length });
    } else if (!app.status?.resources) {
      // A history written by someone else (the demo seeds one) but nothing deployed
      // yet: put the deployed revision's Deployments in the cluster, no new history entry.
      await this.deploy(app, (await rendered(last.revision)).deployments, []);
      this.log.info('Adopted application', { app: app.metadata.name, revision: last.revision });
    }
    const { deployments, type } = await rendered(deployed!.revision);
    const input = {
      source: { ...source }, destination: { ...app.spec.destination }, revision: head, history: nextHistory, deployments, now, sourceType: type,
      degradeAfterMs: this.options.degradeAfterMs ?? 0, persistResourceHealth: this.options.persistResourceHealth ?? false,
      ...(app.status?.health ? { previousHealth: app.status.health } : {}),
    };
    const statuses = deploymentStatuses(input);
    await this.writeDeploymentStatuses(deployments, statuses);
    await this.writeStatus(app, applicationStatus(input, statuses));
  }

  /** The app's Deployments at a revision, as its source renders there. */
  private manifestsAt(gitDir: string, revision: string, source: Source, app: { name: string; namespace: string }): Promise<Rendered> {
    const { path, helm, kustomize, directory } = source;
    // The app's name is a Helm release's name (even for a chart found by its Chart.yaml), the namespace every rendering's.
    const key = JSON.stringify([gitDir, revision, app, { path, helm, kustomize, directory }]);
    let found = this.manifests.get(key);
    if (!found) {
      found = renderSource(gitDir, revision, source, app).then(({ type, files }) => ({
        type, deployments: deploymentsIn(files, app.namespace), text: files.map((f) => f.content).join('\n---\n'),
      }));
      // A failed render is not remembered: the next poll tries again.
      found.catch(() => this.manifests.delete(key));
      this.manifests.set(key, found);
    }
    return found;
  }

  /**
   * Whether `to` changes what the app deploys since `from`: for a directory, whether the path changed (Argo CD
   * compares what it reads there); for a rendered source, whether the rendered manifests differ — a change to
   * a Kustomize base or a Helm values file outside the path counts, a change elsewhere that renders the same does not.
   */
  private async changed(gitDir: string, from: string, to: string, source: Source, at: (revision: string) => Promise<Rendered>): Promise<boolean> {
    // What was deployed is rendered already (cached): a directory stays as cheap as a `git diff` per new head.
    // A directory that turns into a Kustomize or Helm app changes its path, and is rendered afresh then.
    const previous = await at(from).catch(() => undefined);
    if (!previous) return true;
    if (previous.type === 'Directory') return pathChanged(gitDir, from, to, source.path || '.');
    return (await at(to)).text !== previous.text;
  }

  /** Status through the status subresource, only when it changed (Argo CD does not rewrite an unchanged status either). */
  private async writeStatus(app: Application, status: Record<string, unknown>): Promise<void> {
    const current = app.status as Record<string, unknown> | undefined;
    const changed = Object.keys(status).some((k) => canonical(status[k]) !== canonical(current?.[k]));
    if (changed) {
      await this.custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: PLURAL, namespace: app.metadata.namespace, name: app.metadata.name, body: { status: { ...status, reconciledAt: argoTime(this.now()) } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
    const sync = status.sync as { status: string };
    const health = status.health as { status: string };
    const source = app.spec.source ?? app.spec.sources?.[0];
    this.info.set(`${app.metadata.namespace}/${app.metadata.name}`, appInfoLabels({
      namespace: app.metadata.namespace, name: app.metadata.name, project: app.spec.project, automated: app.spec.syncPolicy?.automated !== undefined,
      repoURL: source?.repoURL, destServer: app.spec.destination?.server, destNamespace: app.spec.destination?.namespace,
      syncStatus: sync.status, healthStatus: health.status,
      // Every sync of the simulator succeeds at once; an adopted app's history was someone else's.
      ...((status.history as HistoryEntry[]).length > 0 ? { phase: 'Succeeded' } : {}),
    }));
  }

  // ---- the cluster side of a sync --------------------------------------------

  private async deploy(app: Application, deployments: DeploymentManifest[], previous: Array<{ namespace?: string; name?: string }>): Promise<void> {
    for (const d of deployments) {
      const body = structuredClone(d.object) as V1Deployment;
      // Annotation tracking, Argo CD 3.x's default (util/argo/resource_tracking.go SetAppInstance): the
      // tracking id, and no instance label (that is label tracking's, the default before 3.0).
      body.metadata = { ...body.metadata, namespace: d.namespace, annotations: { ...body.metadata?.annotations, [TRACKING_ID_ANNOTATION]: trackingId(app, d, this.options.controlPlaneNamespace ?? 'argocd') } };
      const written = await this.apply(body, d.namespace);
      // Its status is the poll's to write (writeDeploymentStatuses), as the controller would for this generation.
      this.rolledOut.set(`${d.namespace}/${d.name}`, { generation: written.metadata?.generation ?? 1 });
    }
    // Auto-sync with prune: Deployments the new revision no longer has go away.
    const keep = new Set(deployments.map((d) => `${d.namespace}/${d.name}`));
    for (const r of previous) {
      if (!r.namespace || !r.name || keep.has(`${r.namespace}/${r.name}`)) continue;
      this.rolledOut.delete(`${r.namespace}/${r.name}`);
      await this.appsApi.deleteNamespacedDeployment({ name: r.name, namespace: r.namespace }).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
    }
  }

  /** The controller-manager's part: each Deployment's status, written only when it changed (the progress deadline passing changes it). */
  private async writeDeploymentStatuses(deployments: DeploymentManifest[], statuses: DeploymentStatus[]): Promise<void> {
    for (const [i, d] of deployments.entries()) {
      const key = `${d.namespace}/${d.name}`;
      let known = this.rolledOut.get(key);
      if (!known) {
        // Deployed before this process started: learn its generation once, then write its status once.
        const existing = await this.appsApi.readNamespacedDeployment({ name: d.name, namespace: d.namespace }).catch((error: unknown) => {
          if (isNotFound(error)) return undefined;
          throw error;
        });
        if (!existing) continue; // deleted behind Argo CD's back: no controller reports on it
        known = { generation: existing.metadata?.generation ?? 1 };
      }
      const status = { observedGeneration: known.generation, ...statuses[i]! };
      const text = canonical(status);
      if (text === known.status) continue;
      await this.appsApi.patchNamespacedDeploymentStatus(
        { name: d.name, namespace: d.namespace, body: { status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.rolledOut.set(key, { generation: known.generation, status: text });
    }
  }

  /** Create, or replace what is there (kubectl apply's outcome, without its three-way merge). */
  private async apply(body: V1Deployment, namespace: string): Promise<V1Deployment> {
    try {
      return await this.appsApi.createNamespacedDeployment({ namespace, body });
    } catch (error) {
      if (isNotFound(error)) {
        // Argo CD's CreateNamespace=true: the destination namespace appears with the first sync.
        await this.core.createNamespace({ body: { metadata: { name: namespace } } }).catch((e: unknown) => {
          if (!isConflict(e)) throw e;
        });
        return this.appsApi.createNamespacedDeployment({ namespace, body });
      }
      if (!isConflict(error)) throw error;
    }
    const existing = await this.appsApi.readNamespacedDeployment({ name: body.metadata!.name!, namespace });
    body.metadata!.resourceVersion = existing.metadata?.resourceVersion;
    return this.appsApi.replaceNamespacedDeployment({ name: body.metadata!.name!, namespace, body });
  }

  // ---- argocd_app_info ---------------------------------------------------------

  async serveMetrics(): Promise<void> {
    if (this.options.metricsPort === undefined) return;
    const registry = new Registry();
    const info = this.info;
    new Gauge({
      name: 'argocd_app_info',
      help: 'Information about application.',
      labelNames: ['namespace', 'name', 'project', 'autosync_enabled', 'repo', 'dest_server', 'dest_namespace', 'sync_status', 'health_status', 'hydrator_status', 'operation', 'phase'],
      registers: [registry],
      collect() {
        this.reset();
        for (const labels of info.values()) this.set(labels, 1);
      },
    });
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (error: Error) => res.writeHead(500).end(error.message),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.options.metricsPort, '127.0.0.1', () => resolve());
    });
    const address = this.server.address();
    if (typeof address === 'object' && address) this.metricsUrl = `http://127.0.0.1:${address.port}/metrics`;
  }
}

const TRACKING_ID_ANNOTATION = 'argocd.argoproj.io/tracking-id';

/** An app's rendering at one revision: how it was rendered, its Deployments, and the whole output (to compare). */
interface Rendered {
  type: SourceType;
  deployments: DeploymentManifest[];
  text: string;
}

/** `<app>:apps/Deployment:<namespace>/<name>`, the app named as Argo CD's Application.InstanceName names it. */
export function trackingId(app: { metadata: { name: string; namespace: string } }, d: { namespace: string; name: string }, controlPlaneNamespace: string): string {
  const instance = app.metadata.namespace === controlPlaneNamespace ? app.metadata.name : `${app.metadata.namespace}_${app.metadata.name}`;
  return `${instance}:apps/Deployment:${d.namespace}/${d.name}`;
}
