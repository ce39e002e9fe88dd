// Persistence (SPEC §6.2, I4) property-tested through the real decide(): random
// interleavings of health changes, reconciles and clocks. The harness only plays
// the world — the watch (nextDegradedSince, as the Argo CD watcher calls it) and
// the store (what a decision writes) — and never decides anything itself.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, type Decision, type Facts } from './machine.ts';
import { nextDegradedSince } from '../fsm/persistence.ts';
import type { AttemptRecord, HealthCheck, HealthStatus } from '../fsm/record.ts';
import { SETTINGS } from '../fsm/testing.ts';

type Step =
  | { kind: 'health'; status: HealthStatus; afterMs: number }
  | { kind: 'reconcile'; afterMs: number };

const INTERVAL_MS = SETTINGS.intervalSeconds * 1000;

const step: fc.Arbitrary<Step> = fc.oneof(
  // Flapping about once per interval, or faster, or in long runs.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('health' as const), status: fc.constantFrom<HealthStatus>('Degraded', 'Degraded', 'Healthy', 'Progressing', 'Unknown'), afterMs: fc.integer({ min: 0, max: 2 * INTERVAL_MS }) }) },
  // Reconciles at any moment: on time, early, late, several at once, or none for a while (coalesced).
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('reconcile' as const), afterMs: fc.integer({ min: 0, max: 2.5 * INTERVAL_MS }) }) },
);

interface Confirmation { at: number; checks: HealthCheck[] }

interface Run {
  /** Every health the app had, from the start: [time, status]. */
  truth: Array<[number, HealthStatus]>;
  confirmations: Confirmation[];
  /** Decisions that wrote the health key or created the attempt: the etcd writes of the run. */
  writes: number;
  blips: number;
}

function play(initial: HealthStatus, steps: Step[]): Run {
  let now = Date.parse('2026-12-01T00:00:00Z');
  let health = initial;
  // First sight: a run of Degraded that began before the watch started has no known start (nextDegradedSince gives none).
  let watched: { health?: HealthStatus; degradedSince?: string } = { health };
  let pending: { correlationId: string; checks: HealthCheck[] } | undefined;
  let record: AttemptRecord | undefined;
  let ids = 0;
  const run: Run = { truth: [[now, health]], confirmations: [], writes: 0, blips: 0 };
  for (const s of steps) {
    now += s.afterMs;
    if (s.kind === 'health') {
      if (health === 'Degraded' && s.status !== 'Degraded') run.blips++;
      health = s.status;
      run.truth.push([now, health]);
      const since = nextDegradedSince(watched, health, new Date(now));
      watched = { health, ...(since ? { degradedSince: since } : {}) };
      continue;
    }
    if (record) break;
    const facts: Facts = {
      now: new Date(now), app: { namespace: 'argocd', name: 'app' }, environment: 'staging', settings: SETTINGS,
      checks: pending?.checks ?? [], ...(pending ? { pendingCorrelationId: pending.correlationId } : {}),
      health: { status: health, revision: 'bad', ...(watched.degradedSince ? { degradedSince: watched.degradedSince } : {}) },
      suspended: false, nextCorrelationId: `00000000-0000-4000-8000-${String(++ids).padStart(12, '0')}`, human: {},
    };
    const decision: Decision = decide(facts);
    if (decision.degradation !== undefined) {
      pending = decision.degradation ?? undefined;
      run.writes++;
    }
    if (decision.record) {
      record = decision.record;
      run.writes++;
      expect(decision.transition).toMatchObject({ from: 'Idle', to: 'DegradationDetected' });
      run.confirmations.push({ at: now, checks: decision.checks! });
    }
  }
  return run;
}

/** Whether the app was Degraded at every instant of [from, to], by the ground truth. */
function degradedThroughout(truth: Run['truth'], from: number, to: number): boolean {
  let status = truth[0]![1];
  for (const [at, s] of truth) {
    if (at > to) break;
    if (at <= from) { status = s; continue; }
    if (s !== 'Degraded') return false;
  }
  return status === 'Degraded';
}

const RUNS = 2000;
const SEED = 20261201;

// Thousands of runs each: seconds when CI shares its cores, more than the unit default of 5.
describe('persistence through the real decide()', { timeout: 60_000 }, () => {
  it('confirms only when health never left Degraded across the counted checks, whatever the interleaving', () => {
    fc.assert(fc.property(fc.constantFrom<HealthStatus>('Healthy', 'Degraded'), fc.array(step, { minLength: 5, maxLength: 120, size: 'max' }), (initial, steps) => {
      const run = play(initial, steps);
      for (const c of run.confirmations) {
        const counted = c.checks.slice(-SETTINGS.persistenceChecks);
        expect(counted).toHaveLength(SETTINGS.persistenceChecks);
        const first = Date.parse(counted[0]!.at);
        // The whole window, from the first counted check to the confirmation, was Degraded.
        expect(degradedThroughout(run.truth, first, c.at), JSON.stringify({ first, at: c.at, truth: run.truth })).toBe(true);
        // And it lasted: the checks were each at least 0.9 interval apart.
        expect(c.at - first).toBeGreaterThanOrEqual((SETTINGS.persistenceChecks - 1) * 0.9 * INTERVAL_MS);
      }
    }), { numRuns: RUNS, seed: SEED });
  });

  it('confirms a degradation that holds, checked every interval', () => {
    fc.assert(fc.property(fc.array(step, { minLength: 0, maxLength: 30 }), fc.integer({ min: 0, max: INTERVAL_MS - 1 }), (noise, offset) => {
      // Whatever came before, then Degraded for good and a reconcile every interval.
      const steps: Step[] = [...noise, { kind: 'health', status: 'Degraded', afterMs: offset }];
      for (let i = 0; i <= SETTINGS.persistenceChecks + 1; i++) steps.push({ kind: 'reconcile', afterMs: INTERVAL_MS });
      expect(play('Healthy', steps).confirmations).toHaveLength(1);
    }), { numRuns: 1000, seed: SEED + 1 });
  });

  it('keeps etcd writes per blip bounded: at most one per check and one to clear', () => {
    fc.assert(fc.property(fc.array(step, { minLength: 5, maxLength: 120, size: 'max' }), (steps) => {
      const run = play('Healthy', steps);
      const reconciles = steps.filter((s) => s.kind === 'reconcile').length;
      // A write needs a reconcile; a reconcile writes once at most, and only while counting or clearing.
      expect(run.writes).toBeLessThanOrEqual(reconciles);
      const checksPossible = Math.ceil((steps.reduce((t, s) => t + s.afterMs, 0)) / (0.9 * INTERVAL_MS)) + 1;
      expect(run.writes).toBeLessThanOrEqual(checksPossible + 2 * (run.blips + 1));
    }), { numRuns: 500, seed: SEED + 2 });
  });
});
