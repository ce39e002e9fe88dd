// The operator's own Prometheus metrics (SPEC §11): names and labels exactly as
// the seed's dashboard and alert rules query them, so they live here as constants.
// Every metric is registered on a Registry owned by this object, never on
// prom-client's global one: tests and two operators in one process must not clash.
// Beside them, the reconcile and work-queue metrics under controller-runtime's own
// names and labels (unprefixed, as controller-runtime exports them), so the
// dashboards and alerts written for every kubebuilder operator work on this one.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CONSUMER_RESTART_REASONS, EVENTS_REJECTED_METRIC } from '../api/metrics.ts';
import { EVENT_TYPES } from '../fsm/cloud-events.ts';
import type { Environment } from '../fsm/record.ts';
import { Reason, STATES, inProgress, type State } from '../fsm/table.ts';
import type { ErrorCode } from '../ports/errors.ts';
import type { MetricObservation } from '../ports/observations.ts';
import type { Lane, QueueMetrics, ReconcileOutcome } from '../ports/queue-metrics.ts';
import { DROP_REASONS, type DropReason } from './tracing.ts';

export const METRIC = {
  degradationsDetected: 'ai_operator_degradations_detected_total',
  rollbacksProposed: 'ai_operator_rollbacks_proposed_total',
  rollbacksMerged: 'ai_operator_rollbacks_merged_total',
  rollbacksAborted: 'ai_operator_rollbacks_aborted_total',
  invariantViolations: 'ai_operator_invariant_violations_total',
  mcpCallErrors: 'ai_operator_mcp_call_errors_total',
  fsmState: 'ai_operator_fsm_state',
  appsHeld: 'ai_operator_apps_held',
  activeRollbacks: 'ai_operator_active_rollbacks',
  meanTimeToRecovery: 'ai_operator_mean_time_to_recovery_seconds',
  candidateResolutionDuration: 'ai_operator_candidate_resolution_duration_seconds',
  mcpCallDuration: 'ai_operator_mcp_call_duration_seconds',
  auditRecords: 'ai_operator_audit_records_total',
  auditFallbackPending: 'ai_operator_audit_fallback_pending',
  leader: 'ai_operator_leader',
  kubeEvents: 'ai_operator_kube_events_total',
  outboxDeadLetters: 'ai_operator_outbox_dead_letters_total',
  outboxPending: 'ai_operator_outbox_pending',
  approvalEnforced: 'ai_operator_approval_enforced',
  approvalUnenforcedNamespaces: 'ai_operator_approval_unenforced_namespaces',
  eventsRejected: EVENTS_REJECTED_METRIC,
  eventConsumerRestarts: 'ai_operator_event_consumer_restarts_total',
  traceSpansDropped: 'ai_operator_trace_spans_dropped_total',
  githubWriteWait: 'ai_operator_github_write_wait_seconds',
  githubWritesQueued: 'ai_operator_github_writes_queued',
  githubSecondaryRateLimits: 'ai_operator_github_secondary_rate_limits_total',
  // controller-runtime (pkg/internal/controller/metrics) and its work queue (pkg/internal/metrics/workqueue.go).
  reconcileTotal: 'controller_runtime_reconcile_total',
  reconcileErrors: 'controller_runtime_reconcile_errors_total',
  terminalReconcileErrors: 'controller_runtime_terminal_reconcile_errors_total',
  reconcileTime: 'controller_runtime_reconcile_time_seconds',
  workqueueDepth: 'workqueue_depth',
  workqueueAdds: 'workqueue_adds_total',
  workqueueQueueDuration: 'workqueue_queue_duration_seconds',
  workqueueWorkDuration: 'workqueue_work_duration_seconds',
  workqueueRetries: 'workqueue_retries_total',
} as const;

export type MetricName = (typeof METRIC)[keyof typeof METRIC];

/** Label names per metric, as the seed lists them. */
export const METRIC_LABELS = {
  [METRIC.degradationsDetected]: ['app_name', 'environment'],
  [METRIC.rollbacksProposed]: ['app_name', 'environment', 'success'],
  [METRIC.rollbacksMerged]: ['app_name', 'environment', 'auto_merged'],
  [METRIC.rollbacksAborted]: ['app_name', 'environment', 'reason'],
  [METRIC.invariantViolations]: ['invariant_id'],
  [METRIC.mcpCallErrors]: ['call_name', 'error_code'],
  [METRIC.fsmState]: ['app_name', 'state'],
  [METRIC.appsHeld]: ['app_name'],
  [METRIC.activeRollbacks]: ['environment'],
  [METRIC.meanTimeToRecovery]: ['app_name', 'environment'],
  [METRIC.candidateResolutionDuration]: ['app_name'],
  [METRIC.mcpCallDuration]: ['call_name'],
  [METRIC.auditRecords]: ['sink'],
  [METRIC.auditFallbackPending]: [],
  [METRIC.leader]: [],
  [METRIC.kubeEvents]: ['reason', 'result'],
  [METRIC.outboxDeadLetters]: ['type'],
  [METRIC.outboxPending]: [],
  [METRIC.approvalEnforced]: [],
  [METRIC.approvalUnenforcedNamespaces]: [],
  [METRIC.eventsRejected]: ['reason'],
  [METRIC.eventConsumerRestarts]: ['reason'],
  [METRIC.traceSpansDropped]: ['reason'],
  [METRIC.githubWriteWait]: [],
  [METRIC.githubWritesQueued]: [],
  [METRIC.githubSecondaryRateLimits]: [],
  [METRIC.reconcileTotal]: ['controller', 'result'],
  [METRIC.reconcileErrors]: ['controller'],
  [METRIC.terminalReconcileErrors]: ['controller'],
  [METRIC.reconcileTime]: ['controller'],
  // controller-runtime labels its queue metrics with the queue's name and its controller's (the same string),
  // and the priority queue's depth with the priority (0 normal, -100 for the resync sweep: handler.LowPriority).
  [METRIC.workqueueDepth]: ['name', 'controller', 'priority'],
  [METRIC.workqueueAdds]: ['name', 'controller'],
  [METRIC.workqueueQueueDuration]: ['name', 'controller'],
  [METRIC.workqueueWorkDuration]: ['name', 'controller'],
  [METRIC.workqueueRetries]: ['name', 'controller'],
} as const satisfies Record<MetricName, readonly string[]>;

// The alert "MTTR p95 > 600 s" needs a bucket edge at 600; recovery is bounded by
// recoveryTimeoutSeconds and approvals, so an hour covers the useful range.
const MTTR_BUCKETS = [30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600];
// The candidate search is cut off at searchTimeoutSeconds (default 120).
const CANDIDATE_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120];
// External calls: milliseconds when healthy, up to the 30 s call timeout.
const CALL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// A write's wait for its place in GitHub's secondary limits: none when quiet; minutes, even an hour, in a burst
// (GitHub allows 80 content-creating requests a minute and 500 an hour).
const WRITE_WAIT_BUCKETS = [0.1, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];
// controller-runtime's reconcile_time_seconds buckets, verbatim.
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
  1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60];
// controller-runtime's work-queue buckets: prometheus.ExponentialBuckets(10e-9, 10, 12), 10 ns to 1000 s.
const WORKQUEUE_BUCKETS = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000];
/** The priority label of controller-runtime's priority queue: 0, and handler.LowPriority for the sweep. */
const PRIORITY: Record<Lane, string> = { normal: '0', low: '-100' };
const OUTCOMES: readonly ReconcileOutcome[] = ['success', 'error', 'requeue', 'requeue_after'];
const ENVIRONMENTS: readonly Environment[] = ['staging', 'production'];

/** One stored attempt of an app with an active key in etcd (aborted ones included), as the gauges need it. */
export interface StoredAttemptState {
  app: string;
  environment: Environment;
  state: State;
  /** The reason of the state (the state key's): an Abort for AttemptLimitReached holds a flapping app. */
  reason?: string;
}

/** The values of the gauges that come from the etcd record. */
export interface StoredGauges {
  /** Attempts in flight (a non-terminal state) per environment; every environment is present, 0 when none. */
  activeRollbacks: Record<Environment, number>;
  /** The state of each app's stored attempt; an app not listed has no series. */
  fsmState: Map<string, State>;
  /** Apps held for a human after maxAttemptsPerHour attempts within the hour (ai_operator_apps_held). */
  held: Set<string>;
}

/**
 * The gauges from the active attempts read from etcd. An aborted attempt is not
 * counted in flight: nothing happens to it until a human resets it, and an
 * on-call reading "active rollbacks" asks what the operator is doing now. It
 * still blocks its app and is shown by ai_operator_fsm_state{state="Abort"}.
 */
export function storedGauges(attempts: readonly StoredAttemptState[]): StoredGauges {
  const activeRollbacks = Object.fromEntries(ENVIRONMENTS.map((e) => [e, 0])) as Record<Environment, number>;
  const fsmState = new Map<string, State>();
  const held = new Set<string>();
  for (const a of attempts) {
    if (inProgress(a.state)) activeRollbacks[a.environment] += 1;
    fsmState.set(a.app, a.state);
    if (a.state === 'Abort' && a.reason === Reason.AttemptLimitReached) held.add(a.app);
  }
  return { activeRollbacks, fsmState, held };
}

/** The event bus's counters (src/bus/jetstream.ts). */
export interface EventBusCounters {
  rejected: Counter<'reason'>;
  consumerRestarts: Counter<'reason'>;
}

/**
 * The event bus's counters on `registry`, created once: the bus is handed a
 * registry, not this class (tests and tools run it on their own), and several
 * buses may share one registry. Every restart reason is a series at 0 from the
 * start, so an alert on increase() sees the first restart.
 */
export function eventBusCounters(registry: Registry): EventBusCounters {
  const existing = (name: string) => registry.getSingleMetric(name) as Counter<'reason'> | undefined;
  const rejected = existing(METRIC.eventsRejected) ?? new Counter({
    name: METRIC.eventsRejected,
    help: 'Events received that were not JSON or failed their schema, and were terminated.',
    labelNames: METRIC_LABELS[METRIC.eventsRejected],
    registers: [registry],
  });
  let consumerRestarts = existing(METRIC.eventConsumerRestarts);
  if (!consumerRestarts) {
    consumerRestarts = new Counter({
      name: METRIC.eventConsumerRestarts,
      help: 'Times the JetStream event consumer was opened again after its loop died (or an open failed), by why.',
      labelNames: METRIC_LABELS[METRIC.eventConsumerRestarts],
      registers: [registry],
    });
    for (const reason of CONSUMER_RESTART_REASONS) consumerRestarts.inc({ reason }, 0);
  }
  return { rejected, consumerRestarts };
}

/** What became of one occurrence of a Kubernetes Event. */
export type KubeEventResult = 'created' | 'updated' | 'coalesced' | 'dropped' | 'invalid' | 'failed';

type Labels<N extends MetricName> = (typeof METRIC_LABELS)[N][number];

export interface MetricsOptions {
  registry?: Registry;
  /** Also export Node's process metrics (CPU, memory, event loop lag). */
  processMetrics?: boolean;
}

export class Metrics {
  readonly registry: Registry;
  readonly #degradations: Counter<Labels<typeof METRIC.degradationsDetected>>;
  readonly #proposed: Counter<Labels<typeof METRIC.rollbacksProposed>>;
  readonly #merged: Counter<Labels<typeof METRIC.rollbacksMerged>>;
  readonly #aborted: Counter<Labels<typeof METRIC.rollbacksAborted>>;
  readonly #violations: Counter<Labels<typeof METRIC.invariantViolations>>;
  readonly #callErrors: Counter<Labels<typeof METRIC.mcpCallErrors>>;
  readonly #fsmState: Gauge<Labels<typeof METRIC.fsmState>>;
  readonly #appsHeld: Gauge<Labels<typeof METRIC.appsHeld>>;
  readonly #activeRollbacks: Gauge<Labels<typeof METRIC.activeRollbacks>>;
  readonly #recovery: Histogram<Labels<typeof METRIC.meanTimeToRecovery>>;
  readonly #candidateResolution: Histogram<Labels<typeof METRIC.candidateResolutionDuration>>;
  readonly #callDuration: Histogram<Labels<typeof METRIC.mcpCallDuration>>;
  readonly #auditRecords: Counter<Labels<typeof METRIC.auditRecords>>;
  readonly #auditFallbackPending: Gauge;
  readonly #leader: Gauge;
  readonly #kubeEvents: Counter<Labels<typeof METRIC.kubeEvents>>;
  readonly #outboxDeadLetters: Counter<Labels<typeof METRIC.outboxDeadLetters>>;
  readonly #outboxPending: Gauge;
  readonly #approvalEnforced: Gauge;
  readonly #approvalUnenforcedNamespaces: Gauge;
  readonly #traceSpansDropped: Counter<Labels<typeof METRIC.traceSpansDropped>>;
  readonly #githubWriteWait: Histogram;
  readonly #githubWritesQueued: Gauge;
  readonly #githubSecondaryRateLimits: Counter;
  readonly #reconcileTotal: Counter<Labels<typeof METRIC.reconcileTotal>>;
  readonly #reconcileErrors: Counter<Labels<typeof METRIC.reconcileErrors>>;
  readonly #terminalReconcileErrors: Counter<Labels<typeof METRIC.terminalReconcileErrors>>;
  readonly #reconcileTime: Histogram<Labels<typeof METRIC.reconcileTime>>;
  readonly #workqueueDepth: Gauge<Labels<typeof METRIC.workqueueDepth>>;
  readonly #workqueueAdds: Counter<Labels<typeof METRIC.workqueueAdds>>;
  readonly #workqueueQueueDuration: Histogram<Labels<typeof METRIC.workqueueQueueDuration>>;
  readonly #workqueueWorkDuration: Histogram<Labels<typeof METRIC.workqueueWorkDuration>>;
  readonly #workqueueRetries: Counter<Labels<typeof METRIC.workqueueRetries>>;
  /** Apps with ai_operator_fsm_state series, whoever set them. */
  readonly #fsmApps = new Set<string>();

  constructor(options: MetricsOptions = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    const registers = [registry];
    this.#degradations = new Counter({
      name: METRIC.degradationsDetected,
      help: 'Degraded health checks that started a rollback attempt.',
      labelNames: METRIC_LABELS[METRIC.degradationsDetected],
      registers,
    });
    this.#proposed = new Counter({
      name: METRIC.rollbacksProposed,
      help: 'Rollback pull requests the operator tried to open, by outcome.',
      labelNames: METRIC_LABELS[METRIC.rollbacksProposed],
      registers,
    });
    this.#merged = new Counter({
      name: METRIC.rollbacksMerged,
      help: 'Rollback pull requests merged, by the operator (auto_merged="true") or after approval.',
      labelNames: METRIC_LABELS[METRIC.rollbacksMerged],
      registers,
    });
    this.#aborted = new Counter({
      name: METRIC.rollbacksAborted,
      help: 'Rollback attempts that ended in Abort, by reason.',
      labelNames: METRIC_LABELS[METRIC.rollbacksAborted],
      registers,
    });
    this.#violations = new Counter({
      name: METRIC.invariantViolations,
      help: 'Invariant evaluations that did not PASS.',
      labelNames: METRIC_LABELS[METRIC.invariantViolations],
      registers,
    });
    this.#callErrors = new Counter({
      name: METRIC.mcpCallErrors,
      help: 'Failed tries of external calls, by typed error code (a try that was retried counts too).',
      labelNames: METRIC_LABELS[METRIC.mcpCallErrors],
      registers,
    });
    this.#fsmState = new Gauge({
      name: METRIC.fsmState,
      help: '1 for the state of the application\'s stored attempt (read from etcd at each resync and after each write; aborted ones until reset), 0 for the others; no series once the attempt has ended.',
      labelNames: METRIC_LABELS[METRIC.fsmState],
      registers,
    });
    this.#appsHeld = new Gauge({
      name: METRIC.appsHeld,
      help: '1 for each application held after maxAttemptsPerHour attempts within the hour (its attempt in Abort, AttemptLimitReached) until a human resets it; no series otherwise. Exported by the leader only.',
      labelNames: METRIC_LABELS[METRIC.appsHeld],
      registers,
    });
    this.#activeRollbacks = new Gauge({
      name: METRIC.activeRollbacks,
      help: 'Rollback attempts in flight (DegradationDetected to RollbackMerged), read from etcd; an aborted attempt waiting for a reset is not counted (see ai_operator_fsm_state{state="Abort"}). Exported by the leader only.',
      labelNames: METRIC_LABELS[METRIC.activeRollbacks],
      registers,
    });
    this.#recovery = new Histogram({
      name: METRIC.meanTimeToRecovery,
      help: 'Seconds from first degraded check to restored health, per completed rollback.',
      labelNames: METRIC_LABELS[METRIC.meanTimeToRecovery],
      buckets: MTTR_BUCKETS,
      registers,
    });
    this.#candidateResolution = new Histogram({
      name: METRIC.candidateResolutionDuration,
      help: 'Seconds spent searching for a stable rollback candidate.',
      labelNames: METRIC_LABELS[METRIC.candidateResolutionDuration],
      buckets: CANDIDATE_BUCKETS,
      registers,
    });
    this.#callDuration = new Histogram({
      name: METRIC.mcpCallDuration,
      help: 'Seconds per try of an external call (each retry is a try).',
      labelNames: METRIC_LABELS[METRIC.mcpCallDuration],
      buckets: CALL_BUCKETS,
      registers,
    });
    this.#auditRecords = new Counter({
      name: METRIC.auditRecords,
      help: 'Audit records durably written, by sink.',
      labelNames: METRIC_LABELS[METRIC.auditRecords],
      registers,
    });
    this.#auditFallbackPending = new Gauge({
      name: METRIC.auditFallbackPending,
      help: 'Audit records in the file fallback not yet shipped to Elasticsearch.',
      registers,
    });
    this.#leader = new Gauge({
      name: METRIC.leader,
      help: '1 while this replica holds the etcd leader lease, else 0.',
      registers,
    });
    this.#outboxDeadLetters = new Counter({
      name: METRIC.outboxDeadLetters,
      help: 'Outbox entries moved to /ai-operator/outbox-dead/ because they can never be published (schema-invalid or unreadable), by event type.',
      labelNames: METRIC_LABELS[METRIC.outboxDeadLetters],
      registers,
    });
    // The alert is increase(...) > 0, and increase() cannot see a series that first
    // appears at 1: every type starts at 0, so the first dead letter already alerts.
    for (const type of [...EVENT_TYPES, 'unknown']) this.#outboxDeadLetters.inc({ type }, 0);
    this.#outboxPending = new Gauge({
      name: METRIC.outboxPending,
      help: 'Outbox entries the last drain left behind: 0 once drained; after a failed drain, those of the batch it stopped in (a lower bound when the outbox holds more than a batch).',
      registers,
    });
    this.#kubeEvents = new Counter({
      name: METRIC.kubeEvents,
      help: 'Kubernetes Events by reason and what became of them: created, updated (series), coalesced, dropped, invalid, failed.',
      labelNames: METRIC_LABELS[METRIC.kubeEvents],
      registers,
    });
    this.#approvalEnforced = new Gauge({
      name: METRIC.approvalEnforced,
      help: '1 while the approval admission policy and its binding were last seen installed in Deny mode, else 0 (then no production approval is recorded).',
      registers,
    });
    this.#approvalUnenforcedNamespaces = new Gauge({
      name: METRIC.approvalUnenforcedNamespaces,
      help: 'Namespaces with production attempts waiting for an approval where the approval policy or its binding does not apply (a namespaceSelector leaves them out, or matchConditions): no approval is recorded there.',
      registers,
    });
    this.#reconcileTotal = new Counter({
      name: METRIC.reconcileTotal,
      help: 'Total number of reconciliations per controller',
      labelNames: METRIC_LABELS[METRIC.reconcileTotal],
      registers,
    });
    this.#reconcileErrors = new Counter({
      name: METRIC.reconcileErrors,
      help: 'Total number of reconciliation errors per controller',
      labelNames: METRIC_LABELS[METRIC.reconcileErrors],
      registers,
    });
    this.#terminalReconcileErrors = new Counter({
      name: METRIC.terminalReconcileErrors,
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames: METRIC_LABELS[METRIC.terminalReconcileErrors],
      registers,
    });
    this.#reconcileTime = new Histogram({
      name: METRIC.reconcileTime,
      help: 'Length of time per reconciliation per controller',
      labelNames: METRIC_LABELS[METRIC.reconcileTime],
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    this.#workqueueDepth = new Gauge({
      name: METRIC.workqueueDepth,
      help: 'Current depth of workqueue by workqueue and priority',
      labelNames: METRIC_LABELS[METRIC.workqueueDepth],
      registers,
    });
    this.#workqueueAdds = new Counter({
      name: METRIC.workqueueAdds,
      help: 'Total number of adds handled by workqueue',
      labelNames: METRIC_LABELS[METRIC.workqueueAdds],
      registers,
    });
    this.#workqueueQueueDuration = new Histogram({
      name: METRIC.workqueueQueueDuration,
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: METRIC_LABELS[METRIC.workqueueQueueDuration],
      buckets: WORKQUEUE_BUCKETS,
      registers,
    });
    this.#workqueueWorkDuration = new Histogram({
      name: METRIC.workqueueWorkDuration,
      help: 'How long in seconds processing an item from workqueue takes.',
      labelNames: METRIC_LABELS[METRIC.workqueueWorkDuration],
      buckets: WORKQUEUE_BUCKETS,
      registers,
    });
    this.#workqueueRetries = new Counter({
      name: METRIC.workqueueRetries,
      help: 'Total number of retries handled by workqueue (every delayed add: error backoff and requested requeues, as client-go counts them)',
      labelNames: METRIC_LABELS[METRIC.workqueueRetries],
      registers,
    });
    this.#traceSpansDropped = new Counter({
      name: METRIC.traceSpansDropped,
      help: 'Spans that never reached the trace backend: queue_full (the bounded export queue was full), export_failed (their export failed or timed out). Always 0 with tracing off.',
      labelNames: METRIC_LABELS[METRIC.traceSpansDropped],
      registers,
    });
    for (const reason of DROP_REASONS) this.#traceSpansDropped.inc({ reason }, 0);
    this.#githubWriteWait = new Histogram({
      name: METRIC.githubWriteWait,
      help: 'Seconds a GitHub write waited for its place in the installation\'s share of GitHub\'s secondary limits: a rollback PR\'s writes from the attempt\'s first ask to their admission, a single write in the queue.',
      buckets: WRITE_WAIT_BUCKETS,
      registers,
    });
    this.#githubWritesQueued = new Gauge({
      name: METRIC.githubWritesQueued,
      help: 'GitHub writes waiting for their place now (each rollback PR not yet admitted counts the writes it takes).',
      registers,
    });
    this.#githubSecondaryRateLimits = new Counter({
      name: METRIC.githubSecondaryRateLimits,
      help: 'Answers of GitHub saying a secondary rate limit was exceeded; every write waits out their retry-after.',
      registers,
    });
    eventBusCounters(registry);
    if (options.processMetrics) collectDefaultMetrics({ register: registry });
  }

  /**
   * The work queue's and reconciler's metrics for one controller, series at 0
   * from the start as controller-runtime's initMetrics has them.
   */
  queue(controller: string): QueueMetrics {
    const q = { name: controller, controller };
    for (const result of OUTCOMES) this.#reconcileTotal.inc({ controller, result }, 0);
    this.#reconcileErrors.inc({ controller }, 0);
    this.#terminalReconcileErrors.inc({ controller }, 0);
    this.#workqueueAdds.inc(q, 0);
    this.#workqueueRetries.inc(q, 0);
    for (const priority of Object.values(PRIORITY)) this.#workqueueDepth.set({ ...q, priority }, 0);
    return {
      added: (lane) => {
        this.#workqueueAdds.inc(q);
        this.#workqueueDepth.inc({ ...q, priority: PRIORITY[lane] });
      },
      moved: (from, to) => {
        this.#workqueueDepth.dec({ ...q, priority: PRIORITY[from] });
        if (to) this.#workqueueDepth.inc({ ...q, priority: PRIORITY[to] });
      },
      taken: (lane, waitedSeconds) => {
        this.#workqueueDepth.dec({ ...q, priority: PRIORITY[lane] });
        this.#workqueueQueueDuration.observe(q, waitedSeconds);
      },
      finished: (outcome, seconds) => {
        this.#reconcileTotal.inc({ controller, result: outcome });
        if (outcome === 'error') this.#reconcileErrors.inc({ controller });
        this.#reconcileTime.observe({ controller }, seconds);
        this.#workqueueWorkDuration.observe(q, seconds);
      },
      terminal: () => this.#terminalReconcileErrors.inc({ controller }),
      retried: () => this.#workqueueRetries.inc(q),
    };
  }

  /** Applies what a decision moves (decide/record-keeping.ts derives it). */
  observe(o: MetricObservation): void {
    switch (o.metric) {
      case 'fsmState': return this.setFsmState(o.app, o.state);
      case 'degradationDetected': return this.degradationDetected(o.app, o.environment);
      case 'rollbackProposed': return this.rollbackProposed(o.app, o.environment, o.success);
      case 'rollbackMerged': return this.rollbackMerged(o.app, o.environment, o.auto);
      case 'rollbackAborted': return this.rollbackAborted(o.app, o.environment, o.reason);
      case 'invariantViolated': return this.invariantViolated(o.invariant);
      case 'recovery': return this.observeRecovery(o.app, o.environment, o.seconds);
    }
  }

  degradationDetected(app: string, environment: string): void {
    this.#degradations.inc({ app_name: app, environment });
  }

  rollbackProposed(app: string, environment: string, success: boolean): void {
    this.#proposed.inc({ app_name: app, environment, success: String(success) });
  }

  rollbackMerged(app: string, environment: string, autoMerged: boolean): void {
    this.#merged.inc({ app_name: app, environment, auto_merged: String(autoMerged) });
  }

  rollbackAborted(app: string, environment: string, reason: string): void {
    this.#aborted.inc({ app_name: app, environment, reason });
  }

  invariantViolated(invariantId: string): void {
    this.#violations.inc({ invariant_id: invariantId });
  }

  /** One series per state, so a dashboard can show where each app is without a join. */
  setFsmState(app: string, state: State): void {
    for (const s of STATES) this.#fsmState.set({ app_name: app, state: s }, s === state ? 1 : 0);
    this.#fsmApps.add(app);
  }

  /** Drops an application's state series. */
  #forgetApp(app: string): void {
    for (const s of STATES) this.#fsmState.remove({ app_name: app, state: s });
    this.#appsHeld.remove({ app_name: app });
    this.#fsmApps.delete(app);
  }

  /**
   * Sets the gauges from the etcd record: the apps not in it lose their state
   * series. The only way ai_operator_active_rollbacks is set, and the only way
   * an app's state series go: both follow the record, never a transition seen.
   */
  setStoredGauges(gauges: StoredGauges): void {
    for (const [environment, count] of Object.entries(gauges.activeRollbacks)) this.#activeRollbacks.set({ environment }, count);
    for (const app of [...this.#fsmApps]) if (!gauges.fsmState.has(app)) this.#forgetApp(app);
    for (const [app, state] of gauges.fsmState) this.setFsmState(app, state);
    for (const app of gauges.fsmState.keys()) {
      if (gauges.held.has(app)) this.#appsHeld.set({ app_name: app }, 1);
      else this.#appsHeld.remove({ app_name: app });
    }
  }

  /** A replica that is not the leader exports no attempt gauges: summed over replicas, they count each attempt once. */
  clearStoredGauges(): void {
    this.#activeRollbacks.reset();
    for (const app of [...this.#fsmApps]) this.#forgetApp(app);
  }

  observeRecovery(app: string, environment: string, seconds: number): void {
    this.#recovery.observe({ app_name: app, environment }, seconds);
  }

  observeCandidateResolution(app: string, seconds: number): void {
    this.#candidateResolution.observe({ app_name: app }, seconds);
  }

  observeGitHubWriteWait(seconds: number): void {
    this.#githubWriteWait.observe(seconds);
  }

  setGitHubWritesQueued(writes: number): void {
    this.#githubWritesQueued.set(writes);
  }

  countGitHubSecondaryRateLimit(): void {
    this.#githubSecondaryRateLimits.inc();
  }

  /** Every try's duration; a failed try (retried or not) also counts its error code. */
  observeCall(callName: string, seconds: number, errorCode?: ErrorCode): void {
    this.#callDuration.observe({ call_name: callName }, seconds);
    if (errorCode !== undefined) this.#callErrors.inc({ call_name: callName, error_code: errorCode });
  }

  auditRecorded(sink: string, count = 1): void {
    this.#auditRecords.inc({ sink }, count);
  }

  setAuditFallbackPending(count: number): void {
    this.#auditFallbackPending.set(count);
  }

  setLeader(isLeader: boolean): void {
    this.#leader.set(isLeader ? 1 : 0);
  }

  /** `type` is the event type (`degradation.detected`), `unknown` when the entry does not name one of ours. */
  outboxDeadLettered(type: string): void {
    this.#outboxDeadLetters.inc({ type });
  }

  setOutboxPending(count: number): void {
    this.#outboxPending.set(count);
  }

  setApprovalEnforced(enforced: boolean): void {
    this.#approvalEnforced.set(enforced ? 1 : 0);
  }

  setApprovalUnenforcedNamespaces(count: number): void {
    this.#approvalUnenforcedNamespaces.set(count);
  }

  /** Occurrences of a Kubernetes Event (emit calls), by what became of them. */
  kubeEvent(reason: string, result: KubeEventResult, count = 1): void {
    this.#kubeEvents.inc({ reason, result }, count);
  }

  /** Spans the tracer lost (observability/tracing.ts): a trace backend outage shows here, never in a reconcile. */
  spansDropped(reason: DropReason, count = 1): void {
    this.#traceSpansDropped.inc({ reason }, count);
  }

  /** The exposition text for GET /metrics, with its content type. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
