// When a degradation counts as persistent (SPEC §6.2, I4), as pure functions.
//
// The rule: a degradation is confirmed once `persistenceChecks` checks read
// Degraded, each at least 0.9 interval after the one before and at most two
// intervals after it, and health never left Degraded in between. Checks are only
// how the count advances; any other health observed — by a check or by the watch,
// whenever it arrives — restarts it. The watch sees every change even when the
// reconciles it wakes are coalesced, so it keeps `degradedSince`: the moment the
// current run of Degraded began, as far as this process has seen.
import type { HealthCheck, HealthStatus, Settings } from './record.ts';

const seconds = (from: string, to: Date) => (to.getTime() - Date.parse(from)) / 1000;

/** Whether enough time passed since the last counted check for a new one to count. */
export function checkDue(checks: readonly HealthCheck[], settings: Pick<Settings, 'intervalSeconds'>, now: Date): boolean {
  const last = checks.at(-1);
  return !last || seconds(last.at, now) >= settings.intervalSeconds * 0.9;
}

/** Appends a Degraded check; a gap longer than two intervals restarts the count. */
export function nextChecks(checks: readonly HealthCheck[], check: HealthCheck, settings: Pick<Settings, 'intervalSeconds' | 'persistenceChecks'>): HealthCheck[] {
  const last = checks.at(-1);
  if (last && seconds(last.at, new Date(check.at)) > 2 * settings.intervalSeconds) return [check];
  return [...checks, check].slice(-Math.max(settings.persistenceChecks, 1) * 2);
}

/**
 * The checks that still belong to the current run of Degraded: none when health
 * left Degraded after one of them (the watch saw it, `degradedSince` is later).
 * Without `degradedSince` (the run began before this process watched) the
 * stored checks stand, so persistence survives a restart.
 */
export function checksOfCurrentRun(checks: readonly HealthCheck[], degradedSince: string | undefined): HealthCheck[] {
  if (degradedSince === undefined) return [...checks];
  const since = Date.parse(degradedSince);
  const before = checks.filter((c) => Date.parse(c.at) < since);
  // Checks counted on the pods' signal while Argo CD said Progressing (modules/pod-signals.ts), then Argo CD's own
  // Degraded past the progress deadline: one failure, which Argo CD now reports too — the run goes on. A Degraded
  // check before the run began means health left Degraded in between: a new degradation.
  return before.length === 0 || before.every((c) => c.signal !== undefined) ? [...checks] : [];
}

/**
 * What the watch keeps for an Application when its health changes: the start of
 * the current run of Degraded. Undefined when not Degraded, and when first seen
 * Degraded (the run started before we looked; the stored checks decide).
 */
export function nextDegradedSince(
  previous: { health?: HealthStatus; degradedSince?: string } | undefined,
  health: HealthStatus | undefined,
  now: Date,
): string | undefined {
  if (health !== 'Degraded') return undefined;
  if (previous === undefined) return undefined;
  if (previous.health === 'Degraded') return previous.degradedSince;
  return now.toISOString();
}
