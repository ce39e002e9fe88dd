import { describe, expect, it } from 'vitest';
import { authorizeApproval } from './approval.ts';

const approvers = { users: ['alice@example.com'], groups: ['sre-oncall'] };
const enforced = { enforced: true, since: '2026-12-01T10:00:00Z' };
const after = '2026-12-01T10:05:00Z';

describe('authorizeApproval', () => {
  it.each([
    [{ username: 'alice@example.com', writtenAt: after }, true, /listed in merge.approvers.users/],
    // The admission policy admitted it, so the writer is the named user and in an approver group.
    [{ username: 'bob', writtenAt: after }, true, /admitted by the API server as a member of an approver group \(sre-oncall\)/],
    [{ username: 'true', writtenAt: after }, false, /must name the approving user/],
    [{ username: '', writtenAt: after }, false, /must name the approving user/],
  ])('%j authorized=%s while the API server enforces the policy', (request, authorized, detail) => {
    const verdict = authorizeApproval(request, approvers, enforced);
    expect(verdict.authorized).toBe(authorized);
    expect(verdict.detail).toMatch(detail);
  });

  it('records nothing while the API server does not enforce who may approve (fail closed)', () => {
    expect(authorizeApproval({ username: 'alice@example.com', writtenAt: after }, approvers, { enforced: false, problem: 'ValidatingAdmissionPolicyBinding ai-operator-approvals not found' }))
      .toEqual({ authorized: false, blocked: true, unchecked: true, detail: 'the API server does not enforce who may approve (ValidatingAdmissionPolicyBinding ai-operator-approvals not found): no approval is recorded until it does' });
  });

  it('refuses an approval seen before enforcement was, or never seen appear', () => {
    expect(authorizeApproval({ username: 'alice@example.com', writtenAt: '2026-12-01T09:00:00Z' }, approvers, enforced).detail).toMatch(/before the API server was seen enforcing the approval policy .*: write it again$/);
    expect(authorizeApproval({ username: 'alice@example.com' }, approvers, enforced).authorized).toBe(false);
    // Seen even a moment before enforcement was confirmed: refused (and removed), to be written again.
    expect(authorizeApproval({ username: 'alice@example.com', writtenAt: '2026-12-01T10:00:00.600Z' }, approvers, { enforced: true, since: '2026-12-01T10:00:00.700Z' }).authorized).toBe(false);
  });

  it('counts an approval first seen in a list (after a restart) when enforcement held since before the attempt object was created', () => {
    // creationTimestamp is set by the API server, truncated to the second: every write since it was checked
    expect(authorizeApproval({ username: 'alice@example.com', objectCreatedAt: '2026-12-01T10:00:00Z' }, approvers, enforced).authorized).toBe(true);
    // Created before enforcement was confirmed: its annotation may have been written unchecked
    expect(authorizeApproval({ username: 'alice@example.com', objectCreatedAt: '2026-12-01T09:59:59Z' }, approvers, enforced))
      .toMatchObject({ authorized: false, unchecked: true });
  });

  it('waits, without removing anything, while enforcement is unknown (not read yet, or unreadable)', () => {
    expect(authorizeApproval({ username: 'alice@example.com', writtenAt: after }, approvers, { enforced: false, unknown: true, problem: 'could not read Namespace team-a (UNAVAILABLE: …)' }))
      .toEqual({ authorized: false, blocked: true, detail: 'whether the API server enforces who may approve is not known right now (could not read Namespace team-a (UNAVAILABLE: …)): the approval is recorded once it is confirmed' });
  });

  it('without approver groups, only a listed user may approve', () => {
    expect(authorizeApproval({ username: 'mallory', writtenAt: after }, { users: ['alice@example.com'], groups: [] }, enforced))
      .toEqual({ authorized: false, detail: 'mallory is not among the approvers of this policy' });
  });

  it('refuses everyone when a policy names no approvers', () => {
    expect(authorizeApproval({ username: 'alice', writtenAt: after }, { users: [], groups: [] }, enforced)).toEqual({ authorized: false, detail: 'the policy names no approvers: nobody may approve' });
  });
});
