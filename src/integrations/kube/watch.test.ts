import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../observability/log.ts';
import { onlyWhatTheWatchReads, ResourceVersionGone, Watch, type WatchEvent, type WatchSource, type WireEvent } from './watch.ts';

interface Obj {
  metadata: { namespace: string; name: string; resourceVersion: string };
  data?: string;
}

interface FakeWatch {
  namespace?: string;
  resourceVersion: string;
  onEvent: (event: WireEvent<Obj>) => void;
  onEnd: (error?: unknown) => void;
  closed: boolean;
}

/** An API server in memory: objects with resourceVersions, lists, and watches it can end or break. */
class FakeServer implements WatchSource<Obj> {
  private version = 100;
  readonly objects = new Map<string, Obj>();
  readonly lists: Array<string | undefined> = [];
  readonly watches: FakeWatch[] = [];
  /** The next lists / watch opens fail with these, in order. */
  readonly listFailures: unknown[] = [];
  readonly watchFailures: unknown[] = [];

  async list(namespace: string | undefined) {
    this.lists.push(namespace);
    if (this.listFailures.length > 0) throw this.listFailures.shift();
    const items = [...this.objects.values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace);
    return { items: structuredClone(items), resourceVersion: String(this.version) };
  }

  async watch(namespace: string | undefined, resourceVersion: string, onEvent: FakeWatch['onEvent'], onEnd: FakeWatch['onEnd']) {
    if (this.watchFailures.length > 0) throw this.watchFailures.shift();
    const watch: FakeWatch = { ...(namespace ? { namespace } : {}), resourceVersion, onEvent, onEnd, closed: false };
    this.watches.push(watch);
    return { close: () => void (watch.closed = true) };
  }

  open(): FakeWatch[] {
    return this.watches.filter((w) => !w.closed);
  }

  /** Writes an object; open watches of its namespace hear of it unless `unseen`. */
  put(namespace: string, name: string, data = '', unseen = false): void {
    const object = { metadata: { namespace, name, resourceVersion: String(++this.version) }, data };
    const type = this.objects.has(`${namespace}/${name}`) ? 'MODIFIED' : 'ADDED';
    this.objects.set(`${namespace}/${name}`, object);
    if (!unseen) this.tell(namespace, { type, object: structuredClone(object) });
  }

  delete(namespace: string, name: string, unseen = false): void {
    const object = this.objects.get(`${namespace}/${name}`)!;
    this.objects.delete(`${namespace}/${name}`);
    ++this.version;
    if (!unseen) this.tell(namespace, { type: 'DELETED', object: { ...object, metadata: { ...object.metadata, resourceVersion: String(this.version) } } });
  }

  /** Ends every open watch: cleanly (the server's timeoutSeconds), or with an error (a cut connection). */
  end(error?: unknown): void {
    for (const watch of this.open()) {
      watch.closed = true;
      watch.onEnd(error);
    }
  }

  tell(namespace: string, event: WireEvent<Obj>): void {
    for (const watch of this.open()) if (watch.namespace === undefined || watch.namespace === namespace) watch.onEvent(event);
  }
}

function logSink() {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, log: createLogger('DEBUG', {}, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)) };
}

describe('Watch', () => {
  let server: FakeServer;
  let sink: ReturnType<typeof logSink>;
  let watch: Watch<Obj>;
  let events: string[];

  beforeEach(() => {
    vi.useFakeTimers();
    server = new FakeServer();
    sink = logSink();
    events = [];
  });
  afterEach(async () => {
    await watch?.stop();
    vi.useRealTimers();
  });

  function watching(options: Partial<ConstructorParameters<typeof Watch<Obj>>[0]> = {}): Watch<Obj> {
    watch = new Watch<Obj>({ kind: 'Thing', source: server, log: sink.log, backoffMs: { initial: 1000, max: 8000 }, random: () => 1, ...options });
    watch.on((event: WatchEvent<Obj>) => events.push(event.type === 'relisted' ? `relisted ${event.namespace ?? '*'}` : `${event.type} ${event.object.metadata.name}`));
    return watch;
  }
  const names = () => watch.list().map((o) => o.metadata.name).sort();
  const failures = () => sink.lines.filter((l) => l.message === 'Thing watch failed; restarting it');

  it('lists, then watches from the list\'s resourceVersion, keeping a cache by namespace and name', async () => {
    server.put('a', 'one', 'v1');
    server.put('a', 'two');
    const w = watching();
    expect(w.isSynced()).toBe(false);
    await w.start();
    await w.synced();
    expect(w.isSynced()).toBe(true);
    expect(names()).toEqual(['one', 'two']);
    expect(server.watches).toHaveLength(1);
    expect(server.watches[0]!.resourceVersion).toBe('102');

    server.put('a', 'one', 'v2');
    server.put('a', 'three');
    server.delete('a', 'two');
    expect(w.get('a', 'one')?.data).toBe('v2');
    expect(w.get('b', 'one')).toBeUndefined();
    expect(names()).toEqual(['one', 'three']);
    expect(events).toEqual(['added one', 'added two', 'relisted *', 'modified one', 'added three', 'deleted two']);
  });

  it('keeps only what `keep` keeps, and still tells listeners of each object as it came, once per version', async () => {
    server.put('a', 'one', 'v1');
    const seen: Array<WatchEvent<Obj>> = [];
    const w = watching({ keep: onlyWhatTheWatchReads });
    w.on((event) => seen.push(event));
    await w.start();
    server.put('a', 'one', 'v2');
    expect(w.get('a', 'one')).toEqual({ metadata: { namespace: 'a', name: 'one', resourceVersion: '102' } });
    expect(seen.map((e) => (e.type === 'relisted' ? e.type : `${e.type} ${e.object.data}${e.type === 'modified' ? ` (was ${String(e.previous.data)})` : ''}`)))
      .toEqual(['added v1', 'relisted', 'modified v2 (was undefined)']);
    // A relist of the same version is no news; one without the object deletes what was kept of it.
    server.put('b', 'two', 'x', true);
    server.delete('a', 'one', true);
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    expect(names()).toEqual(['two']);
    expect(events.slice(-3)).toEqual(['added two', 'deleted one', 'relisted *']);
    expect(w.get('b', 'two')).toEqual({ metadata: { namespace: 'b', name: 'two', resourceVersion: '103' } });
  });

  it('resumes a watch the server ended from the last resourceVersion seen, without a list', async () => {
    server.put('a', 'one');
    await watching().start();
    server.put('a', 'one', 'changed');
    // The server's timeoutSeconds ran out
    await vi.advanceTimersByTimeAsync(5000);
    server.end();
    await vi.advanceTimersByTimeAsync(0);
    expect(server.lists).toHaveLength(1);
    expect(server.open()).toHaveLength(1);
    expect(server.open()[0]!.resourceVersion).toBe('102');
    // And what happens next arrives on the new watch
    server.delete('a', 'one');
    expect(names()).toEqual([]);
    expect(failures()).toEqual([]);
  });

  it('relists after a dropped watch and prunes what was deleted while it was down', async () => {
    server.put('a', 'kept');
    server.put('a', 'short-lived');
    await watching().start();
    expect(names()).toEqual(['kept', 'short-lived']);

    // Given the connection breaks
    server.end(new Error('socket hang up'));
    // When, unseen, one object changes, one is deleted and one is created
    server.put('a', 'kept', 'changed', true);
    server.delete('a', 'short-lived', true);
    server.put('a', 'new', '', true);
    expect(names()).toEqual(['kept', 'short-lived']);
    expect(failures()).toEqual([expect.objectContaining({ level: 'WARN', namespace: '*', error: 'socket hang up', failures: 1, restartInMs: 1000 })]);

    // Then after the backoff a fresh list brings the cache up to date
    events.length = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.lists).toHaveLength(2);
    expect(names()).toEqual(['kept', 'new']);
    expect(watch.get('a', 'kept')?.data).toBe('changed');
    expect(events).toEqual(['modified kept', 'added new', 'deleted short-lived', 'relisted *']);
    // And the new watch starts from the new list
    expect(server.open().map((w) => w.resourceVersion)).toEqual(['105']);
  });

  it('backs off doubling up to the cap, and starts again from the first delay after a healthy period', async () => {
    await watching({ healthyAfterMs: 60_000 }).start();
    // Given every list fails for a while
    server.listFailures.push(...Array.from({ length: 5 }, (_, i) => new Error(`refused ${i}`)));
    server.end(new Error('connection reset'));
    await vi.advanceTimersByTimeAsync(1000 + 2000 + 4000 + 8000 + 8000 + 8000);
    expect(failures().map((l) => l.restartInMs)).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    expect(server.lists).toHaveLength(7);
    expect(server.open()).toHaveLength(1);

    // When the watch then stays up longer than the healthy period and breaks again
    await vi.advanceTimersByTimeAsync(60_000);
    server.end(new Error('connection reset'));
    // Then the backoff starts again from its first delay
    expect(failures().at(-1)).toMatchObject({ restartInMs: 1000, failures: 1 });

    // But a failure soon after the last one keeps growing it
    await vi.advanceTimersByTimeAsync(1000);
    server.end(new Error('connection reset'));
    expect(failures().at(-1)).toMatchObject({ restartInMs: 2000, failures: 2 });
  });

  it('jitters each delay between half and all of the schedule', async () => {
    await watching({ random: () => 0 }).start();
    server.end(new Error('boom'));
    expect(failures()[0]).toMatchObject({ restartInMs: 500 });
  });

  it('relists at once when the server no longer has the watched resourceVersion', async () => {
    server.put('a', 'one');
    await watching().start();
    server.delete('a', 'one', true);
    // In the stream, as kube-apiserver says it
    server.tell('a', { type: 'ERROR', object: { code: 410, message: 'too old resource version: 101 (105)' } });
    server.end();
    await vi.advanceTimersByTimeAsync(0);
    expect(server.lists).toHaveLength(2);
    expect(names()).toEqual([]);
    // Or when opening the watch again after the server ended it
    server.watchFailures.push(new ResourceVersionGone());
    await vi.advanceTimersByTimeAsync(5000);
    server.end();
    await vi.advanceTimersByTimeAsync(0);
    expect(server.lists).toHaveLength(3);
    expect(server.open()).toHaveLength(1);
    expect(failures()).toEqual([]);
  });

  it('backs off instead of spinning when the server ends every watch at once without an event', async () => {
    await watching().start();
    server.end();
    await vi.advanceTimersByTimeAsync(0);
    expect(server.open()).toHaveLength(0);
    expect(failures()).toEqual([expect.objectContaining({ error: 'watch closed at once without an event', restartInMs: 1000 })]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.open()).toHaveLength(1);
  });

  it('restarts a watch that could not be opened', async () => {
    server.watchFailures.push(new Error('HTTP 503'));
    await watching().start();
    expect(watch.isSynced()).toBe(true);
    expect(failures()).toEqual([expect.objectContaining({ error: 'HTTP 503' })]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.open()).toHaveLength(1);
  });

  it('relists periodically; a relist that finds nothing new tells nobody of a change', async () => {
    server.put('a', 'one');
    await watching({ relistIntervalMs: 10_000 }).start();
    events.length = 0;
    await vi.advanceTimersByTimeAsync(25_000);
    expect(server.lists).toHaveLength(3);
    expect(events).toEqual(['relisted *', 'relisted *']);
    // Each relist replaces the watch: one stays open
    expect(server.open()).toHaveLength(1);
    // A change the watch missed is caught by the next relist
    server.put('a', 'one', 'missed', true);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(watch.get('a', 'one')?.data).toBe('missed');
  });

  it('watches each namespace on its own: one namespace\'s relist leaves the other\'s objects alone', async () => {
    server.put('a', 'in-a');
    server.put('b', 'in-b');
    server.put('c', 'in-c');
    await watching({ namespaces: ['a', 'b', 'a'] }).start();
    expect(server.lists.sort()).toEqual(['a', 'b']);
    expect(names()).toEqual(['in-a', 'in-b']);

    const [inA] = server.open().filter((w) => w.namespace === 'a');
    inA!.closed = true;
    inA!.onEnd(new Error('reset'));
    expect(failures()).toEqual([expect.objectContaining({ namespace: 'a' })]);
    server.delete('a', 'in-a', true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(names()).toEqual(['in-b']);
    server.put('b', 'also-b');
    expect(names()).toEqual(['also-b', 'in-b']);
  });

  it('stop() closes the watch, cancels a pending restart, and hears nothing after', async () => {
    server.put('a', 'one');
    await watching().start();
    server.end(new Error('reset'));
    await watch.stop();
    await vi.advanceTimersByTimeAsync(60 * 60_000);
    expect(server.lists).toHaveLength(1);
    expect(server.open()).toHaveLength(0);

    // A watch still open at stop() is closed, and what it delivers late is dropped
    const again = new Watch<Obj>({ kind: 'Thing', source: server, log: sink.log });
    await again.start();
    const late = server.open()[0]!;
    await again.stop();
    expect(late.closed).toBe(true);
    late.onEvent({ type: 'ADDED', object: { metadata: { namespace: 'a', name: 'late', resourceVersion: '999' } } });
    late.onEnd(new Error('aborted'));
    expect(again.get('a', 'late')).toBeUndefined();
    await vi.advanceTimersByTimeAsync(60 * 60_000);
    expect(server.lists).toHaveLength(2);
  });

  it('closes a watch that opens only after stop()', async () => {
    let opened = () => {};
    const slow: WatchSource<Obj> = {
      list: (namespace) => server.list(namespace),
      watch: async (...args) => {
        await new Promise<void>((resolve) => (opened = resolve));
        return server.watch(...args);
      },
    };
    const w = new Watch<Obj>({ kind: 'Thing', source: slow, log: sink.log });
    const starting = w.start();
    await vi.advanceTimersByTimeAsync(0);
    await w.stop();
    opened();
    await starting;
    expect(server.watches).toHaveLength(1);
    expect(server.open()).toHaveLength(0);
  });

  it('keeps telling the other listeners when one throws', async () => {
    const w = watching();
    w.on(() => { throw new Error('listener bug'); });
    const heard: string[] = [];
    w.on((e) => heard.push(e.type));
    server.put('a', 'one');
    await w.start();
    server.put('a', 'one', 'x');
    expect(heard).toEqual(['added', 'relisted', 'modified']);
    expect(sink.lines.filter((l) => l.message === 'Thing watch listener failed')).toHaveLength(3);
    expect(server.open()).toHaveLength(1);
  });
});
