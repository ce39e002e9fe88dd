// A work queue of keys (`namespace/name`), as controller-runtime has it: a key
// waiting is queued once however often it is added; a key is never processed by
// two workers at once (added while running, it runs again after); an error
// requeues it with exponential backoff; a result may ask to run again later.
// A key added at low priority (the periodic resync of every watched app) waits
// behind every key added at normal priority (a watch event, a requeue), as in
// controller-runtime's priority queue: a resync of 10,000 healthy apps must not
// delay the one that just turned Degraded.
// What it does is told through QueueMetrics, in the terms controller-runtime's
// workqueue and reconcile metrics count it (src/observability/metrics.ts).
// A reconcile that throws a TerminalError is not retried: like controller-runtime,
// the queue counts it, logs it and forgets the key until it is added again.
import type { Logger } from '../observability/log.ts';
import { terminalCause } from '../ports/errors.ts';
import type { Lane, QueueMetrics, ReconcileOutcome } from '../ports/queue-metrics.ts';

export type { Lane, QueueMetrics, ReconcileOutcome } from '../ports/queue-metrics.ts';

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export type ReconcileFn = (key: string) => Promise<ReconcileResult>;

export interface QueueOptions {
  concurrency?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  metrics?: QueueMetrics;
  /** Milliseconds, for the durations the metrics report and which of two delays is due first; performance.now() unless a test moves it. */
  now?: () => number;
}

const noMetrics: QueueMetrics = { added() {}, moved() {}, taken() {}, finished() {}, terminal() {}, retried() {} };

export class KeyQueue {
  private readonly reconcile: ReconcileFn;
  private readonly log: Logger;
  private readonly concurrency: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly metrics: QueueMetrics;
  private readonly now: () => number;
  private readonly ready: string[] = [];
  private readonly readyLow: string[] = [];
  /** Queued keys, and whether at low priority. */
  private readonly queued = new Map<string, 'normal' | 'low'>();
  private readonly running = new Set<string>();
  /** Keys added while running: they go again once the current run ends. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  /** When each queued key entered a ready lane (a promotion keeps it). */
  private readonly readySince = new Map<string, number>();
  private active = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(reconcile: ReconcileFn, log: Logger, options: QueueOptions = {}) {
    this.reconcile = reconcile;
    this.log = log;
    this.concurrency = options.concurrency ?? 4;
    this.baseBackoffMs = options.baseBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.metrics = options.metrics ?? noMetrics;
    this.now = options.now ?? (() => performance.now());
  }

  add(key: string, priority: 'normal' | 'low' = 'normal'): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    // The sweep must not replace a requeue already due at normal priority with a low one.
    if (priority === 'low' && this.timers.has(key)) return;
    const waiting = this.queued.get(key);
    if (waiting === 'low' && priority === 'normal') {
      // Promoted: it leaves the low lane for the normal one.
      this.readyLow.splice(this.readyLow.indexOf(key), 1);
      this.metrics.moved('low', 'normal');
    } else if (waiting !== undefined) {
      return;
    } else {
      this.metrics.added(priority);
      this.readySince.set(key, this.now());
    }
    this.cancelTimer(key);
    this.queued.set(key, priority);
    (priority === 'low' ? this.readyLow : this.ready).push(key);
    this.pump();
  }

  /** Adds the key after a delay; an earlier pending delay for it wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs > 0) this.metrics.retried();
    const at = this.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.timers.set(key, { at, timer });
  }

  size(): number {
    return this.ready.length + this.readyLow.length + this.running.size;
  }

  /** Resolves when nothing is queued or running (delayed keys do not count). */
  async idle(): Promise<void> {
    if (this.size() === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const lane of this.queued.values()) this.metrics.moved(lane);
    this.ready.length = 0;
    this.readyLow.length = 0;
    this.queued.clear();
    this.readySince.clear();
    await this.idle();
  }

  private cancelTimer(key: string): void {
    const pending = this.timers.get(key);
    if (pending) {
      clearTimeout(pending.timer);
      this.timers.delete(key);
    }
  }

  private pump(): void {
    while (!this.stopped && this.active < this.concurrency && this.ready.length + this.readyLow.length > 0) {
      const lane: Lane = this.ready.length > 0 ? 'normal' : 'low';
      const key = lane === 'normal' ? this.ready.shift()! : this.readyLow.shift()!;
      this.queued.delete(key);
      this.metrics.taken(lane, (this.now() - (this.readySince.get(key) ?? this.now())) / 1000);
      this.readySince.delete(key);
      this.running.add(key);
      this.active++;
      void this.run(key);
    }
    if (this.size() === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  private async run(key: string): Promise<void> {
    const started = this.now();
    let outcome: ReconcileOutcome = 'error';
    try {
      const result = await this.reconcile(key);
      this.failures.delete(key);
      outcome = result.requeueAfterMs === undefined ? 'success' : result.requeueAfterMs > 0 ? 'requeue_after' : 'requeue';
      if (result.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      const terminal = terminalCause(error);
      if (terminal) {
        this.failures.delete(key);
        this.metrics.terminal();
        this.log.error('Reconcile failed with an error retrying cannot fix; not retried until the key is added again', {
          key, reason: terminal.reason, error: (error as Error).message,
        });
        return;
      }
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      const delay = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** (failures - 1));
      this.log.warn('Reconcile failed; retrying with backoff', { key, failures, retryInMs: delay, error: (error as Error).message });
      this.addAfter(key, delay);
    } finally {
      this.metrics.finished(outcome, (this.now() - started) / 1000);
      this.running.delete(key);
      this.active--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
