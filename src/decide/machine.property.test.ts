// Property-based tests of SPEC §14 properties 1–5 over random sequences of health
// checks, CI results, approvals, merges, resets, aborts, timeouts and crashes.
// The world is simulated; decide() is the real one. Seeds are printed on failure
// and fixed per property so a run can be replayed.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeEvent } from '../fsm/cloud-events.ts';
import { validateEvent } from '../bus/validate.ts';
import { nextDegradedSince } from '../fsm/persistence.ts';
import { INVARIANT_IDS, type AttemptRecord, type CheckResult, type HealthCheck, type HealthStatus, type InvariantResult } from '../fsm/record.ts';
import { SETTINGS } from '../fsm/testing.ts';
import { decide, type CandidateOutcome, type Decision, type Facts } from './machine.ts';
import { inProgress, isAllowed, isTerminal } from '../fsm/table.ts';


type Action =
  | { kind: 'tick'; seconds: number }
  | { kind: 'health'; status: HealthStatus }
  | { kind: 'ci'; state: 'success' | 'failure' | 'pending' }
  | { kind: 'approve'; user: string }
  | { kind: 'enforcement'; on: boolean }
  | { kind: 'humanMerge' }
  | { kind: 'humanClose' }
  | { kind: 'reset' }
  | { kind: 'abort' }
  | { kind: 'crash' }
  | { kind: 'candidate'; outcome: CandidateOutcome['kind'] }
  | { kind: 'invariants'; results: CheckResult[] }
  | { kind: 'failure' }
  | { kind: 'revision'; known: boolean }
  | { kind: 'gitAlreadyRestored'; restored: boolean }
  | { kind: 'deleteApp' }
  /** Someone pushes to the rollback branch (the head moves off the operator's commit), or retargets the PR. */
  | { kind: 'push' }
  | { kind: 'retarget' }
  /** The approver removes the approve annotation. */
  | { kind: 'unapprove' }
  /** The files the rollback changes also deploy a production app (a shared base), or they stop doing so. */
  | { kind: 'sharedWithProduction'; shared: boolean };

const action: fc.Arbitrary<Action> = fc.oneof(
  // Mostly about one check interval, so degradations persist; sometimes long, so timeouts fire.
  { weight: 48, arbitrary: fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: 5, max: 15 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: 30, max: 4000 }) }) },
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('health' as const), status: fc.constantFrom<HealthStatus>('Healthy', 'Degraded', 'Degraded', 'Degraded', 'Progressing', 'Unknown') }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('ci' as const), state: fc.constantFrom('success' as const, 'failure' as const, 'pending' as const) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('approve' as const), user: fc.constantFrom('alice', 'mallory', '', 'true') }) },
  // The approval admission policy installed or removed (mostly installed).
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('enforcement' as const), on: fc.constantFrom(true, true, false) }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'humanMerge' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'humanClose' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'reset' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'abort' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'crash' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sharedWithProduction' as const), shared: fc.boolean() }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('candidate' as const), outcome: fc.constantFrom('found' as const, 'found' as const, 'none' as const, 'timeout' as const, 'error' as const) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('invariants' as const), results: fc.array(fc.constantFrom<CheckResult>('PASS', 'PASS', 'PASS', 'FAIL', 'UNKNOWN'), { minLength: 8, maxLength: 8 }) }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'failure' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revision' as const), known: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('gitAlreadyRestored' as const), restored: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'deleteApp' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'push' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'retarget' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'unapprove' as const }) },
);

interface World {
  now: number;
  health: HealthStatus;
  /** What the watch keeps: since when health has been Degraded without a break. */
  watched?: { health?: HealthStatus; degradedSince?: string };
  revision: string;
  /** Argo CD reports no synced revision for a while. */
  revisionHidden: boolean;
  gitAlreadyRestored: boolean;
  /** The rollback's files also deploy a production app (read with the preflight). */
  sharedWithProduction: boolean;
  appGone: boolean;
  ci: 'success' | 'failure' | 'pending';
  approval?: string;
  approvalWrittenAt?: string;
  /** Since when the API server has enforced who may approve; undefined while it does not. */
  enforcedSince?: string;
  abort: boolean;
  reset: boolean;
  candidate: CandidateOutcome['kind'];
  invariants: CheckResult[];
  failure: boolean;
  /** `built`: the rollback commit the operator made; `headSha` moves when someone pushes. */
  pr?: { number: number; state: 'open' | 'closed' | 'merged'; mergedByOperator: boolean; headSha: string; built: string; base: string };
  prCount: number;
  /** Merges carried out by the operator, with what it saw when it decided. */
  merges: Array<{ environment: string; affected: NonNullable<AttemptRecord['affected']>; approval?: AttemptRecord['approval']; invariants: InvariantResult[] }>;
}

interface Stored {
  record?: AttemptRecord;
  checks: HealthCheck[];
  /** The app's health key before any attempt. */
  pending?: { correlationId: string; checks: HealthCheck[] };
  /** Every record ever written, in order. */
  history: AttemptRecord[];
  attemptsStarted: number;
}

function facts(world: World, stored: Stored, environment: 'staging' | 'production', opened: boolean): Facts {
  const now = new Date(world.now);
  const record = stored.record;
  const degradedSince = world.watched?.degradedSince;
  const f: Facts = {
    now, app: { namespace: 'argocd', name: 'app' }, environment, settings: SETTINGS,
    ...(record ? { record } : {}), checks: record ? stored.checks : stored.pending?.checks ?? [],
    ...(!record && stored.pending ? { pendingCorrelationId: stored.pending.correlationId } : {}),
    ...(world.appGone ? {} : { health: { status: world.health, ...(world.revisionHidden ? {} : { revision: world.revision }), ...(degradedSince ? { degradedSince } : {}) } }),
    ...(world.appGone && record && inProgress(record.state) ? { applicationGone: true } : {}),
    source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/app', targetRevision: 'main' },
    suspended: false,
    nextCorrelationId: `00000000-0000-4000-8000-${String(stored.attemptsStarted + 1000 * (stored.pending ? 1 : 0)).padStart(12, '0')}`,
    human: { ...(world.abort ? { abort: 'test' } : {}), ...(world.reset ? { reset: true } : {}), ...(world.approval !== undefined ? { approval: { username: world.approval, ...(world.approvalWrittenAt ? { writtenAt: world.approvalWrittenAt } : {}) } } : {}) },
    approvalEnforcement: world.enforcedSince ? { enforced: true, since: world.enforcedSince } : { enforced: false, problem: 'binding deleted' },
  };
  if (!record) return f;
  if (world.failure) f.failure = { code: 'UNAVAILABLE', message: 'injected', call: 'test' };
  if (world.pr && record.state !== 'DegradationDetected') {
    f.pullRequest = { ref: { number: world.pr.number, url: `https://github.com/acme/gitops/pull/${world.pr.number}`, branch: 'ai-operator/rollback/app-00000000', state: world.pr.state }, headSha: world.pr.headSha, mergeCommitSha: 'm', mergedByOperator: world.pr.mergedByOperator, base: world.pr.base,
      // What observe checks: the head is the operator's commit (just built or recomputed), or why not.
      ...(world.pr.headSha === world.pr.built ? { rollbackCommit: { sha: world.pr.built, tree: 't', parent: 'p' } } : { notRollback: 'its head was pushed by mallory', headAuthor: 'mallory' }) };
    f.pullRequestJustOpened = opened;
    f.ci = world.ci;
    if (record.state === 'AwaitingMergeApproval') {
      f.invariants = INVARIANT_IDS.map((id, i) => ({ id, result: world.invariants[i]!, detail: '', checkedAt: now.toISOString() }));
    }
  }
  return f;
}

/** What observe would read when a decision asks for it. */
function observeNeeds(world: World, f: Facts, needs: NonNullable<Decision['needs']>): void {
  if (needs === 'candidate') {
    f.candidate = world.candidate === 'found'
      ? { kind: 'found', currentRevision: world.revision, candidate: { revision: 'good', shortRevision: 'good', uptime: 0.999, mode: 'metrics', evidence: 'e', ciState: 'success' } }
      : world.candidate === 'error' ? { kind: 'error', code: 'UNAVAILABLE', message: 'x' } : { kind: world.candidate, detail: 'd' };
    return;
  }
  const results = INVARIANT_IDS.map((id, i): InvariantResult => ({ id, result: i >= 5 ? 'UNKNOWN' : world.invariants[i]!, detail: 'd', checkedAt: f.now.toISOString() }));
  const affected = world.sharedWithProduction ? [{ namespace: 'argocd', name: 'app-production', environment: 'production' as const, paths: ['apps/base'] }] : [];
  f.preflight = { invariants: results, changedFiles: world.gitAlreadyRestored ? 0 : 2, base: 'main', affected };
}

function setHealth(world: World, status: HealthStatus): void {
  world.health = status;
  // The watch sees every change, whether or not a reconcile follows it.
  world.watched = { health: status, ...(nextDegradedSince(world.watched, status, new Date(world.now)) ? { degradedSince: nextDegradedSince(world.watched, status, new Date(world.now))! } : {}) };
}

function apply(world: World, a: Action): void {
  world.abort = false;
  world.reset = false;
  world.failure = false;
  switch (a.kind) {
    case 'tick': world.now += a.seconds * 1000; break;
    case 'health': setHealth(world, a.status); break;
    case 'revision': world.revisionHidden = !a.known; break;
    case 'gitAlreadyRestored': world.gitAlreadyRestored = a.restored; break;
    // Deleted, or created again under the same name.
    case 'deleteApp': world.appGone = !world.appGone; break;
    case 'ci': world.ci = a.state; break;
    case 'approve': world.approval = a.user; world.approvalWrittenAt = new Date(world.now).toISOString(); break;
    case 'enforcement': world.enforcedSince = a.on ? world.enforcedSince ?? new Date(world.now).toISOString() : undefined; break;
    case 'humanMerge': if (world.pr?.state === 'open') { world.pr.state = 'merged'; world.pr.mergedByOperator = false; world.revision = 'merged'; setHealth(world, 'Healthy'); } break;
    case 'humanClose': if (world.pr?.state === 'open') world.pr.state = 'closed'; break;
    case 'reset': world.reset = true; break;
    case 'abort': world.abort = true; break;
    case 'candidate': world.candidate = a.outcome; break;
    case 'invariants': world.invariants = a.results; break;
    case 'failure': world.failure = true; break;
    case 'crash': break;
    case 'push': if (world.pr?.state === 'open') world.pr.headSha = `${world.pr.headSha}+`; break;
    case 'retarget': if (world.pr?.state === 'open') world.pr.base = 'release'; break;
    case 'unapprove': world.approval = undefined; break;
    case 'sharedWithProduction': world.sharedWithProduction = a.shared; break;
  }
}

/** Runs one action sequence; `check` sees every decision with the facts it was made from. */
function run(actions: Action[], environment: 'staging' | 'production', check: (f: Facts, d: Decision, stored: Stored, world: World) => void): Stored {
  const world: World = { now: Date.parse('2026-11-22T00:00:00Z'), health: 'Healthy', revision: 'bad', revisionHidden: false, enforcedSince: '2026-11-21T00:00:00.000Z', gitAlreadyRestored: false, sharedWithProduction: false, appGone: false, ci: 'pending', abort: false, reset: false, candidate: 'found', invariants: Array(8).fill('PASS'), failure: false, prCount: 0, merges: [] };
  const stored: Stored = { checks: [], history: [], attemptsStarted: 0 };
  for (const a of actions) {
    apply(world, a);
    let opened = false;
    // A few rounds, as the reconciler does; a crash drops the intents of the round.
    for (let round = 0; round < 4; round++) {
      const f = facts(world, stored, environment, opened);
      let d = decide(f);
      if (d.needs) {
        observeNeeds(world, f, d.needs);
        d = decide(f);
        expect(d.needs).toBeUndefined();
      }
      check(f, d, stored, world);
      if (d.degradation !== undefined) stored.pending = d.degradation ?? undefined;
      if (d.record) {
        if (!f.record) {
          stored.attemptsStarted++;
          stored.pending = undefined;
        }
        stored.record = d.record;
        stored.history.push(d.record);
        if (d.checks) stored.checks = d.checks;
        if (d.record.state === 'Idle' || d.record.state === 'RollbackComplete' || d.release) {
          stored.record = undefined;
          stored.checks = [];
          world.pr = undefined;
          world.approval = undefined;
        }
      }
      if (a.kind === 'crash' || d.intents.length === 0) break;
      for (const intent of d.intents) {
        if (intent.kind === 'openPullRequest' && !world.pr) {
          world.pr = { number: ++world.prCount, state: 'open', mergedByOperator: false, headSha: `h${world.prCount}`, built: `h${world.prCount}`, base: 'main' };
          opened = true;
        }
        if (intent.kind === 'mergePullRequest' && world.pr?.state === 'open') {
          world.merges.push({ environment, affected: (d.record ?? f.record)?.affected ?? [], ...(f.record?.approval ?? d.record?.approval ? { approval: (d.record ?? f.record)!.approval! } : {}), invariants: f.invariants ?? [] });
          world.pr.state = 'merged';
          world.pr.mergedByOperator = true;
          // Argo CD syncs the rollback; later actions may still flip health.
          world.revision = 'merged';
          setHealth(world, 'Healthy');
        }
        if (intent.kind === 'closePullRequest' && world.pr?.state === 'open') world.pr.state = 'closed';
        if (intent.kind === 'removeApproval') world.approval = undefined;
      }
    }
  }
  return stored;
}

const RUNS = 1500;
// size 'max': fast-check would otherwise keep arrays short (~10), too short to reach late states.
const sequences = fc.array(action, { minLength: 10, maxLength: 150, size: 'max' });
const environments = fc.constantFrom('staging' as const, 'production' as const);

// Thousands of runs each: seconds when CI shares its cores, more than the unit default of 5.
describe('state machine properties (SPEC §14)', { timeout: 60_000 }, () => {
  it('1. never takes a transition outside the table', () => {
    fc.assert(fc.property(sequences, environments, (actions, env) => {
      run(actions, env, (f, d) => {
        if (d.transition) expect(isAllowed(d.transition.from, d.transition.to, d.transition.reason)).toBe(true);
        if (d.record && f.record) {
          for (const t of d.record.transitions) expect(isAllowed(t.from, t.to, t.reason)).toBe(true);
        }
      });
    }), { numRuns: RUNS, seed: 20261122 });
  });

  it('2. never merges production without a recorded, authorized approval', () => {
    fc.assert(fc.property(sequences, (actions) => {
      const merges: World['merges'] = [];
      run(actions, 'production', (f, d, _s, world) => {
        // An approval is recorded only while the API server enforces who may approve, and only one written since.
        if (d.record?.approval && !f.record?.approval) {
          expect(f.approvalEnforcement?.enforced).toBe(true);
          expect(Date.parse(f.human.approval!.writtenAt!)).toBeGreaterThanOrEqual(Date.parse(f.approvalEnforcement!.since!));
        }
        for (const intent of d.intents) {
          if (intent.kind !== 'mergePullRequest') continue;
          const approval = (d.record ?? f.record)?.approval;
          expect(approval).toBeDefined();
          expect(SETTINGS.approvers.users).toContain(approval!.approvedBy);
        }
        merges.push(...world.merges.splice(0));
        if (d.transition?.to === 'RollbackMerged' && d.transition.reason === 'ApprovedAndMerged') expect(f.record?.approval).toBeDefined();
      });
      for (const m of merges) expect(m.approval).toBeDefined();
    }), { numRuns: RUNS, seed: 20261123 });
  });

  it('2c. never auto-merges a staging rollback that also changes what a production app deploys (issue 18 §4)', () => {
    const seen = { sharedMerges: 0, stagingMerges: 0 };
    fc.assert(fc.property(sequences, (actions) => {
      run(actions, 'staging', (f, d, _s, world) => {
        for (const m of world.merges) {
          if (m.affected.some((a) => a.environment !== 'staging')) {
            seen.sharedMerges++;
            expect(m.approval).toBeDefined();
            expect(SETTINGS.approvers.users).toContain(m.approval!.approvedBy);
          } else seen.stagingMerges++;
        }
        world.merges.splice(0);
        if (d.transition?.to === 'RollbackMerged' && d.transition.reason === 'AutoMerged') {
          expect((f.record?.affected ?? []).every((a) => a.environment === 'staging')).toBe(true);
        }
      });
    }), { numRuns: RUNS, seed: 20261207 });
    // Not vacuous: plain staging rollbacks still merge on their own.
    expect(seen.stagingMerges).toBeGreaterThan(5);
  });

  it('2b. merges only the rollback commit it built, by SHA, into the app\'s branch, and in production only with a standing approval given for it', () => {
    const seen = { merges: { staging: 0, production: 0 }, changed: 0 };
    fc.assert(fc.property(sequences, environments, (actions, env) => {
      run(actions, env, (f, d, _s, world) => {
        if (d.transition?.reason === 'PullRequestChanged') seen.changed++;
        for (const intent of d.intents) {
          if (intent.kind !== 'mergePullRequest') continue;
          seen.merges[env]++;
          const record = d.record ?? f.record!;
          expect(intent.headSha).toBe(record.rollbackCommit?.sha);
          expect(world.pr!.headSha).toBe(world.pr!.built);
          expect(intent.headSha).toBe(world.pr!.built);
          expect(world.pr!.base).toBe('main');
          if (env === 'production') {
            expect(record.approval?.commitSha).toBe(world.pr!.built);
            // The annotation still stands, unchanged, in the facts of this decision.
            expect(f.human.approval?.username).toBe(record.approval!.approvedBy);
          }
        }
      });
    }), { numRuns: RUNS, seed: 20261206 });
    // Not vacuous: merges happen in both environments, and moved heads or bases are met.
    // Not vacuous: merges happen, and moved heads or bases are met. (A production merge needs an approval, then
    // every invariant PASS, in that order: rare in a random walk; src/fsm/merge-binding.test.ts shows it directly.)
    expect(seen.merges.staging + seen.merges.production).toBeGreaterThan(5);
    expect(seen.changed).toBeGreaterThan(5);
  });

  it('3. never auto-merges unless all eight invariants PASS on the facts of that decision', () => {
    fc.assert(fc.property(sequences, (actions) => {
      run(actions, 'staging', (f, d) => {
        if (!d.intents.some((i) => i.kind === 'mergePullRequest')) return;
        expect(f.invariants).toHaveLength(8);
        expect(f.invariants!.every((i) => i.result === 'PASS')).toBe(true);
      });
    }), { numRuns: RUNS, seed: 20261124 });
  });

  it('4. never starts an attempt while one is active, and never opens a second PR for one', () => {
    fc.assert(fc.property(sequences, environments, (actions, env) => {
      run(actions, env, (f, d) => {
        if (d.record && f.record) expect(d.record.correlationId).toBe(f.record.correlationId);
        if (f.record && (f.pullRequest || f.record.pullRequest)) expect(d.intents.some((i) => i.kind === 'openPullRequest')).toBe(false);
      });
    }), { numRuns: RUNS, seed: 20261125 });
  });

  it('5. terminal states are left only by reset', () => {
    fc.assert(fc.property(sequences, environments, (actions, env) => {
      run(actions, env, (f, d) => {
        if (!f.record || !isTerminal(f.record.state)) return;
        if (d.transition) expect(d.transition).toEqual({ from: f.record.state, to: 'Idle', reason: 'Reset' });
        // The only effects: a comment, and closing the aborted attempt's PR as part of a reset.
        expect(d.intents.filter((i) => i.kind !== 'commentPullRequest' && !(i.kind === 'closePullRequest' && f.human.reset))).toEqual([]);
      });
    }), { numRuns: RUNS, seed: 20261126 });
  });

  it('6. every event it emits passes its JSON Schema (schemas/), whatever the facts lack', () => {
    fc.assert(fc.property(sequences, environments, (actions, env) => {
      run(actions, env, (f, d) => {
        for (const pending of d.events) {
          const correlationId = pending.correlationId ?? d.record?.correlationId ?? d.degradation?.correlationId ?? f.pendingCorrelationId ?? f.record?.correlationId;
          expect(correlationId, pending.type).toBeDefined();
          const event = makeEvent(pending.type, { subject: 'argocd/app', correlationId: correlationId!, data: pending.data as never, time: f.now });
          const validation = validateEvent(event);
          expect(validation.ok ? '' : `${pending.type}: ${validation.errors}`).toBe('');
        }
      });
    }), { numRuns: RUNS, seed: 20261201 });
  });

  it('reaches every state of the table from random sequences (the generator is not trivial)', () => {
    const seen = new Set<string>();
    fc.assert(fc.property(sequences, environments, (actions, env) => {
      run(actions, env, (_f, d) => { if (d.transition) seen.add(`${d.transition.from}->${d.transition.to}`); });
    }), { numRuns: RUNS, seed: 20261127 });
    for (const edge of ['Idle->DegradationDetected', 'DegradationDetected->Idle', 'DegradationDetected->CandidateResolved', 'DegradationDetected->Abort',
      'CandidateResolved->PRCreated', 'PRCreated->AwaitingMergeApproval', 'PRCreated->Abort', 'PRCreated->Idle', 'AwaitingMergeApproval->RollbackMerged',
      'AwaitingMergeApproval->Abort', 'AwaitingMergeApproval->Idle', 'RollbackMerged->RollbackComplete', 'Abort->Idle', 'CandidateResolved->Abort']) {
      expect(seen, edge).toContain(edge);
    }
    expect(inProgress('PRCreated')).toBe(true);
  });
});
