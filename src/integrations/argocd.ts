// Argo CD Applications as the engine reads them (SPEC §6.1, §8). The watch
// (kube/watch.ts: list, watch, backoff, relist) follows `argoproj.io/v1alpha1`
// Applications through the Kubernetes API, and this adapter keeps a cache of
// ApplicationViews from it, so a health check every few seconds costs no API
// request. Optionally Argo CD's REST API answers health and sync questions instead.
import { isDeepStrictEqual } from 'node:util';
import { CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { nextDegradedSince } from '../fsm/persistence.ts';
import type { AppRef, HealthStatus } from '../fsm/record.ts';
import type { Logger } from '../observability/log.ts';
import { MANIFEST_GENERATE_PATHS, unsupportedSources } from '../modules/source-set.ts';
import type { AppSource, ApplicationView, ArgoCdPort, RenderedSources } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import { call, classifyHttpError, type CallMetrics, HttpStatusError } from './call.ts';
import { customObjectSource } from './kube/custom-objects.ts';
import { keepFields, type Fields } from './kube/fields.ts';
import { onlyWhatTheWatchReads, Watch } from './kube/watch.ts';

const GROUP = 'argoproj.io';
const VERSION = 'v1alpha1';
const PLURAL = 'applications';
const HEALTH_STATUSES: readonly string[] = ['Healthy', 'Progressing', 'Degraded', 'Suspended', 'Missing', 'Unknown'] satisfies HealthStatus[];

interface SourceObject {
  repoURL?: string;
  path?: string;
  chart?: string;
  targetRevision?: string;
  ref?: string;
  helm?: unknown;
  kustomize?: unknown;
  directory?: unknown;
  plugin?: unknown;
}

/** The subset of Argo CD's Application this adapter reads (Kargo-style: our own minimal type). */
export interface ApplicationObject extends KubernetesObject {
  spec?: { source?: SourceObject; sources?: SourceObject[]; sourceHydrator?: unknown; destination?: { namespace?: string; server?: string; name?: string } };
  status?: {
    health?: { status?: string };
    sync?: { status?: string; revision?: string; revisions?: string[] };
    history?: Array<{ id?: number; revision?: string; revisions?: string[]; deployedAt?: string; source?: SourceObject; sources?: SourceObject[] }>;
    resources?: Array<{ group?: string; kind?: string; namespace?: string; name?: string; health?: { status?: string } }>;
  };
}

/** What appSource and unsupportedShape read of one source (`spec.source`, an entry of `spec.sources` or of a deployment's `sources`). */
const SOURCE_FIELDS = {
  repoURL: true, path: true, chart: true, targetRevision: true, ref: true,
  helm: { valueFiles: true, fileParameters: true },
  kustomize: { components: true },
  directory: { recurse: true, include: true, exclude: true, disableExtensionFilter: true },
  plugin: true,
} as const satisfies Fields;

/**
 * Every field of an Application that watchedReading reads (applicationView, shapeProblems, the sync
 * status), and what the watch reads itself (metadata.resourceVersion): the watch cache keeps no
 * other (argocd.fields.test.ts records what the readers read and fails on a field this drops).
 * Not kept: managedFields, the last-applied-configuration and every other annotation, status.operationState,
 * conditions, summary, comparedTo, each deployment's own `source`, each resource's sync status and message.
 */
export const APPLICATION_FIELDS = {
  metadata: { namespace: true, name: true, uid: true, resourceVersion: true, labels: true, annotations: { [MANIFEST_GENERATE_PATHS]: true } },
  spec: { source: SOURCE_FIELDS, sources: [SOURCE_FIELDS], sourceHydrator: true, destination: { namespace: true } },
  status: {
    health: { status: true },
    sync: { status: true, revision: true, revisions: true },
    history: [{ id: true, revision: true, revisions: true, deployedAt: true, sources: [SOURCE_FIELDS] }],
    resources: [{ group: true, kind: true, namespace: true, name: true, health: { status: true } }],
  },
} as const satisfies Fields;

/** The Application as the watch keeps it: APPLICATION_FIELDS of it. Pure. */
export function projectApplication(object: ApplicationObject): ApplicationObject {
  return keepFields(object, APPLICATION_FIELDS) as ApplicationObject;
}

export function healthOf(status: string | undefined): HealthStatus | undefined {
  if (status === undefined || status === '') return undefined;
  // A status this code does not know (a newer Argo CD, a custom Lua check) is not a reason to act.
  return HEALTH_STATUSES.includes(status) ? (status as HealthStatus) : 'Unknown';
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);
/** A list field as it came: anything else (an object, a string — only an API without a schema lets one through) is empty. */
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

/**
 * Shapes whose deployed revision is not one commit of one repository a rollback can
 * restore: a source hydrator deploys a hydrated branch (not the dry source a PR
 * would change), a multi-source app over several repositories would need one
 * commit in each, a Helm repository source has no Git path, and without a
 * repository URL there is no repository at all.
 */
function unsupportedShape(spec: ApplicationObject['spec']): string | undefined {
  if (spec?.sourceHydrator !== undefined) {
    return 'spec.sourceHydrator is set: source-hydrator Applications are not handled yet (Argo CD deploys the hydrated branch, not the dry source a rollback would change)';
  }
  const multi = Array.isArray(spec?.sources) && spec.sources.length > 0;
  if (!multi && spec?.sources !== undefined && !Array.isArray(spec.sources)) return 'spec.sources is not a list';
  if (multi) {
    const sources = appSources(spec!.sources!);
    if (sources.length !== spec!.sources!.length) return 'spec.sources has an entry without a repoURL: there is no repository to roll back in';
    return unsupportedSources({ sources });
  }
  if (!isObject(spec?.source)) return 'spec.source is missing: there is no repository to roll back in';
  if (text(spec.source.chart) !== undefined) {
    return `spec.source.chart is set (${String(spec.source.chart).slice(0, 100)}): a Helm repository source has no Git path a rollback could restore`;
  }
  if (text(spec.source.repoURL) === undefined) return 'spec.source.repoURL is missing: there is no repository to roll back in';
  return undefined;
}

/** One source as the source set reads it: only fields of the right type are kept (the rest is not read). */
function appSource(value: unknown): AppSource | undefined {
  if (!isObject(value) || text(value.repoURL) === undefined) return undefined;
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
  const helm = isObject(value.helm) ? {
    ...(strings(value.helm.valueFiles) ? { valueFiles: strings(value.helm.valueFiles)! } : {}),
    ...(Array.isArray(value.helm.fileParameters) ? { fileParameters: value.helm.fileParameters.filter(isObject).map((p) => ({ ...(text(p.name) ? { name: p.name as string } : {}), ...(text(p.path) ? { path: p.path as string } : {}) })) } : {}),
  } : undefined;
  const kustomize = isObject(value.kustomize) ? { ...(strings(value.kustomize.components) ? { components: strings(value.kustomize.components)! } : {}) } : undefined;
  const directory = isObject(value.directory) ? {
    ...(typeof value.directory.recurse === 'boolean' ? { recurse: value.directory.recurse } : {}),
    ...(typeof value.directory.include === 'string' ? { include: value.directory.include } : {}),
    ...(typeof value.directory.exclude === 'string' ? { exclude: value.directory.exclude } : {}),
    ...(typeof value.directory.disableExtensionFilter === 'boolean' ? { disableExtensionFilter: value.directory.disableExtensionFilter } : {}),
  } : undefined;
  return {
    repoURL: value.repoURL as string,
    ...(typeof value.path === 'string' ? { path: value.path } : {}),
    ...(text(value.targetRevision) ? { targetRevision: value.targetRevision as string } : {}),
    ...(text(value.chart) ? { chart: value.chart as string } : {}),
    ...(text(value.ref) ? { ref: value.ref as string } : {}),
    ...(helm ? { helm } : {}),
    ...(kustomize ? { kustomize } : {}),
    ...(directory ? { directory } : {}),
    ...(value.plugin !== undefined ? { plugin: value.plugin } : {}),
  };
}

function appSources(list: unknown[]): AppSource[] {
  return list.flatMap((s) => appSource(s) ?? []);
}

/** The Helm-repository charts of a list of sources, as `repoURL chart@version`, sorted. */
function chartsOf(sources: unknown[]): string[] {
  return appSources(sources).filter((s) => s.chart).map((s) => `${s.repoURL} ${s.chart}@${s.targetRevision ?? ''}`).sort();
}

/** A date Argo CD writes (RFC 3339); Date.parse alone would take "2026" or "Feb 27". */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const isDate = (value: unknown): value is string => typeof value === 'string' && RFC3339.test(value) && !Number.isNaN(Date.parse(value));

/** What the engine sees of an Application. Pure. */
export function applicationView(object: ApplicationObject): ApplicationView {
  // Nothing here may throw on a field of the wrong type: the watch would keep the previous view.
  const status = isObject(object.status) ? object.status : {};
  // A multi-source Application keeps its sources in `sources`: the app's own is its first Git source with a
  // path (its repository and branch are the rollback's; unsupportedShape refused the others).
  const specSources = Array.isArray(object.spec?.sources) && object.spec.sources.length > 0 ? appSources(object.spec.sources) : undefined;
  const single = specSources ? undefined : appSource(object.spec?.source);
  const ownIndex = specSources ? specSources.findIndex((s) => !s.chart && s.path !== undefined) : 0;
  const own: SourceObject | undefined = specSources ? specSources[ownIndex] : isObject(object.spec?.source) ? object.spec.source : undefined;
  const source = own;
  const annotation = object.metadata?.annotations?.[MANIFEST_GENERATE_PATHS];
  const rendered: RenderedSources | undefined = single || specSources ? {
    ...(single ? { source: single } : {}),
    ...(specSources ? { sources: specSources, charts: chartsOf(specSources) } : {}),
    ...(typeof annotation === 'string' && annotation !== '' ? { manifestGeneratePaths: annotation } : {}),
  } : undefined;
  const health = healthOf(status.health?.status);
  const at = Math.max(0, ownIndex);
  const syncRevision = text(status.sync?.revision) ?? text(list(status.sync?.revisions)[at]);
  const unsupported = unsupportedShape(object.spec);
  return {
    ref: { namespace: object.metadata?.namespace ?? '', name: object.metadata?.name ?? '' },
    ...(object.metadata?.uid ? { uid: object.metadata.uid } : {}),
    labels: { ...object.metadata?.labels },
    ...(unsupported ? { unsupported } : {}),
    ...(health ? { health } : {}),
    ...(syncRevision ? { syncRevision } : {}),
    // An entry without a revision or a readable date cannot give a window: left out (shapeProblems says so).
    history: list(status.history).flatMap((h) => {
      if (!isObject(h)) return [];
      const revision = text(h.revision) ?? text(list(h.revisions)[at]);
      const charts = specSources && Array.isArray(h.sources) ? chartsOf(h.sources) : undefined;
      return revision && isDate(h.deployedAt) ? [{ id: Number.isSafeInteger(h.id) ? h.id as number : 0, revision, deployedAt: h.deployedAt, ...(charts && charts.length > 0 ? { charts } : {}) }] : [];
    }),
    resources: list(status.resources).flatMap((r) => (isObject(r) && text(r.kind) && text(r.name) ? [{
      kind: r.kind as string,
      name: r.name as string,
      ...(text(r.group) ? { group: r.group as string } : {}),
      ...(text(r.namespace) ? { namespace: r.namespace as string } : {}),
      ...(isObject(r.health) && text(r.health.status) ? { health: r.health.status as string } : {}),
    }] : [])),
    ...(isObject(object.spec?.destination) && text(object.spec.destination.namespace) ? { destinationNamespace: object.spec.destination.namespace! } : {}),
    ...(source && text(source.repoURL) ? {
      // Argo CD reads an empty path as the repository root and an empty revision as HEAD.
      source: { repoURL: source.repoURL!, path: text(source.path) ?? '.', targetRevision: text(source.targetRevision) ?? 'HEAD' },
    } : {}),
    ...(rendered ? { rendered } : {}),
  };
}

/**
 * What of an admitted Application the engine cannot read, field by field: such an
 * app is not acted on, and a person needs to be told why. Pure.
 */
export function shapeProblems(object: ApplicationObject): string[] {
  const problems: string[] = [];
  const health = object.status?.health?.status as unknown;
  if (object.status !== undefined && !isObject(object.status)) problems.push(`status is ${JSON.stringify(object.status)?.slice(0, 60)}, not an object`);
  else if (object.status !== undefined && object.status.health === undefined) problems.push('status.health is missing');
  else if (object.status?.health !== undefined && (typeof health !== 'string' || health === '')) problems.push(`status.health.status is ${JSON.stringify(health) ?? 'missing'}, not a health status`);
  else if (typeof health === 'string' && !HEALTH_STATUSES.includes(health)) {
    problems.push(`status.health.status "${health}" is not one of ${HEALTH_STATUSES.join(', ')} (read as Unknown)`);
  }
  if (object.spec?.source === undefined && object.spec?.sources === undefined) problems.push('spec.source is missing');
  else if (object.spec?.source && !object.spec.source.repoURL) problems.push('spec.source.repoURL is missing');
  if (isObject(object.status) && object.status.history !== undefined && !Array.isArray(object.status.history)) problems.push('status.history is not a list');
  let previous: { id: number; at: number } | undefined;
  list(object.status?.history).forEach((h, i) => {
    const entry = isObject(h) ? h : {};
    if (!text(entry.revision) && !text(list(entry.revisions)[0])) problems.push(`status.history[${i}] has no revision (entry ignored)`);
    if (!isDate(entry.deployedAt)) {
      problems.push(`status.history[${i}].deployedAt ${JSON.stringify(entry.deployedAt) ?? 'missing'} is not an RFC 3339 date (entry ignored)`);
      return;
    }
    const at = { id: Number(entry.id), at: Date.parse(entry.deployedAt) };
    // Argo CD appends with growing ids and dates; a window between two entries needs both in order.
    if (previous && (at.id <= previous.id || at.at < previous.at)) {
      problems.push(`status.history[${i}] (id ${entry.id}, ${entry.deployedAt}) is out of order after id ${previous.id}: windows are taken in id order`);
    }
    previous = at;
  });
  // A Git source's revision is the commit Argo CD synced: 40 hex digits (64 for a SHA-256 repository).
  const revision: unknown = object.status?.sync?.revision;
  if (revision !== undefined && revision !== '' && !(typeof revision === 'string' && /^([0-9a-f]{40}|[0-9a-f]{64})$/.test(revision)) && text(object.spec?.source?.chart) === undefined) {
    problems.push(`status.sync.revision ${JSON.stringify(revision)?.slice(0, 80)} is not a commit SHA`);
  }
  list(object.status?.resources).forEach((r, i) => {
    const resource = isObject(r) ? r : {};
    if (resource.kind === 'Deployment' && !text(resource.namespace)) {
      problems.push(`status.resources[${i}] (Deployment ${String(resource.name)}) has no namespace: it is not read for I3`);
    }
  });
  return problems;
}

const keyOf = (ref: AppRef) => `${ref.namespace}/${ref.name}`;

/**
 * Everything the watcher reads of an Application it is told of, in one place: what the engine
 * sees of it, its sync status, and what of it cannot be read. The watch keeps APPLICATION_FIELDS
 * of each Application; this must read no other field (argocd.fields.test.ts). Pure.
 */
export function watchedReading(object: ApplicationObject): { view: ApplicationView; syncStatus: string; problems: string } {
  return { view: applicationView(object), syncStatus: object.status?.sync?.status ?? 'Unknown', problems: shapeProblems(object).join('; ') };
}

/**
 * One copy of each value many views repeat: revisions and deployment dates (every app of a monorepo
 * names the same commits), repository URLs and branches, label values, resource kinds, groups and
 * namespaces. What only one app has (its name, uid, path) is not kept here. A value no view was
 * built with since the relist before last is forgotten, so the table holds what the views use.
 */
export class SharedStrings {
  private current = new Map<string, string>();
  private previous = new Map<string, string>();

  get(value: string): string {
    const known = this.current.get(value);
    if (known !== undefined) return known;
    const kept = this.previous.get(value) ?? value;
    this.current.set(kept, kept);
    return kept;
  }

  /** After each relist. */
  turn(): void {
    this.previous = this.current;
    this.current = new Map();
  }

  get size(): number {
    return this.current.size;
  }
}

/** The keys whose string values SharedStrings keeps (and every value under `labels`). */
const SHARED_KEYS = new Set(['revision', 'syncRevision', 'deployedAt', 'charts', 'repoURL', 'targetRevision', 'kind', 'group', 'namespace', 'health', 'destinationNamespace', 'manifestGeneratePaths']);

/**
 * The view as a copy with its repeated strings shared (SharedStrings), everything else copied as
 * it is: equal to `view`, smaller (fresh objects carry no slack either). Pure but for the table.
 */
export function shareStrings<T>(view: T, strings: SharedStrings): T {
  const copy = (value: unknown, shared: boolean): unknown => {
    if (typeof value === 'string') return shared ? strings.get(value) : value;
    if (Array.isArray(value)) return value.map((element) => copy(element, shared));
    if (typeof value !== 'object' || value === null) return value;
    const out: Record<string, unknown> = {};
    for (const [key, element] of Object.entries(value)) {
      const kept = copy(element, SHARED_KEYS.has(key) || key === 'labels' || (shared && !isObject(element)));
      // A `__proto__` key (JSON.parse makes it an own property) stays one, never the copy's prototype.
      if (key === '__proto__') Object.defineProperty(out, key, { value: kept, enumerable: true, writable: true, configurable: true });
      else out[key] = kept;
    }
    return out;
  };
  return copy(view, false) as T;
}

export interface ArgoCdRestSource {
  /** ARGOCD_URL, e.g. https://argocd.example.com */
  url: string;
  /** ARGOCD_TOKEN, sent as a bearer token; never logged. */
  token: string;
}

export interface ArgoCdWatcherOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** Namespaces to watch; all namespaces when empty or absent. */
  namespaces?: string[];
  /** Narrows the watch; the engine's own selection (labels, MONITORED_APPS, policies) happens on the views. */
  labelSelector?: string;
  /** Full relist period; 5 minutes by default. */
  relistIntervalMs?: number;
  /** Restart delays after a watch error: doubling from `initial` up to `max`, with jitter. */
  restartBackoffMs?: { initial: number; max: number };
  /** Argo CD's REST API as the source of health and sync status (ARGOCD_URL + token). */
  rest?: ArgoCdRestSource;
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
  /** Called once per change of what is wrong in an Application's status, so a person sees it as an Event. */
  onShapeProblems?: (view: ApplicationView, problems: string) => void;
  clock?: () => Date;
}

interface Entry {
  view: ApplicationView;
  syncStatus: string;
  /** What of the object could not be read, as last logged. */
  problems: string;
}

export class ArgoCdWatcher implements ArgoCdPort {
  private readonly options: ArgoCdWatcherOptions;
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;
  private readonly watch: Watch<ApplicationObject>;
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(ref: AppRef) => void>();
  private readonly strings = new SharedStrings();

  constructor(options: ArgoCdWatcherOptions) {
    this.options = options;
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.log = options.log;
    this.watch = new Watch<ApplicationObject>({
      kind: 'Application', log: options.log, namespaces: options.namespaces,
      relistIntervalMs: options.relistIntervalMs, backoffMs: options.restartBackoffMs,
      // Each Application as it arrives is cut down to what watchedReading reads; the view is what this
      // adapter keeps of it (entries), so the watch's own cache keeps only what the watch reads.
      keep: onlyWhatTheWatchReads,
      source: customObjectSource<ApplicationObject>({
        kubeConfig: options.kubeConfig, resource: { group: GROUP, version: VERSION, plural: PLURAL },
        calls: { list: 'listApplications', watch: 'watchApplications' }, labelSelector: options.labelSelector,
        metrics: options.metrics, timeoutMs: options.timeoutMs, backoffMs: options.backoffMs,
        transform: projectApplication,
      }),
    });
    this.watch.on((event) => {
      if (event.type === 'added' || event.type === 'modified') this.upsert(event.object);
      else if (event.type === 'deleted') this.remove(keyOf(applicationView(event.object).ref));
      else this.strings.turn();
    });
  }

  /** Starts the watch; resolves after the first attempt (see synced() for the first full list). */
  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  /** Resolves once every watched namespace has been listed in full (for /readyz). */
  synced(): Promise<void> {
    return this.watch.synced();
  }

  isSynced(): boolean {
    return this.watch.isSynced();
  }

  /** Calls `listener` whenever an Application's view or sync status changes, or it goes away. Returns an unsubscribe. */
  onChange(listener: (ref: AppRef) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async getApplication(ref: AppRef): Promise<ApplicationView | undefined> {
    return this.entries.get(keyOf(ref))?.view;
  }

  async readApplication(ref: AppRef): Promise<ApplicationView | undefined> {
    try {
      const object = await this.call('getApplication', () => this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: ref.namespace, name: ref.name })) as ApplicationObject;
      return { ...applicationView(object), ...this.watchedFacts(keyOf(ref), healthOf(object.status?.health?.status)) };
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  async listApplications(): Promise<ApplicationView[]> {
    return [...this.entries.values()].map((e) => e.view);
  }

  async getApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined> {
    const view = this.options.rest ? await this.fetchView('getApplicationHealth', ref) : this.entries.get(keyOf(ref))?.view;
    if (!view) return undefined;
    // An Application Argo CD has not assessed yet has no health: Unknown, never Healthy.
    return { status: view.health ?? 'Unknown', ...(view.syncRevision ? { revision: view.syncRevision } : {}) };
  }

  async readApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined> {
    const view = this.options.rest ? await this.fetchView('readApplicationHealth', ref) : await this.readApplication(ref);
    return view && { status: view.health ?? 'Unknown', ...(view.syncRevision ? { revision: view.syncRevision } : {}) };
  }

  async getApplicationSyncStatus(ref: AppRef): Promise<{ status: string; revision?: string } | undefined> {
    if (this.options.rest) {
      const object = await this.fetchApplication('getApplicationSyncStatus', ref);
      return object && syncAnswer(applicationView(object), object.status?.sync?.status);
    }
    const entry = this.entries.get(keyOf(ref));
    return entry && syncAnswer(entry.view, entry.syncStatus);
  }

  // ---- the cache of views ----------------------------------------------------

  private upsert(object: ApplicationObject): void {
    const read = watchedReading(object);
    const key = keyOf(read.view.ref);
    const view = { ...read.view, ...this.watchedFacts(key, read.view.health) };
    const previous = this.entries.get(key);
    // An update that changes neither the view, the sync status nor what is wrong wakes nobody.
    if (previous && previous.syncStatus === read.syncStatus && previous.problems === read.problems && isDeepStrictEqual(previous.view, view)) return;
    // Once per change of what is wrong, not per update or relist.
    if (read.problems !== '' && read.problems !== previous?.problems) {
      this.log.warn('Application status not understood; what it names is ignored', { app: key, problems: read.problems });
      this.options.onShapeProblems?.(view, read.problems);
    }
    this.entries.set(key, { view: shareStrings(view, this.strings), syncStatus: read.syncStatus, problems: read.problems });
    this.notify(view.ref);
  }

  /** What only the watch knows of an app: since when its health has been Degraded without a break. */
  private watchedFacts(key: string, health: HealthStatus | undefined): { degradedSince?: string } {
    const since = nextDegradedSince(this.entries.get(key)?.view, health, (this.options.clock ?? (() => new Date()))());
    return since ? { degradedSince: since } : {};
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.notify(entry.view.ref);
  }

  private notify(ref: AppRef): void {
    for (const listener of this.listeners) {
      try {
        listener(ref);
      } catch (error) {
        // One faulty listener must neither stop the others nor break the watch.
        this.log.error('Application change listener failed', { namespace: ref.namespace, name: ref.name, error: messageOf(error) });
      }
    }
  }

  // ---- the optional REST source ----------------------------------------------

  private async fetchView(callName: string, ref: AppRef): Promise<ApplicationView | undefined> {
    const object = await this.fetchApplication(callName, ref);
    return object && applicationView(object);
  }

  private async fetchApplication(callName: string, ref: AppRef): Promise<ApplicationObject | undefined> {
    const rest = this.options.rest!;
    const url = `${rest.url.replace(/\/+$/, '')}/api/v1/applications/${encodeURIComponent(ref.name)}?${new URLSearchParams({ appNamespace: ref.namespace })}`;
    try {
      return await this.call(callName, async (signal) => {
        const response = await fetch(url, { signal, headers: { authorization: `Bearer ${rest.token}`, accept: 'application/json' } });
        if (!response.ok) {
          // Argo CD explains errors as {"error", "code", "message"}; the message is enough.
          const body = await response.text();
          throw new HttpStatusError('ArgoCd', response.status, response.headers, body.slice(0, 300));
        }
        return await response.json() as ApplicationObject;
      });
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  private call<T>(name: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return call(name, run, { classify: classifyHttpError, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}

function syncAnswer(view: ApplicationView, status: string | undefined): { status: string; revision?: string } {
  return { status: status || 'Unknown', ...(view.syncRevision ? { revision: view.syncRevision } : {}) };
}

// Client errors can carry whole response bodies; a log line needs the gist.
function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 300);
}
