// One way to watch a kind, for every kind the operator reads (client-go's
// reflector, smaller). Each scope (a namespace, or all of them) is listed, then
// watched from the list's resourceVersion. A watch the server closes is resumed
// from the last resourceVersion seen; one that fails is restarted after a backoff
// (doubling, capped, reset once a watch has stayed up for a while) with a fresh
// list, so what was deleted while nobody watched leaves the cache. A relist
// every few minutes is the safety net against a watch that stalls silently.
// Pure logic over a WatchSource (kube/custom-objects.ts is the API server's), so
// every path is tested without one.
import type { Logger } from '../../observability/log.ts';

export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

/** What the API server sends on a watch (its wire format). */
export type WireEvent<T> =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: T }
  | { type: 'ERROR'; object: { code?: number; message?: string } };

export interface OpenWatch {
  close(): void;
}

export interface WatchSource<T> {
  /** Every object of the scope (all namespaces when undefined), and the list's resourceVersion. */
  list(namespace: string | undefined): Promise<{ items: T[]; resourceVersion: string }>;
  /**
   * Opens a watch from `resourceVersion`; resolves once it is open, rejects if it
   * could not be (ResourceVersionGone when the server no longer has that version).
   * `onEnd` is called once, after that, when the watch ends: with an error, or
   * without one when the server closed it (its timeoutSeconds, a client inactivity timeout).
   */
  watch(namespace: string | undefined, resourceVersion: string, onEvent: (event: WireEvent<T>) => void, onEnd: (error?: unknown) => void): Promise<OpenWatch>;
}

/** The server no longer has the resourceVersion a watch asked for (HTTP 410): only a fresh list helps. */
export class ResourceVersionGone extends Error {
  constructor(message = 'resourceVersion too old') {
    super(message);
    this.name = 'ResourceVersionGone';
  }
}

export type WatchEvent<T> =
  /** `listed`: seen in a (re)list, so it changed at some time while nobody watched, not just now. */
  | { type: 'added'; object: T; listed?: true }
  | { type: 'modified'; object: T; previous: T; listed?: true }
  | { type: 'deleted'; object: T }
  /** A full list of a scope was applied to the cache (after its added/modified/deleted events). */
  | { type: 'relisted'; namespace?: string; objects: number };

export interface WatchOptions<T> {
  /** The kind, as log lines name it: `Application`. */
  kind: string;
  source: WatchSource<T>;
  log: Logger;
  /** One watch per namespace; all namespaces when empty or absent. */
  namespaces?: readonly string[];
  /** Full relist period; 5 minutes by default. */
  relistIntervalMs?: number;
  /** Restart delays after a failure: doubling from `initial` up to `max`, with jitter. */
  backoffMs?: { initial: number; max: number };
  /** A failure this long after the previous one starts the backoff afresh; 2 minutes by default (client-go's). */
  healthyAfterMs?: number;
  random?: () => number;
  /**
   * What the cache keeps of each object, when not all of it: a kind whose listener keeps its own
   * reading of each object needs only what the watch itself reads (onlyWhatTheWatchReads). Listeners
   * are told of an added or modified object as it came; `previous`, a deleted object, get() and
   * list() are what was kept.
   */
  keep?: (object: T) => T;
}

/** Of an object, what the watch itself reads: its namespace, name and resourceVersion. Pure. */
export function onlyWhatTheWatchReads<T extends KubeObject>(object: T): T {
  const { namespace, name, resourceVersion } = object.metadata ?? {};
  return { metadata: { ...(namespace !== undefined ? { namespace } : {}), ...(name !== undefined ? { name } : {}), ...(resourceVersion !== undefined ? { resourceVersion } : {}) } } as T;
}

interface Scope {
  namespace?: string;
  /** Bumped per (re)connect; what an older generation's list or watch reports is dropped. */
  generation: number;
  resourceVersion: string;
  watch?: OpenWatch;
  synced: boolean;
  /** Listing, or waiting to restart: a periodic relist leaves it alone. */
  busy: boolean;
  failures: number;
  lastFailureAt: number;
  restartTimer?: NodeJS.Timeout;
}

/** A watch closed by the server this soon without a single event is not healthy: resuming at once could spin. */
const SHORTEST_HEALTHY_WATCH_MS = 1000;

const keyOf = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ''}/${name ?? ''}`;

export class Watch<T extends KubeObject> {
  private readonly options: WatchOptions<T>;
  private readonly scopes: Scope[];
  private readonly cache = new Map<string, T>();
  private readonly listeners = new Set<(event: WatchEvent<T>) => void>();
  private stopped = true;
  private relistTimer?: NodeJS.Timeout;
  private markSynced!: () => void;
  private readonly syncedPromise = new Promise<void>((resolve) => (this.markSynced = resolve));

  constructor(options: WatchOptions<T>) {
    this.options = options;
    const namespaces = options.namespaces?.length ? [...new Set(options.namespaces)] : [undefined];
    this.scopes = namespaces.map((namespace) => ({ ...(namespace ? { namespace } : {}), generation: 0, resourceVersion: '', synced: false, busy: false, failures: 0, lastFailureAt: 0 }));
  }

  /** Lists and watches every scope; resolves after the first attempt (see synced() for the first full list). Never rejects. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await Promise.all(this.scopes.map((scope) => this.connect(scope)));
    this.relistTimer = setInterval(() => this.relist(), this.options.relistIntervalMs ?? 5 * 60_000);
    this.relistTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.relistTimer);
    for (const scope of this.scopes) {
      clearTimeout(scope.restartTimer);
      scope.restartTimer = undefined;
      this.supersede(scope);
    }
  }

  /** Resolves once every scope has been listed in full. */
  synced(): Promise<void> {
    return this.syncedPromise;
  }

  isSynced(): boolean {
    return this.scopes.every((s) => s.synced);
  }

  /** Calls `listener` for every change of the cache. Returns an unsubscribe. */
  on(listener: (event: WatchEvent<T>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(keyOf(namespace, name));
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  // ---- list and watch ------------------------------------------------------

  /** A fresh list, then a watch from it. Never rejects: a failure schedules the restart. */
  private async connect(scope: Scope): Promise<void> {
    if (this.stopped) return;
    scope.busy = true;
    const generation = this.supersede(scope);
    let list: { items: T[]; resourceVersion: string };
    try {
      list = await this.options.source.list(scope.namespace);
    } catch (error) {
      if (generation === scope.generation) this.restartLater(scope, error);
      return;
    }
    if (generation !== scope.generation) return;
    this.replace(scope, list.items);
    scope.resourceVersion = list.resourceVersion;
    if (!scope.synced) {
      scope.synced = true;
      this.options.log.info(`Synced ${this.options.kind} cache`, { namespace: scope.namespace ?? '*', objects: list.items.length });
      if (this.isSynced()) this.markSynced();
    }
    await this.open(scope, generation);
    if (generation === scope.generation && !scope.restartTimer) scope.busy = false;
  }

  /** Opens the watch from the scope's resourceVersion. Never rejects. */
  private async open(scope: Scope, generation: number): Promise<void> {
    const opened = Date.now();
    let events = 0;
    let streamError: unknown;
    const live = () => generation === scope.generation && !this.stopped;
    const onEvent = (event: WireEvent<T>) => {
      if (!live()) return;
      events++;
      if (event.type === 'ERROR') {
        // The server says why it is about to end the watch; 410: the version is gone.
        streamError = event.object.code === 410 ? new ResourceVersionGone(event.object.message) : new Error(`watch error ${event.object.code ?? ''}: ${event.object.message ?? ''}`);
        return;
      }
      const version = event.object.metadata?.resourceVersion;
      if (version) scope.resourceVersion = version;
      if (event.type === 'ADDED' || event.type === 'MODIFIED') this.upsert(event.object);
      else if (event.type === 'DELETED') this.remove(keyOf(event.object.metadata?.namespace, event.object.metadata?.name));
    };
    const onEnd = (error?: unknown) => {
      if (!live()) return;
      scope.watch = undefined;
      const failure = streamError ?? error;
      if (failure instanceof ResourceVersionGone) void this.connect(scope);
      else if (failure !== undefined) this.restartLater(scope, failure);
      else if (events === 0 && Date.now() - opened < SHORTEST_HEALTHY_WATCH_MS) this.restartLater(scope, new Error('watch closed at once without an event'));
      else void this.open(scope, generation);
    };
    try {
      const watch = await this.options.source.watch(scope.namespace, scope.resourceVersion, onEvent, onEnd);
      if (!live()) return watch.close();
      scope.watch = watch;
    } catch (error) {
      if (!live()) return;
      if (error instanceof ResourceVersionGone) return void this.connect(scope);
      return this.restartLater(scope, error);
    }
  }

  /** Ends the scope's current list or watch; returns the generation of what replaces it. */
  private supersede(scope: Scope): number {
    // First the generation: closing may report the end at once, and that end is nobody's news.
    const generation = ++scope.generation;
    scope.watch?.close();
    scope.watch = undefined;
    return generation;
  }

  private restartLater(scope: Scope, error: unknown): void {
    if (this.stopped || scope.restartTimer) return;
    this.supersede(scope);
    scope.busy = true;
    const { initial, max } = this.options.backoffMs ?? { initial: 1000, max: 30_000 };
    // Healthy since the last failure (its watch resumed across server timeouts alone): start again from `initial`.
    if (Date.now() - scope.lastFailureAt >= (this.options.healthyAfterMs ?? 120_000)) scope.failures = 0;
    scope.lastFailureAt = Date.now();
    const delay = Math.min(max, initial * 2 ** scope.failures) * (0.5 + (this.options.random ?? Math.random)() / 2);
    scope.failures++;
    this.options.log.warn(`${this.options.kind} watch failed; restarting it`, { namespace: scope.namespace ?? '*', error: messageOf(error), failures: scope.failures, restartInMs: Math.round(delay) });
    scope.restartTimer = setTimeout(() => {
      scope.restartTimer = undefined;
      void this.connect(scope);
    }, delay);
    scope.restartTimer.unref();
  }

  private relist(): void {
    for (const scope of this.scopes) {
      if (scope.busy || this.stopped) continue;
      this.options.log.debug(`Relisting ${this.options.kind} objects`, { namespace: scope.namespace ?? '*' });
      void this.connect(scope);
    }
  }

  // ---- the cache -----------------------------------------------------------

  /** A full list of the scope: what it lacks was deleted while nobody watched. */
  private replace(scope: Scope, items: readonly T[]): void {
    const present = new Set<string>();
    for (const object of items) {
      present.add(keyOf(object.metadata?.namespace, object.metadata?.name));
      this.upsert(object, true);
    }
    for (const [key, object] of this.cache) {
      const inScope = scope.namespace === undefined || object.metadata?.namespace === scope.namespace;
      if (inScope && !present.has(key)) this.remove(key);
    }
    this.emit({ type: 'relisted', ...(scope.namespace ? { namespace: scope.namespace } : {}), objects: items.length });
  }

  private upsert(object: T, listed = false): void {
    const key = keyOf(object.metadata?.namespace, object.metadata?.name);
    const previous = this.cache.get(key);
    // A relist hands back every object unchanged: the same version is no news.
    if (previous && previous.metadata?.resourceVersion !== undefined && previous.metadata.resourceVersion === object.metadata?.resourceVersion) return;
    this.cache.set(key, this.options.keep ? this.options.keep(object) : object);
    const from = listed ? { listed: true as const } : {};
    this.emit(previous ? { type: 'modified', object, previous, ...from } : { type: 'added', object, ...from });
  }

  private remove(key: string): void {
    const object = this.cache.get(key);
    if (!object) return;
    this.cache.delete(key);
    this.emit({ type: 'deleted', object });
  }

  private emit(event: WatchEvent<T>): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        // One faulty listener must neither stop the others nor break the watch.
        this.options.log.error(`${this.options.kind} watch listener failed`, { event: event.type, error: messageOf(error) });
      }
    }
  }
}

// Client errors can carry whole response bodies; a log line needs the gist.
function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 300);
}
