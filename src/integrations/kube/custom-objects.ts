// The API server as a WatchSource (kube/watch.ts) for one kind — a custom resource, or a built-in
// kind listed through its typed API (objectSource): lists page by page and opens watches through
// call(), so a refused or failed request is a classified IntegrationError, timed and counted like any other.
// Every object is cut down as it arrives, page by page and event by event (client-go's informer
// transforms): what no reader reads — managedFields, kubectl's last-applied-configuration — is
// never kept, and a kind's own `transform` keeps only what its readers read, so a full list of
// 25,000 objects never sits in memory whole.
import { CustomObjectsApi, Watch as KubeWatch, type KubeConfig } from '@kubernetes/client-node';
import { IntegrationError } from '../../ports/errors.ts';
import { call, classifyHttpError, type CallMetrics } from '../call.ts';
import { ResourceVersionGone, type KubeObject, type OpenWatch, type WatchSource, type WireEvent } from './watch.ts';

const LIST_PAGE = 500;

/** How a client of one custom resource kind calls the API server and keeps its watch. */
export interface CustomObjectsOptions {
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
  /** The watch's full relist period and restart backoff (kube/watch.ts defaults when absent). */
  relistIntervalMs?: number;
  restartBackoffMs?: { initial: number; max: number };
}

export interface CustomResource {
  group: string;
  version: string;
  plural: string;
}

export interface CustomObjectSourceOptions<T extends KubeObject = KubeObject> {
  kubeConfig: KubeConfig;
  resource: CustomResource;
  /** Call names for metrics and errors: `listApplications`, `watchApplications`. */
  calls: { list: string; watch: string };
  labelSelector?: string;
  /** The server ends each watch after this long (its timeoutSeconds); the server's default when absent. */
  watchTimeoutSeconds?: number;
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
  /**
   * What is kept of each object (after stripUnread), as it arrives: everything the kind's readers read,
   * and metadata.namespace, name and resourceVersion, which the watch itself reads. The whole object when absent.
   */
  transform?: (object: T) => T;
}

/** kubectl's copy of the last applied manifest, on every object `kubectl apply` wrote: read by nobody here. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The object without what no reader of a watched kind reads: metadata.managedFields (often half
 * an object's size) and the last-applied-configuration annotation (a whole copy of its spec).
 * New objects, never `delete`: an object that loses a property in V8 falls back to a slower,
 * larger dictionary form. Pure.
 */
export function stripUnread<T extends KubeObject>(object: T): T {
  const metadata = object.metadata as (KubeObject['metadata'] & { managedFields?: unknown; annotations?: Record<string, string> }) | undefined;
  if (!metadata || typeof metadata !== 'object') return object;
  const annotations = metadata.annotations;
  const lastApplied = annotations !== null && typeof annotations === 'object' && LAST_APPLIED_ANNOTATION in annotations;
  if (metadata.managedFields === undefined && !lastApplied) return object;
  const { managedFields: _managedFields, annotations: _annotations, ...rest } = metadata;
  let kept: Record<string, string> | undefined = annotations;
  if (lastApplied) {
    const { [LAST_APPLIED_ANNOTATION]: _lastApplied, ...others } = annotations!;
    kept = Object.keys(others).length > 0 ? others : undefined;
  }
  return { ...object, metadata: { ...rest, ...(kept !== undefined ? { annotations: kept } : {}) } };
}

export function customObjectSource<T extends KubeObject>(options: CustomObjectSourceOptions<T>): WatchSource<T> {
  const api = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const { group, version, plural } = options.resource;
  return objectSource<T>({
    ...options,
    path: (namespace) => (namespace ? `/apis/${group}/${version}/namespaces/${namespace}/${plural}` : `/apis/${group}/${version}/${plural}`),
    listPage: (namespace, page) => (namespace
      ? api.listNamespacedCustomObject({ group, version, plural, ...page, namespace })
      : api.listClusterCustomObject({ group, version, plural, ...page })) as Promise<ListPage<T>>,
  });
}

/** One page of a list, as the API server answers it. */
export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

export interface ObjectSourceOptions<T extends KubeObject> extends Omit<CustomObjectSourceOptions<T>, 'resource'> {
  /** The collection's path (`/api/v1/namespaces/{namespace}/pods`), all namespaces when undefined. */
  path(namespace: string | undefined): string;
  /** One page of the list. */
  listPage(namespace: string | undefined, page: { labelSelector?: string; limit: number; _continue?: string }): Promise<ListPage<T>>;
}

/**
 * The API server as a WatchSource for any kind (a custom resource, or a built-in one such as Pods
 * listed through its typed API): the list page by page, the watch on `path`, both through call().
 */
export function objectSource<T extends KubeObject>(options: ObjectSourceOptions<T>): WatchSource<T> {
  const watcher = new KubeWatch(options.kubeConfig);
  const callOptions = { classify: classifyHttpError, metrics: options.metrics, timeoutMs: options.timeoutMs, backoffMs: options.backoffMs };
  const transform = options.transform;
  const keep = (object: T): T => (transform ? transform(stripUnread(object)) : stripUnread(object));
  const kept = (event: WireEvent<T>): WireEvent<T> => (event.type === 'ERROR' || event.type === 'BOOKMARK' ? event : { type: event.type, object: keep(event.object) });

  return {
    // A full list, page by page (10,000 Applications must not be one response).
    async list(namespace) {
      const items: T[] = [];
      let resourceVersion = '';
      let next: string | undefined;
      do {
        const request = { labelSelector: options.labelSelector, limit: LIST_PAGE, _continue: next };
        const page = await call(options.calls.list, () => options.listPage(namespace, request), callOptions);
        // Each page is cut down before the next is read: the whole list is never held as it came.
        for (const item of page.items) items.push(keep(item));
        resourceVersion = page.metadata?.resourceVersion ?? '';
        next = page.metadata?.continue || undefined;
      } while (next);
      return { items, resourceVersion };
    },

    async watch(namespace, resourceVersion, onEvent, onEnd) {
      const query = {
        resourceVersion, allowWatchBookmarks: true,
        ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
        ...(options.watchTimeoutSeconds ? { timeoutSeconds: options.watchTimeoutSeconds } : {}),
      };
      try {
        // The backoff between watches is the Watch's own: an open that fails is not retried here.
        return await call(options.calls.watch, (signal) => open<T>(watcher, options.path(namespace), query, (event) => onEvent(kept(event)), onEnd, signal), { ...callOptions, backoffMs: [] });
      } catch (error) {
        if (error instanceof IntegrationError && statusOf(error.cause) === 410) throw new ResourceVersionGone(error.message);
        throw error;
      }
    },
  };
}

/**
 * client-node's Watch reports a refused or failed open through `done` before its
 * promise resolves; here that is a rejection, and `onEnd` hears only of the end
 * of a watch that was open.
 */
async function open<T>(
  watcher: KubeWatch, path: string, query: Record<string, string | number | boolean>,
  onEvent: (event: WireEvent<T>) => void, onEnd: (error?: unknown) => void, signal: AbortSignal,
): Promise<OpenWatch> {
  let opened = false;
  let failed: { error: unknown } | undefined;
  const controller = await watcher.watch(path, query, (type, object) => onEvent({ type, object } as WireEvent<T>), (error: unknown) => {
    if (opened) onEnd(clientTimeout(error) ? undefined : error ?? undefined);
    else failed = { error: refusal(error) };
  });
  if (signal.aborted) {
    // call() gave up waiting: this watch is nobody's.
    controller.abort();
    throw signal.reason;
  }
  if (failed) throw failed.error;
  opened = true;
  return { close: () => controller.abort() };
}

/** client-node aborts a watch that sent nothing for 30 s: a quiet watch, to be resumed, not a failure. */
function clientTimeout(error: unknown): boolean {
  return (error as { name?: string } | null)?.name === 'TimeoutError';
}

/** client-node says `statusCode` where classifyHttpError reads `status`. */
function refusal(error: unknown): unknown {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  if (error instanceof Error && typeof status === 'number') return Object.assign(error, { status });
  return error ?? new Error('watch closed while opening');
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' ? status : undefined;
}
