// POST /reset/{correlationId} on the real operator (src/main.ts) and the real
// API server, with real ServiceAccount tokens from the TokenRequest API: the
// operator asks a TokenReview who the caller is and a SubjectAccessReview
// whether they may update the RollbackAttempt; only the leader acts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { attemptName } from '../../src/fsm/record.ts';
import type { ResetBody } from '../../src/server/reset.ts';
import { kubectlOk, repoRoot } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

/** POSTs a reset and prints the request and the answer (the closing note quotes them). */
async function postReset(port: number, correlationId: string, token: string | undefined, who: string): Promise<{ status: number; body: ResetBody }> {
  const res = await fetch(`http://127.0.0.1:${port}/reset/${correlationId}`, {
    method: 'POST', ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {}),
  });
  const body = await res.json() as ResetBody;
  console.log(`POST :${port}/reset/${correlationId} (${who}) -> ${res.status} ${JSON.stringify(body)}`);
  return { status: res.status, body };
}

describe('POST /reset/{correlationId}', () => {
  it('401 without or with a garbage token, 403 without RBAC, 404 unknown, 409 not aborted, 503 on a standby, 200: Abort -> Idle, PR closed, RESET names the ServiceAccount', async () => {
    const s = await givenRollbackScenario(stack, 'reset-endpoint', { environment: 'staging', startOperator: false }, stoppers);
    const leader = await s.startOperator();
    const ns = s.namespace;

    // Two ServiceAccounts: one may update RollbackAttempts in this namespace, the other has no role at all.
    await kubectlOk(stack, ['create', 'serviceaccount', 'resetter', '-n', ns]);
    await kubectlOk(stack, ['create', 'serviceaccount', 'bystander', '-n', ns]);
    await kubectlOk(stack, ['create', 'role', 'rollbackattempt-resetter', '-n', ns, '--verb=update', '--resource=rollbackattempts.ai-operator.io']);
    await kubectlOk(stack, ['create', 'rolebinding', 'rollbackattempt-resetter', '-n', ns, '--role=rollbackattempt-resetter', `--serviceaccount=${ns}:resetter`]);
    const resetter = (await kubectlOk(stack, ['create', 'token', 'resetter', '-n', ns])).trim();
    const bystander = (await kubectlOk(stack, ['create', 'token', 'bystander', '-n', ns])).trim();
    const resetterName = `system:serviceaccount:${ns}:resetter`;

    // A broken release: the rollback PR opens and waits for CI
    await s.release('v2', true);
    const pr = await s.firstPull();
    const open = await s.inState('PRCreated');
    const cid = open.correlationId;
    const name = attemptName(open.app, cid);
    await eventually('the operator serving HTTP', async () => (await fetch(`http://127.0.0.1:${leader.httpPort}/healthz`)).ok);

    // 409: the attempt is under way, not aborted
    const conflict = await postReset(leader.httpPort, cid, resetter, 'resetter, attempt in PRCreated');
    expect(conflict).toMatchObject({ status: 409, body: { correlationId: cid, result: 'not-aborted', state: 'PRCreated', user: resetterName, attempt: { namespace: ns, name } } });

    // CI fails on the PR: Abort (CIFailure), the PR left open for a human
    s.ci(pr.headSha, 'failure');
    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('CIFailure');

    // 401: no token; a token the API server does not know
    expect(await postReset(leader.httpPort, cid, undefined, 'no token')).toMatchObject({ status: 401, body: { result: 'unauthenticated' } });
    expect(await postReset(leader.httpPort, cid, 'garbage.not.a-token', 'garbage token')).toMatchObject({ status: 401, body: { result: 'unauthenticated' } });
    // 403: a real ServiceAccount without the role, told nothing of the attempt (reset-lookup.test.ts: the same for any id)
    const refused = await postReset(leader.httpPort, cid, bystander, 'bystander, no Role');
    expect(refused).toMatchObject({ status: 403, body: { result: 'forbidden', user: `system:serviceaccount:${ns}:bystander` } });
    expect(refused.body).not.toHaveProperty('attempt');
    // 404: an id no attempt has
    const unknown = crypto.randomUUID();
    expect(await postReset(leader.httpPort, unknown, resetter, 'resetter, unknown id')).toMatchObject({ status: 404, body: { correlationId: unknown, result: 'not-found' } });

    // 503: a standby (same etcd prefix, leader election on) names the leader and does nothing
    const standby = await s.startOperator({ AUDIT_FALLBACK_DIR: join(s.dir, 'audit-standby') });
    await eventually('the standby serving HTTP', async () => (await fetch(`http://127.0.0.1:${standby.httpPort}/healthz`)).ok, 60_000);
    expect(await postReset(standby.httpPort, cid, resetter, 'resetter, on the standby')).toMatchObject({
      status: 503, body: { result: 'not-leader', leader: 'reset-endpoint-1' },
    });
    // Nothing of the refused requests moved the attempt.
    expect((await s.attempts()).find((r) => r.correlationId === cid)).toMatchObject({ state: 'Abort', reason: 'CIFailure' });
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ number: pr.number, state: 'open' });

    // 200: the resetter on the leader; the attempt is Idle, its PR closed
    expect(await postReset(leader.httpPort, cid, resetter, 'resetter, on the leader')).toMatchObject({
      status: 200, body: { correlationId: cid, result: 'reset', state: 'Idle', user: resetterName, attempt: { namespace: ns, name } },
    });
    expect((await s.attempts()).find((r) => r.correlationId === cid)).toMatchObject({ state: 'Idle', reason: 'Reset' });
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ number: pr.number, state: 'closed', merged: false });
    const phase = await eventually('RollbackAttempt phase Idle', async () => {
      const got = (await kubectlOk(stack, ['get', 'rollbackattempt', name, '-n', ns, '-o', 'jsonpath={.status.phase}'])).trim();
      return got === 'Idle' ? got : undefined;
    });
    expect(phase).toBe('Idle');

    // The RESET audit record names the ServiceAccount and says it came through the endpoint
    const reset = await eventually('the RESET audit record', async () => (await readAuditDir(join(s.dir, 'audit'))).find((r) => r.correlationId === cid && r.actionType === 'RESET'));
    console.log(`RESET audit record: ${JSON.stringify({ actionType: reset.actionType, message: reset.message, reasoning: reset.reasoning, metadata: reset.metadata })}`);
    expect(reset.metadata).toMatchObject({ from: 'Abort', to: 'Idle', resetBy: resetterName, resetVia: `POST /reset/${cid}` });
    expect(reset.reasoning).toContain(resetterName);

    // The ClusterRole the operator's identity needs for this is one the API server takes.
    await kubectlOk(stack, ['apply', '--dry-run=server', '-f', join(repoRoot, 'config/rbac/operator-caller-auth.yaml')]);

    // A second reset: the attempt has ended
    expect(await postReset(leader.httpPort, cid, resetter, 'resetter, again')).toMatchObject({ status: 409, body: { result: 'not-aborted', state: 'Idle' } });
    // Every refusal is in the log with its reason, and no token ever is. The
    // operator's stdout reaches the file through a pipe, so the last line may
    // land a moment after its answer.
    const refusals = (): number => readFileSync(leader.log, 'utf8').match(/"message":"Refused reset request"/g)?.length ?? 0;
    await eventually('six refusals in the log', async () => refusals() >= 6 || undefined);
    expect(refusals()).toBe(6);
    const logText = readFileSync(leader.log, 'utf8');
    expect(logText).not.toContain(resetter);
    expect(logText).not.toContain(bystander);
  }, 180_000);
});
