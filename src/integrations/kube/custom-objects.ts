// The API server as a WatchSource (kube/watch.ts) for one kind — a custom resource, or a built-in
// kind listed through its typed API (objectSource): lists page by page and opens watches through
// call(), so a refused or failed request is a classified IntegrationError, timed and counted like any other.
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

export interface CustomObjectSourceOptions {
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
}

export function customObjectSource<T extends KubeObject>(options: CustomObjectSourceOptions): WatchSource<T> {
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

export interface ObjectSourceOptions<T> extends Omit<CustomObjectSourceOptions, 'resource'> {
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

  return {
    // A full list, page by page (10,000 Applications must not be one response).
    async list(namespace) {
      const items: T[] = [];
      let resourceVersion = '';
      let next: string | undefined;
      do {
        const request = { labelSelector: options.labelSelector, limit: LIST_PAGE, _continue: next };
        const page = await call(options.calls.list, () => options.listPage(namespace, request), callOptions);
        items.push(...page.items);
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
        return await call(options.calls.watch, (signal) => open(watcher, options.path(namespace), query, onEvent, onEnd, signal), { ...callOptions, backoffMs: [] });
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
