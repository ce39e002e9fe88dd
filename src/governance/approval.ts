// Who may approve a production rollback. The admission policy (SPEC §3) makes
// sure the annotation's value is the requesting user; here the operator checks
// that user against the policy's approvers before it records the approval.
export interface Approvers {
  users: string[];
  groups: string[];
}

export interface ApprovalRequest {
  username: string;
  /** Groups of the user, when known (from a SubjectAccessReview or the admission policy). */
  groups?: string[];
}

export type ApprovalVerdict = { authorized: true; detail: string } | { authorized: false; detail: string };

export function authorizeApproval(request: ApprovalRequest, approvers: Approvers): ApprovalVerdict {
  const username = request.username.trim();
  if (username === '' || username === 'true') {
    return { authorized: false, detail: 'the approve annotation must name the approving user, not be empty or "true"' };
  }
  if (approvers.users.includes(username)) return { authorized: true, detail: `${username} is listed in merge.approvers.users` };
  const group = request.groups?.find((g) => approvers.groups.includes(g));
  if (group !== undefined) return { authorized: true, detail: `${username} is in approver group ${group}` };
  if (approvers.users.length === 0 && approvers.groups.length === 0) {
    return { authorized: false, detail: 'the policy names no approvers: nobody may approve' };
  }
  return { authorized: false, detail: `${username} is not among the approvers of this policy` };
}
