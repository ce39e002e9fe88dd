// What the work queue (src/reconcilers/queue.ts) reports, in the terms
// controller-runtime's workqueue and reconcile metrics count it; the Prometheus
// side is src/observability/metrics.ts. A port, so the metrics need not import
// the queue and the queue need not know Prometheus.

export type Lane = 'normal' | 'low';

/** How a reconcile ended, as controller-runtime labels it (`requeue` is never ours: there is no immediate requeue). */
export type ReconcileOutcome = 'success' | 'error' | 'requeue' | 'requeue_after';

/**
 * What the queue reports, at the points controller-runtime's priority queue
 * reports them: a key counts as added when it enters a ready lane (a delayed key
 * when its delay ends), not when a duplicate add is absorbed.
 */
export interface QueueMetrics {
  /** A key entered a ready lane. */
  added(lane: Lane): void;
  /** A ready key left `from` without being taken: promoted to `to`, or dropped by stop() (`to` undefined). */
  moved(from: Lane, to?: Lane): void;
  /** A worker took a key that had waited `waitedSeconds` in its lane. */
  taken(lane: Lane, waitedSeconds: number): void;
  /** A reconcile ended after `seconds`. */
  finished(outcome: ReconcileOutcome, seconds: number): void;
  /** The reconcile that just finished with `error` threw a TerminalError: the key is not retried. */
  terminal(): void;
  /** A key was added with a delay (a backoff after an error, or a requested requeue), as client-go counts retries. */
  retried(): void;
}
