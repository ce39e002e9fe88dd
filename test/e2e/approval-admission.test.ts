// Who may approve, enforced by the real API server (SPEC §3): the shipped
// ValidatingAdmissionPolicy, bound to this test's namespace, admits
// ai-operator.io/approve only as the requesting user's own name and only from an
// approver the operator copied into spec.approvers; the CRD keeps spec
// immutable and RBAC keeps people off the status. No operator runs here: the API
// server alone decides. Then the operator's enforcement check reads the same
// policy and binding and says when they stop enforcing.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ApprovalEnforcementCheck } from '../../src/integrations/approval-enforcement.ts';
import { createLogger } from '../../src/observability/log.ts';
import { grantPatch, bindRole, installApprovalPolicy, namespaceBinding } from './support/approvals.ts';
import { freshNamespace, kubeConfig, kubectl, kubectlOk } from './support/kube.ts';

const stack = inject('stack');

const ALICE = 'alice@example.com';
const APPROVE = 'ai-operator.io/approve';

// Every command and the API server's answer, for the issue's closing note.
function show(args: string[], result: { code: number; stdout: string; stderr: string }): void {
  const answer = [result.stderr, result.stdout].map((s) => s.trim()).filter(Boolean).join('\n');
  console.log(`$ kubectl ${args.join(' ')}\n${answer}${result.code === 0 ? '' : `\n(exit ${result.code})`}`);
}

/** kubectl as `user` (with `groups`), through the admin's right to impersonate. */
async function as(user: string, groups: string[], args: string[]) {
  const full = [`--as=${user}`, ...groups.map((g) => `--as-group=${g}`), ...args];
  const result = await kubectl(stack, full);
  show(full, result);
  return result;
}

let serial = 0;
async function createAttempt(namespace: string, extra: { annotations?: Record<string, string> } = {}) {
  const name = `payment-service-${(0x1f3a9c00 + ++serial).toString(16)}`;
  const object = {
    apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt',
    metadata: { name, namespace, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    // As the operator writes it: the governing policy's approvers, copied once.
    spec: {
      application: { name: 'payment-service', namespace: 'argocd' },
      environment: 'production',
      correlationId: `${(0x1f3a9c00 + serial).toString(16)}-5b1c-4d2e-8f00-0123456789ab`,
      policyRef: { name: 'production', namespace: 'argocd' },
      approvers: { users: [ALICE], groups: ['sre'] },
    },
  };
  const result = await kubectl(stack, ['create', '-f', '-'], JSON.stringify(object));
  return { name, result };
}

async function approvalOf(namespace: string, name: string): Promise<string | undefined> {
  const object = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', namespace, '-o', 'json'])) as { metadata: { annotations?: Record<string, string> } };
  return object.metadata.annotations?.[APPROVE];
}

const denied = (policyMessage: string) => expect.stringMatching(
  new RegExp(`is forbidden: ValidatingAdmissionPolicy 'ai-operator-approvals' with binding '[^']+' denied request: ${policyMessage.replace(/[.()]/g, '\\$&')}`),
);

describe('approvals on the real API server', () => {
  let namespace: string;

  beforeAll(async () => {
    // Given the shipped policy bound to a fresh namespace, and bob, alice and
    // carol allowed to patch RollbackAttempts there (carol also through group sre).
    namespace = await freshNamespace(stack, 'approvals');
    await installApprovalPolicy(stack, namespace);
    await grantPatch(stack, namespace, 'bob');
    await grantPatch(stack, namespace, ALICE);
    await grantPatch(stack, namespace, 'carol');
    await grantPatch(stack, namespace, 'sre', 'Group');
  });

  it('rejects an approval from someone who is not an approver', async () => {
    const { name } = await createAttempt(namespace);
    const result = await as('bob', [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=bob`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toEqual(denied('bob is not an approver of this RollbackAttempt (spec.approvers)'));
    expect(await approvalOf(namespace, name)).toBeUndefined();
  });

  it('rejects an approver writing someone else\'s name', async () => {
    const { name } = await createAttempt(namespace);
    const result = await as(ALICE, [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=bob`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toEqual(denied(`ai-operator.io/approve must name the requesting user: ${ALICE} may not approve as bob`));
    // Even another approver's name: the value says who approved, so only that user may write it.
    const asCarol = await as(ALICE, [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=carol`]);
    expect(asCarol.stderr).toEqual(denied(`ai-operator.io/approve must name the requesting user: ${ALICE} may not approve as carol`));
    expect(await approvalOf(namespace, name)).toBeUndefined();
  });

  it('admits an approver writing their own name, and leaves it to others to change anything but the approval', async () => {
    const { name } = await createAttempt(namespace);
    const result = await as(ALICE, [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=${ALICE}`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await approvalOf(namespace, name)).toBe(ALICE);

    // An update that leaves the approval as it was is not an approval.
    const other = await as('bob', [], ['annotate', 'rollbackattempt', name, '-n', namespace, 'example.com/ticket=INC-42']);
    expect(other.code).toBe(0);
    // Replacing alice's approval by bob's own is a new approval, and bob is no approver.
    const replaced = await as('bob', [], ['annotate', '--overwrite', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=bob`]);
    expect(replaced.stderr).toEqual(denied('bob is not an approver of this RollbackAttempt (spec.approvers)'));
    expect(await approvalOf(namespace, name)).toBe(ALICE);
    // Withdrawing an approval can never merge anything: anyone who may annotate may do it.
    const removed = await as('bob', [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}-`]);
    expect(removed.code).toBe(0);
    expect(await approvalOf(namespace, name)).toBeUndefined();
  });

  it('admits a member of an approver group writing their own name, and not without the group', async () => {
    const { name } = await createAttempt(namespace);
    const alone = await as('carol', [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=carol`]);
    expect(alone.stderr).toEqual(denied('carol is not an approver of this RollbackAttempt (spec.approvers)'));
    const result = await as('carol', ['sre'], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=carol`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await approvalOf(namespace, name)).toBe('carol');
  });

  it('rejects an edit of spec.approvers: spec is immutable', async () => {
    const { name } = await createAttempt(namespace);
    const patch = JSON.stringify({ spec: { approvers: { users: [ALICE, 'bob'], groups: ['sre'] } } });
    const result = await as('bob', [], ['patch', 'rollbackattempt', name, '-n', namespace, '--type=merge', '-p', patch]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('spec: Invalid value: "object": spec is immutable: the operator writes it once when it creates the attempt');
    // Had the edit gone through, this approval would be admitted.
    const approve = await as('bob', [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=bob`]);
    expect(approve.stderr).toEqual(denied('bob is not an approver of this RollbackAttempt (spec.approvers)'));
  });

  it('forbids people to write the status', async () => {
    const { name } = await createAttempt(namespace);
    const patch = JSON.stringify({ status: { approval: { approvedBy: 'bob', approvedAt: '2026-12-01T10:00:00Z' } } });
    const result = await as('bob', [], ['patch', 'rollbackattempt', name, '-n', namespace, '--subresource=status', '--type=merge', '-p', patch]);
    expect(result.code).not.toBe(0);
    // kubectl reads the subresource before it patches it; bob may do neither.
    expect(result.stderr).toContain(`rollbackattempts.ai-operator.io "${name}" is forbidden: User "bob" cannot get resource "rollbackattempts/status" in API group "ai-operator.io" in the namespace "${namespace}"`);
    const canPatch = await kubectl(stack, ['auth', 'can-i', 'patch', 'rollbackattempts.ai-operator.io', '--subresource=status', '-n', namespace, '--as=bob']);
    expect(canPatch.stdout.trim()).toBe('no');
    const object = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', namespace, '-o', 'json'])) as { status?: unknown };
    expect(object.status).toBeUndefined();
  });

  it('rejects an approval written in the request that creates the attempt', async () => {
    // Whoever creates the object chose its approvers too: an approval then proves nothing.
    const { result } = await createAttempt(namespace, { annotations: { [APPROVE]: 'admin' } });
    show(['create', '-f', '-  # a RollbackAttempt with approvers and the approve annotation'], result);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toEqual(denied('ai-operator.io/approve cannot be set when a RollbackAttempt is created: approve the attempt the operator created'));
  });

  it('gives a viewer read access and nothing else', async () => {
    await bindRole(stack, namespace, 'ai-operator-viewer', 'victor');
    const { name } = await createAttempt(namespace);
    const can = async (verb: string, resource: string) => (await kubectl(stack, ['auth', 'can-i', verb, resource, '-n', namespace, '--as=victor'])).stdout.trim();
    await expect.poll(() => can('get', 'rollbackattempts.ai-operator.io'), { timeout: 10_000 }).toBe('yes');
    expect(await can('list', 'rollbackpolicies.ai-operator.io')).toBe('yes');
    expect(await can('patch', 'rollbackattempts.ai-operator.io')).toBe('no');
    const annotate = await as('victor', [], ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=victor`]);
    expect(annotate.stderr).toContain('User "victor" cannot patch resource "rollbackattempts"');
  });
});

describe('the enforcement check against the real API server', () => {
  let namespace: string;
  let bindingName: string;
  let check: ApprovalEnforcementCheck;
  const logLines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    namespace = await freshNamespace(stack, 'approval-check');
    ({ bindingName } = await installApprovalPolicy(stack, namespace));
    await grantPatch(stack, namespace, 'bob');
    check = ApprovalEnforcementCheck.fromKubeConfig(kubeConfig(stack), {
      bindingName, intervalMs: 200,
      log: createLogger('DEBUG', {}, (line) => logLines.push(JSON.parse(line) as Record<string, unknown>)),
    });
  });
  afterAll(async () => { await check?.stop(); });

  it('is enforced with the policy and its binding in Deny mode', async () => {
    await check.start();
    const state = check.current();
    console.log('enforced:', JSON.stringify(state));
    expect(state.enforced).toBe(true);
    expect(Date.parse(state.since!)).toBeLessThanOrEqual(Date.now());
  });

  it('is not enforced once the binding is deleted, and says which', async () => {
    await kubectlOk(stack, ['delete', 'validatingadmissionpolicybinding', bindingName]);
    await expect.poll(() => check.current().enforced, { timeout: 10_000 }).toBe(false);
    console.log('binding deleted:', JSON.stringify(check.current()));
    expect(check.current()).toEqual({ enforced: false, problem: `ValidatingAdmissionPolicyBinding ${bindingName} not found` });
  });

  it('is not enforced with a binding that only warns, under which the API server admits a forged approval', async () => {
    await kubectlOk(stack, ['apply', '--server-side', '-f', '-'], JSON.stringify(namespaceBinding(namespace, { name: bindingName, validationActions: ['Warn'] })));
    await expect.poll(() => check.current().problem, { timeout: 10_000 }).toBe(`ValidatingAdmissionPolicyBinding ${bindingName} validationActions [Warn] lacks Deny`);
    console.log('Warn only:', JSON.stringify(check.current()));
    const { name } = await createAttempt(namespace);
    const warning = `Warning: Validation failed for ValidatingAdmissionPolicy 'ai-operator-approvals' with binding '${bindingName}': bob is not an approver of this RollbackAttempt (spec.approvers)`;
    const approve = ['annotate', 'rollbackattempt', name, '-n', namespace, `${APPROVE}=bob`];
    // The new binding reaches admission a moment after it is written; a dry run shows when, and stores nothing.
    await expect.poll(async () => (await kubectl(stack, ['--as=bob', ...approve, '--dry-run=server'])).stderr, { timeout: 10_000, interval: 200 }).toContain(warning);
    // The policy still evaluates but only warns: bob's forged approval goes in.
    const result = await as('bob', [], approve);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(warning);
    expect(await approvalOf(namespace, name)).toBe('bob');
  });

  it('is enforced again, with a new since, when Deny is back; each change logged once', async () => {
    await kubectlOk(stack, ['apply', '--server-side', '-f', '-'], JSON.stringify(namespaceBinding(namespace, { name: bindingName })));
    await expect.poll(() => check.current().enforced, { timeout: 10_000 }).toBe(true);
    expect(logLines.map((l) => [l.level, l.message, l.problem ?? null])).toEqual([
      ['INFO', 'Confirmed approvals are enforced by the API server', null],
      ['WARN', 'Approvals are not enforced by the API server; no production approval will be recorded', `ValidatingAdmissionPolicyBinding ${bindingName} not found`],
      ['WARN', 'Approvals are not enforced by the API server; no production approval will be recorded', `ValidatingAdmissionPolicyBinding ${bindingName} validationActions [Warn] lacks Deny`],
      ['INFO', 'Confirmed approvals are enforced by the API server', null],
    ]);
  });
});
