// Who may approve a production rollback (SPEC §3, §14.1). The API server decides
// who wrote the approve annotation: the shipped ValidatingAdmissionPolicy admits
// it only when its value is the requesting user and that user, or one of their
// groups, is among the attempt's approvers (spec.approvers, copied from the
// governing policy when the attempt was created). The operator records an
// approval only while that policy is enforced, and only one written since —
// otherwise the value proves nothing about its writer. Pure.
export interface Approvers {
  users: string[];
  groups: string[];
}

export interface ApprovalRequest {
  username: string;
  /** When the operator's watch first saw this value of the annotation; unknown when it never did. */
  writtenAt?: string;
  /** When the API server created the RollbackAttempt (its creationTimestamp, which no client sets). */
  objectCreatedAt?: string;
}

/**
 * Whether the API server enforces the approval policy in the attempt's namespace, and since when
 * without a break (ApprovalEnforcementPort). `unknown`: not read yet, or unreadable now — not a gap:
 * nothing is recorded meanwhile, and nothing is taken away.
 */
export interface Enforcement {
  enforced: boolean;
  since?: string;
  problem?: string;
  unknown?: true;
}

/** `unchecked`: no API server check stands behind this annotation, so it must be removed, never kept for later. */
export type ApprovalVerdict = { authorized: true; detail: string } | { authorized: false; detail: string; blocked?: true; unchecked?: true };

export function authorizeApproval(request: ApprovalRequest, approvers: Approvers, enforcement: Enforcement): ApprovalVerdict {
  if (!enforcement.enforced && enforcement.unknown) {
    return { authorized: false, blocked: true, detail: `whether the API server enforces who may approve is not known right now (${enforcement.problem ?? 'not checked yet'}): the approval is recorded once it is confirmed` };
  }
  if (!enforcement.enforced) {
    return { authorized: false, blocked: true, unchecked: true, detail: `the API server does not enforce who may approve (${enforcement.problem ?? 'admission policy not confirmed'}): no approval is recorded until it does` };
  }
  const username = request.username.trim();
  if (username === '' || username === 'true') {
    return { authorized: false, detail: 'the approve annotation must name the approving user, not be empty or "true"' };
  }
  if (approvers.users.length === 0 && approvers.groups.length === 0) {
    return { authorized: false, detail: 'the policy names no approvers: nobody may approve' };
  }
  // Checked for sure when enforcement held, unbroken, since before the object existed (creationTimestamp is
  // truncated to the second, so it is never later than the creation), or since the watch saw the value appear.
  const since = enforcement.since ? Date.parse(enforcement.since) : undefined;
  const checkedSinceCreation = since !== undefined && request.objectCreatedAt !== undefined && Date.parse(request.objectCreatedAt) >= since;
  const seenSinceEnforced = since !== undefined && request.writtenAt !== undefined && Date.parse(request.writtenAt) >= since;
  if (since !== undefined && !checkedSinceCreation && !seenSinceEnforced) {
    return { authorized: false, unchecked: true, detail: `the approval by ${username} appeared ${request.writtenAt ? `at ${request.writtenAt}, ` : ''}before the API server was seen enforcing the approval policy (since ${enforcement.since}): write it again` };
  }
  if (approvers.users.includes(username)) return { authorized: true, detail: `${username} is listed in merge.approvers.users (the API server checked the writer)` };
  if (approvers.groups.length > 0) {
    return { authorized: true, detail: `${username} was admitted by the API server as a member of an approver group (${approvers.groups.join(', ')})` };
  }
  return { authorized: false, detail: `${username} is not among the approvers of this policy` };
}
