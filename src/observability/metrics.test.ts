import { describe, expect, it } from 'vitest';
import { STATES } from '../fsm/table.ts';
import { eventBusCounters, METRIC, METRIC_LABELS, Metrics, storedGauges } from './metrics.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

// A small parser of the text exposition format: enough to check names and label sets.
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

function exercise(metrics: Metrics): void {
  metrics.degradationDetected('payment-service', 'staging');
  metrics.rollbackProposed('payment-service', 'staging', true);
  metrics.rollbackMerged('payment-service', 'staging', true);
  metrics.rollbackAborted('order-service', 'production', 'CIFailure');
  metrics.invariantViolated('I6_ci_success');
  metrics.observeCall('createPullRequest', 0.25, 'PERMISSION_DENIED');
  metrics.setFsmState('payment-service', 'PRCreated');
  metrics.setStoredGauges(storedGauges([
    { app: 'payment-service', environment: 'staging', state: 'PRCreated' },
    { app: 'search', environment: 'production', state: 'Abort', reason: 'AttemptLimitReached' },
  ]));
  metrics.observeRecovery('payment-service', 'staging', 420);
  metrics.observeCandidateResolution('payment-service', 3.5);
  metrics.auditRecorded('file', 2);
  metrics.setAuditFallbackPending(2);
  metrics.setLeader(true);
  metrics.kubeEvent('NothingToRollBack', 'created');
  metrics.outboxDeadLettered('degradation.detected');
  metrics.setOutboxPending(3);
  metrics.setApprovalEnforced(true);
  metrics.observeGitHubWriteWait(42);
  metrics.setGitHubWritesQueued(15);
  metrics.countGitHubSecondaryRateLimit();
  const queue = metrics.queue('application');
  queue.added('normal');
  queue.taken('normal', 0.002);
  queue.finished('success', 0.3);
  queue.retried();
  queue.terminal();
  eventBusCounters(metrics.registry).rejected.inc({ reason: 'NotJSON' });
}

const HISTOGRAMS = new Set<string>([
  METRIC.meanTimeToRecovery, METRIC.candidateResolutionDuration, METRIC.mcpCallDuration,
  METRIC.reconcileTime, METRIC.workqueueQueueDuration, METRIC.workqueueWorkDuration, METRIC.githubWriteWait,
]);

describe('Metrics', () => {
  it('exposes every metric of SPEC §11 with exactly its label names', async () => {
    const metrics = new Metrics();
    exercise(metrics);
    const text = await metrics.registry.metrics();
    const samples = parse(text);
    const histograms = HISTOGRAMS;
    for (const [name, labelNames] of Object.entries(METRIC_LABELS)) {
      const series = histograms.has(name) ? `${name}_count` : name;
      const found = samples.filter((s) => s.name === series);
      expect(found, name).not.toHaveLength(0);
      for (const s of found) expect(Object.keys(s.labels).sort(), name).toEqual([...labelNames].sort());
      expect(text).toContain(`# TYPE ${name} ${histograms.has(name) ? 'histogram' : name.endsWith('_total') ? 'counter' : 'gauge'}`);
    }
  });

  it('keeps the seed\'s names and label sets verbatim', () => {
    expect(METRIC_LABELS).toMatchObject({
      ai_operator_degradations_detected_total: ['app_name', 'environment'],
      ai_operator_rollbacks_proposed_total: ['app_name', 'environment', 'success'],
      ai_operator_rollbacks_merged_total: ['app_name', 'environment', 'auto_merged'],
      ai_operator_rollbacks_aborted_total: ['app_name', 'environment', 'reason'],
      ai_operator_invariant_violations_total: ['invariant_id'],
      ai_operator_mcp_call_errors_total: ['call_name', 'error_code'],
      ai_operator_fsm_state: ['app_name', 'state'],
      ai_operator_active_rollbacks: ['environment'],
      ai_operator_mean_time_to_recovery_seconds: ['app_name', 'environment'],
      ai_operator_candidate_resolution_duration_seconds: ['app_name'],
      ai_operator_mcp_call_duration_seconds: ['call_name'],
    });
  });

  it('renders label values the way the alert rules match them', async () => {
    const metrics = new Metrics();
    exercise(metrics);
    const text = await metrics.registry.metrics();
    expect(text).toContain('ai_operator_rollbacks_merged_total{app_name="payment-service",environment="staging",auto_merged="true"} 1');
    expect(text).toContain('ai_operator_mcp_call_errors_total{call_name="createPullRequest",error_code="PERMISSION_DENIED"} 1');
    expect(text).toContain('ai_operator_leader 1');
    // The MTTR alert is "p95 > 600": 600 must be a bucket edge.
    expect(text).toContain('ai_operator_mean_time_to_recovery_seconds_bucket{le="600",app_name="payment-service",environment="staging"} 1');
  });

  it('leaves exactly one state at 1 per application, whatever the sequence of states', async () => {
    const metrics = new Metrics();
    const sequence = ['Idle', 'DegradationDetected', 'CandidateResolved', 'PRCreated', 'Abort', 'Idle', 'RollbackComplete'] as const;
    for (const state of sequence) {
      metrics.setFsmState('payment-service', state);
      metrics.setFsmState('order-service', 'AwaitingMergeApproval');
      const states = parse(await metrics.registry.metrics()).filter((s) => s.name === METRIC.fsmState);
      for (const app of ['payment-service', 'order-service']) {
        const mine = states.filter((s) => s.labels.app_name === app);
        expect(mine.map((s) => s.labels.state).sort()).toEqual([...STATES].sort());
        expect(mine.filter((s) => s.value === 1)).toHaveLength(1);
        expect(mine.filter((s) => s.value === 0)).toHaveLength(STATES.length - 1);
      }
      const current = states.find((s) => s.labels.app_name === 'payment-service' && s.value === 1);
      expect(current?.labels.state).toBe(state);
    }
  });

  it('drops an application\'s state series when it is forgotten', async () => {
    const metrics = new Metrics();
    metrics.setFsmState('payment-service', 'Idle');
    metrics.setStoredGauges(storedGauges([]));
    const states = parse(await metrics.registry.metrics()).filter((s) => s.name === METRIC.fsmState);
    expect(states).toHaveLength(0);
  });

  it('lets two operators live in one process on separate registries', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.degradationDetected('x', 'staging');
    expect(await b.registry.metrics()).not.toContain('ai_operator_degradations_detected_total{');
    expect(await a.registry.metrics()).toContain('ai_operator_degradations_detected_total{app_name="x",environment="staging"} 1');
  });

  it('does not record an error when the call succeeded', async () => {
    const metrics = new Metrics();
    metrics.observeCall('mergePullRequest', 0.1);
    const samples = parse(await metrics.registry.metrics());
    expect(samples.filter((s) => s.name === METRIC.mcpCallErrors)).toHaveLength(0);
    expect(samples.find((s) => s.name === `${METRIC.mcpCallDuration}_count`)?.value).toBe(1);
  });

  it('exports the reconcile and queue metrics under controller-runtime\'s names, labels and buckets, at 0 from the start', async () => {
    const metrics = new Metrics();
    metrics.queue('application');
    const text = await metrics.registry.metrics();
    for (const result of ['success', 'error', 'requeue', 'requeue_after']) {
      expect(text).toContain(`controller_runtime_reconcile_total{controller="application",result="${result}"} 0`);
    }
    expect(text).toContain('controller_runtime_reconcile_errors_total{controller="application"} 0');
    expect(text).toContain('controller_runtime_terminal_reconcile_errors_total{controller="application"} 0');
    expect(text).toContain('workqueue_adds_total{name="application",controller="application"} 0');
    expect(text).toContain('workqueue_retries_total{name="application",controller="application"} 0');
    expect(text).toContain('workqueue_depth{name="application",controller="application",priority="0"} 0');
    expect(text).toContain('workqueue_depth{name="application",controller="application",priority="-100"} 0');
    expect(text).toContain('# TYPE controller_runtime_reconcile_time_seconds histogram');
    const q = metrics.queue('application');
    q.finished('error', 61);
    q.taken('normal', 5e-6);
    const after = await metrics.registry.metrics();
    expect(after).toContain('controller_runtime_reconcile_errors_total{controller="application"} 1');
    // controller-runtime's last reconcile bucket is 60 s; the queue's run from 10 ns to 1000 s by powers of ten.
    expect(after).toContain('controller_runtime_reconcile_time_seconds_bucket{le="60",controller="application"} 0');
    expect(after).toContain('controller_runtime_reconcile_time_seconds_bucket{le="+Inf",controller="application"} 1');
    const queueBuckets = [...after.matchAll(/^workqueue_queue_duration_seconds_bucket\{le="([^"]+)"/gm)].map((m) => m[1]);
    expect(queueBuckets).toEqual(['1e-8', '1e-7', '0.000001', '0.00001', '0.0001', '0.001', '0.01', '0.1', '1', '10', '100', '1000', '+Inf']);
    expect(after).toContain('workqueue_queue_duration_seconds_bucket{le="0.00001",name="application",controller="application"} 1');
  });
});

describe('the event bus counters', () => {
  it('are registered once per registry, every restart reason at 0 from the start', async () => {
    const metrics = new Metrics();
    const again = eventBusCounters(metrics.registry);
    again.consumerRestarts.inc({ reason: 'ConsumerDeleted' });
    const text = await metrics.registry.metrics();
    expect(text).toContain('ai_operator_event_consumer_restarts_total{reason="ConsumerDeleted"} 1');
    for (const reason of ['ConsumerNotFound', 'StreamNotFound', 'LoopEnded', 'OpenFailed', 'Error']) {
      expect(text).toContain(`ai_operator_event_consumer_restarts_total{reason="${reason}"} 0`);
    }
    expect(text.match(/^# TYPE ai_operator_event_consumer_restarts_total counter$/gm)).toHaveLength(1);
    expect(text.match(/^# TYPE ai_operator_events_rejected_total counter$/gm)).toHaveLength(1);
  });
});

describe('storedGauges', () => {
  it('counts the attempts in flight per environment, not an aborted one, and gives every app with an attempt its state', () => {
    const gauges = storedGauges([
      { app: 'cart', environment: 'staging', state: 'PRCreated' },
      { app: 'payment', environment: 'staging', state: 'RollbackMerged' },
      { app: 'orders', environment: 'production', state: 'Abort' },
      { app: 'search', environment: 'production', state: 'DegradationDetected' },
    ]);
    expect(gauges.activeRollbacks).toEqual({ staging: 2, production: 1 });
    expect(Object.fromEntries(gauges.fsmState)).toEqual({ cart: 'PRCreated', payment: 'RollbackMerged', orders: 'Abort', search: 'DegradationDetected' });
  });

  it('says 0 for every environment when nothing is stored', () => {
    const gauges = storedGauges([]);
    expect(gauges.activeRollbacks).toEqual({ staging: 0, production: 0 });
    expect(gauges.fsmState.size).toBe(0);
  });

  it('counts every in-flight state and none of the others', () => {
    for (const state of STATES) {
      const inFlight = !['Idle', 'RollbackComplete', 'Abort'].includes(state);
      expect(storedGauges([{ app: 'a', environment: 'production', state }]).activeRollbacks.production, state).toBe(inFlight ? 1 : 0);
    }
  });
});

describe('Metrics.setStoredGauges', () => {
  it('replaces the state series with the stored ones: an app whose attempt ended loses them, whoever set them', async () => {
    const metrics = new Metrics();
    metrics.setFsmState('cart', 'RollbackComplete'); // a transition just seen, the attempt now ended
    metrics.setStoredGauges(storedGauges([
      { app: 'payment', environment: 'staging', state: 'PRCreated' },
      { app: 'orders', environment: 'production', state: 'Abort' },
    ]));
    let samples = parse(await metrics.registry.metrics());
    const states = samples.filter((s) => s.name === METRIC.fsmState);
    expect(new Set(states.map((s) => s.labels.app_name))).toEqual(new Set(['payment', 'orders']));
    expect(states.filter((s) => s.value === 1).map((s) => `${s.labels.app_name}=${s.labels.state}`).sort()).toEqual(['orders=Abort', 'payment=PRCreated']);
    const active = samples.filter((s) => s.name === METRIC.activeRollbacks).map((s) => [s.labels.environment, s.value]);
    expect(Object.fromEntries(active)).toEqual({ staging: 1, production: 0 });

    metrics.setStoredGauges(storedGauges([]));
    samples = parse(await metrics.registry.metrics());
    expect(samples.filter((s) => s.name === METRIC.fsmState)).toHaveLength(0);
    expect(Object.fromEntries(samples.filter((s) => s.name === METRIC.activeRollbacks).map((s) => [s.labels.environment, s.value]))).toEqual({ staging: 0, production: 0 });
  });

  it('shows an app held for a human (Abort, AttemptLimitReached) until its attempt is reset', async () => {
    const metrics = new Metrics();
    const held = (samples: ReturnType<typeof parse>) => samples.filter((s) => s.name === METRIC.appsHeld).map((s) => `${s.labels.app_name}=${s.value}`);
    metrics.setStoredGauges(storedGauges([
      { app: 'flappy', environment: 'production', state: 'Abort', reason: 'AttemptLimitReached' },
      { app: 'orders', environment: 'production', state: 'Abort', reason: 'CIFailure' },
      { app: 'cart', environment: 'staging', state: 'PRCreated', reason: 'PullRequestOpened' },
    ]));
    expect(held(parse(await metrics.registry.metrics()))).toEqual(['flappy=1']);
    metrics.setStoredGauges(storedGauges([{ app: 'orders', environment: 'production', state: 'Abort', reason: 'CIFailure' }]));
    expect(held(parse(await metrics.registry.metrics()))).toEqual([]);
  });

  it('leaves a standby with no attempt gauges at all', async () => {
    const metrics = new Metrics();
    metrics.setStoredGauges(storedGauges([{ app: 'payment', environment: 'staging', state: 'PRCreated' }]));
    metrics.clearStoredGauges();
    const samples = parse(await metrics.registry.metrics());
    expect(samples.filter((s) => s.name === METRIC.fsmState || s.name === METRIC.activeRollbacks)).toHaveLength(0);
  });
});
