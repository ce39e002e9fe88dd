// What the attempt does when an intent's side effect could not happen, for every
// intent, in one place (issue 19 §1). The state machine reads it; nothing else
// decides it.
//
// - A transient code (an outage after the call's own retries) holds the attempt:
//   no deadline runs, the next interval observes again and a decision that still
//   wants the effect issues it again — once per interval, not once per round.
// - A permanent code is the answer the same call will get again: the intent is
//   never repeated. The row of its intent says what the attempt does instead.
// - Either way the failure is said once: one audit record per distinct failure
//   (reconcilers/application.ts execute), the status message, and, when the
//   attempt moves on without the effect, a Warning Event.
import type { ErrorCode } from '../api/errors.ts';

/** The intents of decide/machine.ts (`Intent['kind']`): execute() records a failure as one, so a new intent without a row does not compile. */
export type IntentKind = 'openPullRequest' | 'mergePullRequest' | 'closePullRequest' | 'commentPullRequest' | 'requestApproval' | 'removeApproval';

export const TRANSIENT: readonly ErrorCode[] = ['UNAVAILABLE', 'TIMEOUT', 'RATE_LIMITED'];
/** Refused (401/403: no access, an archived repository), gone (404), in conflict with what is there (405/409/422), malformed. */
export const PERMANENT: readonly ErrorCode[] = ['PERMISSION_DENIED', 'NOT_FOUND', 'CONFLICT', 'INVALID_ARGUMENT'];

/**
 * - `abort`: the attempt cannot go on without the effect — Abort, the reason named by the code.
 * - `proceed`: the effect only tidies up after a decision already taken — the transition it waited for is
 *   taken, the failure recorded with it; what it would have changed is left for a human (named in the message).
 */
export type OnPermanentFailure = 'abort' | 'proceed';

export const ON_PERMANENT_FAILURE: Readonly<Record<IntentKind, { then: OnPermanentFailure; why: string }>> = {
  openPullRequest: { then: 'abort', why: 'without its PR the attempt has nothing to merge' },
  mergePullRequest: { then: 'abort', why: 'the rollback cannot land; the PR is left open with a comment' },
  closePullRequest: { then: 'proceed', why: 'the app ended, health came back or a human reset: that stands; the PR is left open, to be closed by hand' },
  commentPullRequest: { then: 'abort', why: 'a PR the operator may not write to cannot be merged by it either; after the attempt ended: nothing more' },
  requestApproval: { then: 'abort', why: 'the approver cannot be asked on the PR, and the PR could not be merged' },
  removeApproval: { then: 'abort', why: 'fail closed: an approve annotation nobody checked must never stay to count later' },
};

/** An intent of this reconcile that failed after its call's retries. */
export interface IntentFailure {
  kind: IntentKind;
  /** The PR it was about, when it was about one. */
  number?: number;
  code: ErrorCode;
  message: string;
}

/** What the attempt does about a failed intent: `hold` on an outage, else its row. */
export function onIntentFailure(failure: Pick<IntentFailure, 'kind' | 'code'>): 'hold' | OnPermanentFailure {
  return TRANSIENT.includes(failure.code) ? 'hold' : ON_PERMANENT_FAILURE[failure.kind].then;
}

/** GitHub's words for a write to an archived repository: it refuses every write, comments included. */
export const ARCHIVED = 'Repository was archived so is read-only';

/**
 * Whether a PR can still be told, by a comment, what could not be done to it: not when it or its
 * repository is gone (NOT_FOUND), nor when the repository is archived. Otherwise it is tried once.
 */
export function commentPossible(failure: Pick<IntentFailure, 'code' | 'message'>): boolean {
  return failure.code !== 'NOT_FOUND' && !failure.message.includes(ARCHIVED);
}

/** The failure as a status message says it: "could not close #42 (PERMISSION_DENIED: HTTP 403: …) — close it by hand". */
export function leftUndone(failure: IntentFailure, what: string, todo: string): string {
  // IntegrationError's message repeats the call and the code in front: said once here.
  const detail = failure.message.replace(/^\w+: [A-Z_]+: /, '');
  return `could not ${what}${failure.number !== undefined ? ` #${failure.number}` : ''} (${failure.code}: ${detail}) — ${todo}`;
}
