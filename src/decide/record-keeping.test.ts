// What the operator says about a decision, derived from the decision alone.
import { describe, expect, it } from 'vitest';
import type { Decision, Facts } from './machine.ts';
import type { AttemptRecord } from '../fsm/record.ts';
import { Reason } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';
import { sayDecision, sayIntent, sayStalled } from './record-keeping.ts';

const NOW = new Date('2026-12-06T12:00:00Z');
const app = { namespace: 'argocd', name: 'web' };

function record(patch: Partial<AttemptRecord> = {}): AttemptRecord {
  return {
    correlationId: 'c-1', app, environment: 'production', settings: SETTINGS, state: 'PRCreated', reason: 'PullRequestOpened', message: 'CI failed: ci/build',
    since: NOW.toISOString(), version: 4, createdAt: '2026-12-06T11:50:00Z', degradation: { firstSeenAt: '2026-12-06T11:40:00Z', checks: 3 },
    invariants: [{ id: 'I6_ci_success', result: 'FAIL', detail: 'ci/build failed', checkedAt: NOW.toISOString() }], transitions: [],
    pullRequest: { number: 42, url: 'https://github.example/acme/gitops/pull/42', branch: 'ai-operator/rollback/c-1', state: 'open' },
    ...patch,
  };
}

const facts = (patch: Partial<Facts> = {}): Facts => ({
  now: NOW, app, environment: 'production', settings: SETTINGS, checks: [], suspended: false, nextCorrelationId: 'c-next', human: {}, ...patch,
});

const decision = (patch: Partial<Decision>): Decision => ({ events: [], intents: [], notes: [], ...patch });

describe('sayDecision', () => {
  it('says a transition to Abort in the commit (audit), the metrics, a Warning Event, a log line and the span', () => {
    const aborted = record({ state: 'Abort', reason: Reason.CIFailure, version: 5 });
    const said = sayDecision(facts({ record: record() }), decision({ record: aborted, transition: { from: 'PRCreated', to: 'Abort', reason: Reason.CIFailure } }), []);
    expect(said.committedAudit).toEqual([expect.objectContaining({ level: 'WARN', actionType: 'ABORT', module: 'Reconciler', message: 'PRCreated -> Abort (CIFailure)', eventId: 'c-1-v5',
      invariantsChecked: { I6_ci_success: 'FAIL' }, metadata: expect.objectContaining({ prNumber: 42, from: 'PRCreated', to: 'Abort' }) })]);
    expect(said.metrics).toEqual([
      { metric: 'fsmState', app: 'web', state: 'Abort' },
      { metric: 'rollbackAborted', app: 'web', environment: 'production', reason: 'CIFailure' },
    ]);
    expect(said.events).toEqual([expect.objectContaining({ type: 'Warning', reason: 'CIFailure', action: 'ToAbort', record: aborted,
      note: 'PRCreated -> Abort (PR #42 https://github.example/acme/gitops/pull/42): CI failed: ci/build' })]);
    expect(said.logs).toEqual([expect.objectContaining({ level: 'info', message: 'Transitioned attempt' })]);
    expect(said.audit).toEqual([]);
    expect(said.span).toMatchObject({ 'ai_operator.transition': 'PRCreated -> Abort', 'ai_operator.reason': 'CIFailure', 'ai_operator.invariants': 'I6_ci_success=FAIL' });
  });

  it('names who reset an attempt through POST /reset, and the annotation otherwise', () => {
    const reset = decision({ record: record({ state: 'Idle', reason: Reason.Reset, message: 'reset by a human' }), transition: { from: 'Abort', to: 'Idle', reason: Reason.Reset } });
    expect(sayDecision(facts(), reset, [], { resetBy: { username: 'alice', via: 'POST /reset/c-1' } }).committedAudit[0]).toMatchObject({
      actionType: 'RESET', reasoning: 'reset by a human: alice through POST /reset/c-1', metadata: { resetBy: 'alice', resetVia: 'POST /reset/c-1' } });
    expect(sayDecision(facts(), reset, []).committedAudit[0]!.metadata).toMatchObject({ resetVia: 'annotation' });
  });

  it('audits the merge before its transition, and observes the recovery time at RollbackComplete', () => {
    const merged = record({ state: 'RollbackMerged', merge: { auto: true, commitSha: 'm1' } as AttemptRecord['merge'] });
    const said = sayDecision(facts(), decision({ record: merged, transition: { from: 'AwaitingMergeApproval', to: 'RollbackMerged', reason: Reason.AutoMerged } }), []);
    expect(said.committedAudit.map((a) => a.actionType)).toEqual(['PR_MERGED', 'FSM_TRANSITION']);
    expect(said.metrics).toContainEqual({ metric: 'rollbackMerged', app: 'web', environment: 'production', auto: true });
    const complete = sayDecision(facts(), decision({ record: record({ state: 'RollbackComplete' }), transition: { from: 'RollbackMerged', to: 'RollbackComplete', reason: Reason.HealthRestored } }), []);
    expect(complete.metrics).toContainEqual({ metric: 'recovery', app: 'web', environment: 'production', seconds: 1200 });
  });

  it('says a Degraded app that may not be rolled back once per degradation, on the Application alone', () => {
    const waiting = decision({ notes: [{ kind: 'waiting', reason: 'PolicySuspended', message: 'Degraded, but the policy is suspended' }] });
    const first = sayDecision(facts({ health: { status: 'Degraded' } }), waiting, []);
    expect(first.events).toEqual([{ app, type: 'Warning', reason: 'PolicySuspended', action: 'StartRollback', note: 'Degraded, but the policy is suspended' }]);
    expect(first.audit).toEqual([expect.objectContaining({ actionType: 'DEGRADATION_IGNORED', level: 'WARN' })]);
    const again = sayDecision(facts({ health: { status: 'Degraded' } }), waiting, [], { waitingSaid: 'Degraded, but the policy is suspended' });
    expect([again.events, again.audit, again.logs]).toEqual([[], [], []]);
  });

  it('audits the degradation count under its CloudEvent ids', () => {
    const counting = decision({ degradation: { correlationId: 'c-2', checks: [] }, events: [{ type: 'degradation.detected', data: {} as never }] });
    expect(sayDecision(facts({ health: { status: 'Degraded', revision: 'bad' } }), counting, ['e-1']).committedAudit).toEqual([expect.objectContaining({
      actionType: 'DEGRADATION_DETECTED', correlationId: 'c-2', eventId: 'e-1', reasoning: 'Argo CD reports Degraded on bad' })]);
  });
});

describe('sayIntent and sayStalled', () => {
  it('audits an intent\'s failure only the first time it is seen', () => {
    const close = { kind: 'closePullRequest' as const, number: 42, comment: 'health came back' };
    const failure = { code: 'PERMISSION_DENIED', message: 'HTTP 403', call: 'closePullRequest' };
    expect(sayIntent(close, record(), { failure: { ...failure, first: true } }).audit).toEqual([expect.objectContaining({ level: 'ERROR', actionType: 'MCP_CALL', message: 'closePullRequest failed: HTTP 403' })]);
    expect(sayIntent(close, record(), { failure: { ...failure, first: false } }).audit).toEqual([]);
    expect(sayIntent(close, record(), {}).audit).toEqual([expect.objectContaining({ actionType: 'PR_CLOSED', reasoning: 'health came back' })]);
  });

  it('says nothing of an open that another attempt\'s PR held back, and a stall on the Application', () => {
    const open = { kind: 'openPullRequest' as const, preflight: { invariants: [], changedFiles: 1, base: 'main' } };
    expect(sayIntent(open, record(), {}).audit).toEqual([]);
    expect(sayIntent(open, record(), { opened: { number: 7, url: 'u', branch: 'b' } }).audit[0]).toMatchObject({ actionType: 'PR_CREATED', eventId: 'c-1-pr-7' });
    const stalled = sayStalled(app, 'c-1', 'CorruptRecord', 'bad JSON');
    expect(stalled.events).toEqual([{ app, type: 'Warning', reason: 'CorruptRecord', action: 'Reconcile', note: 'stopped retrying until repaired: bad JSON' }]);
  });
});
