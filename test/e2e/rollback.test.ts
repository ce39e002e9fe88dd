// The whole job on the real stack with the GitHub and Argo CD simulators and the
// real operator process (src/main.ts): a bad commit degrades an app and the
// operator rolls it back in Git. The etcd record, the RollbackAttempt status, the
// JetStream events and the audit records must all tell the same story.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { verifyChain } from '../../src/audit/record.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { kubectl, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { APP_PATH, givenRollbackScenario, REPO, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

describe('a degraded staging app is rolled back in Git', () => {
  it('restores exactly the app path, merges, recovers, and every record agrees', async () => {
    const s = await given('rollback', { environment: 'staging' });

    // When a bad commit lands (adding a file the rollback must delete, and changing another app it must not touch)
    await s.release('v2', true, { [`${APP_PATH}/extra.yaml`]: 'added: in v2\n', 'apps/other/config.yaml': 'keep: changed\n' });

    // Then a rollback PR is opened; CI goes green; the operator merges; health comes back
    const pr = await s.firstPull();
    expect(pr.title).toBe(`Rollback cart (staging) to ${s.good.slice(0, 7)}`);
    // Against the good revision, the PR head differs only outside the app's path: the app is restored
    // (changed file back, added file gone) and the other app keeps its newer config.
    const diff = execFileSync('git', ['--git-dir', join(s.github.root, 'acme', 'gitops.git'), 'diff', '--name-status', s.good, pr.headSha], { encoding: 'utf8' });
    expect(diff).toBe('M\tapps/other/config.yaml\n');
    s.ci(pr.headSha, 'success');

    const record = await s.inState('RollbackComplete', 90_000);
    expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(record.candidate).toMatchObject({ revision: s.good, mode: 'ci-only' });
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ merged: true, mergedBy: 'ai-operator-bot' });

    // The RollbackAttempt status is the etcd record
    await eventually('status projected', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items[0]?.status?.phase === 'RollbackComplete');
    const status = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])) as { items: Array<{ spec: { correlationId: string }; status: { transitions: unknown[]; pullRequest: { number: number }; candidate: { revision: string } } }> };
    expect(status.items).toHaveLength(1);
    expect(status.items[0]!.spec.correlationId).toBe(record.correlationId);
    expect(status.items[0]!.status).toMatchObject({ pullRequest: { number: record.pullRequest!.number }, candidate: { revision: s.good } });
    expect(status.items[0]!.status.transitions).toHaveLength(record.transitions.length);

    // JetStream holds one fsm.transition per transition of this attempt, each id once
    const nc = await connect({ servers: stack.nats });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(s.stream);
    const events: CloudEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(s.stream, { seq }).catch(() => undefined);
      const event = message?.json<CloudEvent>();
      if (event?.correlationid === record.correlationId) events.push(event);
    }
    await nc.close();
    expect(events.filter((e) => e.type === 'io.ai-operator.fsm.transition')).toHaveLength(record.transitions.length);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

    // The audit trail has the transitions and the merge, in an unbroken hash chain
    const audit = await readAuditDir(join(s.dir, 'audit'));
    expect(verifyChain(audit).ok).toBe(true);
    const mine = audit.filter((a) => a.correlationId === record.correlationId);
    expect(mine.filter((a) => a.actionType === 'FSM_TRANSITION')).toHaveLength(record.transitions.length);
    expect(mine.find((a) => a.actionType === 'PR_MERGED')?.invariantsChecked).toEqual(Object.fromEntries(record.invariants.map((i) => [i.id, 'PASS'])));

    // And GitHub never answered outside its OpenAPI description
    expect(s.github.violations()).toEqual([]);
  }, 180_000);
});

describe('a degraded production app', () => {
  const policy = (namespace: string) => JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace },
    spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 3, merge: { approvers: { users: ['alice@example.com'], groups: ['sre'] } } } });
  const attemptName = (correlationId: string) => `cart-${correlationId.replace(/-/g, '').slice(0, 8)}`;
  /**
   * A production app under a policy naming alice and the group sre as approvers, degraded by a bad release;
   * its rollback PR is CI-green. The shipped approval admission policy is bound to this namespace, unless
   * `enforced` is false, and alice, mallory and the sre group may patch RollbackAttempts here.
   */
  async function givenGreenProductionPr(name: string, approvalTimeoutSeconds: number, enforced = true) {
    const s = await given(name, { environment: 'production', startOperator: false, env: { MERGE_APPROVAL_TIMEOUT: String(approvalTimeoutSeconds) } });
    const { bindingName } = enforced ? await installApprovalPolicy(stack, s.namespace) : { bindingName: `ai-operator-approvals-${s.namespace}` };
    for (const user of ['alice@example.com', 'mallory']) await grantPatch(stack, s.namespace, user);
    await grantPatch(stack, s.namespace, 'sre', 'Group');
    await kubectlOk(stack, ['apply', '-f', '-'], policy(s.namespace));
    await s.startOperator({ APPROVAL_POLICY_BINDING_NAME: bindingName });
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    return { s, pr };
  }
  /** `kubectl annotate` as that user (the admin kubeconfig impersonates). */
  const approveAs = (s: { namespace: string }, name: string, user: string, groups: string[] = []) =>
    kubectl(stack, ['annotate', '--overwrite', `--as=${user}`, ...groups.map((g) => `--as-group=${g}`), 'rollbackattempt', name, '-n', s.namespace, `ai-operator.io/approve=${user}`]);

  it('waits for an authorized approval (a forged one is refused by the API server), then merges and recovers', async () => {
    const { s, pr } = await givenGreenProductionPr('production', 600);

    const waiting = await s.inState('AwaitingMergeApproval');
    // The approval request is on the PR; nothing merges without an approval.
    await eventually('approval comment', async () => s.github.control.comments({ ...REPO, number: pr.number }).some((c) => c.body.includes('ai-operator.io/approve=<your-username>')));
    await new Promise((r) => setTimeout(r, 3000));
    expect(s.github.control.pulls(REPO)[0]!.merged).toBe(false);

    // Mallory may patch the attempt but is no approver: the API server refuses, naming the rule — in her name or alice's.
    const name = attemptName(waiting.correlationId);
    const mallory = await approveAs(s, name, 'mallory');
    expect(mallory.code).not.toBe(0);
    expect(mallory.stderr).toContain('mallory is not an approver of this RollbackAttempt (spec.approvers)');
    const forged = await kubectl(stack, ['annotate', '--as=mallory', 'rollbackattempt', name, '-n', s.namespace, 'ai-operator.io/approve=alice@example.com']);
    expect(forged.stderr).toContain('ai-operator.io/approve must name the requesting user: mallory may not approve as alice@example.com');
    await new Promise((r) => setTimeout(r, 2000));
    expect(s.github.control.pulls(REPO)[0]!.merged).toBe(false);

    expect((await approveAs(s, name, 'alice@example.com')).code).toBe(0);
    const done = await s.inState('RollbackComplete');
    expect(done).toMatchObject({ approval: { approvedBy: 'alice@example.com' }, candidate: { revision: s.good } });
    expect(done.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ merged: true, mergedBy: 'ai-operator-bot' });
    expect(s.github.violations()).toEqual([]);
  }, 180_000);

  it('lets a member of an approver group approve: the API server admits it, the operator merges', async () => {
    const { s } = await givenGreenProductionPr('production-group', 600);
    const waiting = await s.inState('AwaitingMergeApproval');
    // carol is listed nowhere by name; she is in the group sre
    expect((await approveAs(s, attemptName(waiting.correlationId), 'carol', ['sre'])).code).toBe(0);
    const done = await s.inState('RollbackComplete');
    expect(done.approval?.approvedBy).toBe('carol');
    const audit = await readAuditDir(join(s.dir, 'audit'));
    expect(audit.find((a) => a.actionType === 'APPROVAL' && a.correlationId === waiting.correlationId && a.level === 'INFO')?.message)
      .toBe('carol was admitted by the API server as a member of an approver group (sre)');
  }, 180_000);

  it('with the binding absent, records no approval and never merges, and says why on the attempt and the PR', async () => {
    const { s, pr } = await givenGreenProductionPr('production-unenforced', 600, false);
    const waiting = await s.inState('AwaitingMergeApproval');
    const name = attemptName(waiting.correlationId);
    // The attempt says why, as a condition, and the PR says it once
    const approved = await eventually('Approved condition', async () => {
      const object = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', s.namespace, '-o', 'json'])) as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
      return object.status?.conditions?.find((c) => c.type === 'Approved');
    });
    expect(approved).toMatchObject({ status: 'False', reason: 'ApprovalNotEnforced' });
    expect(approved.message).toContain(`ValidatingAdmissionPolicyBinding ai-operator-approvals-${s.namespace} not found`);
    const comments = () => s.github.control.comments({ ...REPO, number: pr.number }).map((c) => c.body);
    await eventually('PR comment', async () => comments().some((c) => c.includes('cannot be approved right now')));
    expect(comments().some((c) => c.includes('waits for an authorized approver'))).toBe(false);

    // Nothing stops alice's annotation now — and the operator neither counts it nor keeps it
    expect((await approveAs(s, name, 'alice@example.com')).code).toBe(0);
    await eventually('the unchecked approval removed', async () => {
      const object = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', s.namespace, '-o', 'json'])) as { metadata: { annotations?: Record<string, string> } };
      return object.metadata.annotations?.['ai-operator.io/approve'] === undefined;
    });
    await new Promise((r) => setTimeout(r, 3000));
    expect(s.github.control.pulls(REPO)[0]!.merged).toBe(false);
    const record = (await s.attempts())[0]!;
    expect(record.state).toBe('AwaitingMergeApproval');
    expect(record.approval).toBeUndefined();
    const refusals = (await readAuditDir(join(s.dir, 'audit'))).filter((a) => a.actionType === 'APPROVAL' && a.correlationId === waiting.correlationId && a.level === 'WARN');
    // Said once, however many reconciles saw it: in the audit trail and as an Event
    expect(refusals.filter((a) => a.message.startsWith('approval by alice@example.com refused'))).toHaveLength(1);
    expect(refusals.map((a) => a.message)).toContain('approval by alice@example.com refused: the API server does not enforce who may approve ' +
      `(ValidatingAdmissionPolicyBinding ai-operator-approvals-${s.namespace} not found): no approval is recorded until it does`);
    const events = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', s.namespace, '-o', 'json'])).items as Array<{ reason: string; regarding: { kind: string } }>;
    expect(events.filter((e) => e.reason === 'ApprovalRemoved' && e.regarding.kind === 'RollbackAttempt')).toHaveLength(1);
  }, 180_000);

  it('without an approval, aborts with ApprovalTimeout and leaves the PR open with a comment', async () => {
    const { s, pr } = await givenGreenProductionPr('approval-timeout', 4);

    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('ApprovalTimeout');
    expect(aborted.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'Abort']);
    const comment = await eventually('abort comment', async () => s.github.control.comments({ ...REPO, number: pr.number }).find((c) => c.body.includes('ApprovalTimeout')));
    expect(comment.body).toContain('left open for a human to decide');
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ state: 'open', merged: false });
    // It stays that way: an aborted attempt waits for a human, it does not retry on its own.
    await new Promise((r) => setTimeout(r, 3000));
    expect(s.github.control.pulls(REPO)).toHaveLength(1);
    expect((await s.attempts()).map((r) => r.state)).toEqual(['Abort']);
    expect(s.github.violations()).toEqual([]);
  }, 120_000);
});

describe('an operator that dies between opening the PR and writing its status', () => {
  it('adopts the same PR on restart and never opens a second', async () => {
    const s = await given('crash-adopt', { environment: 'staging', startOperator: false });
    // The PR is created, but its answer is held back: the operator is killed while it waits.
    s.github.control.fail({ route: 'POST /repos/{owner}/{repo}/pulls', afterEffect: true, latencyMs: 20_000, status: 502 });
    const first = await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull();
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await exited;
    const [before] = await s.attempts();
    expect(before!.state).toBe('CandidateResolved');

    // A new operator takes over once the dead one's lease lapses
    await s.startOperator();
    const adopted = await s.inState('PRCreated', 60_000);
    expect(adopted.transitions.at(-1)?.reason).toBe('PullRequestAdopted');
    expect(adopted.pullRequest?.number).toBe(pr.number);
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 90_000);
    expect(done.pullRequest?.number).toBe(pr.number);
    expect(s.github.control.pulls(REPO)).toHaveLength(1);
    expect(s.github.control.counters()['POST /repos/{owner}/{repo}/pulls']).toBe(1);
    expect(s.github.violations()).toEqual([]);
  }, 180_000);
});
