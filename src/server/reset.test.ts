import { describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { AttemptObjectRef, AttemptsRef, Caller, CallerAuthPort } from '../ports/kubernetes.ts';
import { StoreUnavailable } from '../store/kv.ts';
import { bearerToken, resetHandler, type ResetOutcome, type ResetRequest } from './reset.ts';

const CID = '0b9f2c4e-8d1a-4c55-9a0e-3f1d2b7c6a10';
const ATTEMPT: AttemptObjectRef = { namespace: 'shop', name: 'cart-0b9f2c4e' };
const SRE: Caller = { username: 'system:serviceaccount:shop:sre', groups: ['system:serviceaccounts'] };
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.secret-part.signature';

class Harness {
  lines: string[] = [];
  asked: Array<{ caller: Caller; attempts: AttemptsRef }> = [];
  resets: Array<{ correlationId: string; request: ResetRequest }> = [];
  /** What RBAC allows: every question yes by default. */
  may: (attempts: AttemptsRef) => boolean = () => true;
  watched = ['shop', 'pay'];
  users = new Map<string, Caller>([[TOKEN, SRE]]);
  authError?: Error;
  outcome: (request: ResetRequest) => Promise<ResetOutcome> = async (request) =>
    (await request.mayReset(ATTEMPT)) ? { result: 'reset', attempt: ATTEMPT } : { result: 'forbidden', attempt: ATTEMPT };

  auth: CallerAuthPort = {
    authenticate: async (token) => { if (this.authError) throw this.authError; return this.users.get(token); },
    mayUpdate: async (caller, attempts) => { this.asked.push({ caller, attempts }); return this.may(attempts); },
  };

  handle = resetHandler({
    auth: this.auth, log: createLogger('DEBUG', {}, (line) => this.lines.push(line)), watched: async () => this.watched,
    reset: (correlationId, request) => { this.resets.push({ correlationId, request }); return this.outcome(request); },
  });

  post(authorization: string | undefined, id = CID) {
    return this.handle({ path: `/reset/${id}`, authorization });
  }

  logged(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

describe('bearerToken', () => {
  it('reads the token of a Bearer header, the scheme in any case', () => {
    expect(bearerToken(`Bearer ${TOKEN}`)).toBe(TOKEN);
    expect(bearerToken(`bearer   ${TOKEN} `)).toBe(TOKEN);
    expect(bearerToken(undefined)).toBeUndefined();
    expect(bearerToken('')).toBeUndefined();
    expect(bearerToken('Bearer')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
    expect(bearerToken(`Basic ${TOKEN}`)).toBeUndefined();
    expect(bearerToken(`Bearer a b`)).toBeUndefined();
  });
});

describe('POST /reset/{correlationId}', () => {
  it('401 without a token, with a challenge, and asks nobody', async () => {
    const h = new Harness();
    const answer = await h.post(undefined);
    expect(answer).toMatchObject({ status: 401, headers: { 'www-authenticate': expect.stringMatching(/^Bearer/) }, body: { correlationId: CID, result: 'unauthenticated' } });
    expect(answer.body.message).toMatch(/bearer token is required/);
    expect(await h.post('Basic dXNlcjpwYXNz')).toMatchObject({ status: 401 });
    expect(h.resets).toEqual([]);
    expect(h.logged()).toEqual([expect.objectContaining({ level: 'WARN', message: 'Refused reset request', status: 401, reason: expect.stringMatching(/bearer token is required/) }), expect.anything()]);
  });

  it('401 when the API server does not vouch for the token (garbage, or anonymous), and never logs the token', async () => {
    const h = new Harness();
    const answer = await h.post('Bearer not-a-token');
    expect(answer).toMatchObject({ status: 401, body: { result: 'unauthenticated', message: expect.stringMatching(/did not authenticate/) } });
    expect(answer.body).not.toHaveProperty('user');
    expect(h.resets).toEqual([]);
    h.may = () => false;
    await h.post(`Bearer ${TOKEN}`);
    expect(h.lines.join('\n')).not.toContain('not-a-token');
    expect(h.lines.join('\n')).not.toContain('secret-part');
  });

  it('403 before anything of the id is looked at when the caller may update RollbackAttempts nowhere the operator watches: one answer for every id', async () => {
    const h = new Harness();
    h.may = () => false;
    const answers = [];
    for (const id of [CID, crypto.randomUUID(), 'not-a-uuid']) answers.push(await h.post(`Bearer ${TOKEN}`, id));
    const message = `${SRE.username} may not update rollbackattempts.ai-operator.io in any namespace this operator watches`;
    expect(answers.map((a) => [a.status, Object.keys(a.body).sort(), a.body.result, a.body.message])).toEqual(
      Array(3).fill([403, ['correlationId', 'message', 'result', 'user'], 'forbidden', message]));
    expect(h.resets).toEqual([]);
    // Cluster-wide first, then each watched namespace, namespace-wide (no name: nothing of an attempt).
    expect(h.asked.slice(0, 3)).toEqual([{ caller: SRE, attempts: {} }, { caller: SRE, attempts: { namespace: 'pay' } }, { caller: SRE, attempts: { namespace: 'shop' } }]);
  });

  it('hands the operator the namespaces the caller may update in; cluster-wide rights are every namespace, asked once', async () => {
    const h = new Harness();
    h.may = (a) => a.namespace === 'shop';
    h.outcome = async () => ({ result: 'not-found' });
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 404, body: { result: 'not-found', message: `no rollback attempt has the correlationId ${CID} in a namespace where ${SRE.username} may update rollbackattempts.ai-operator.io (shop)` } });
    expect(h.resets[0]!.request.namespaces).toEqual(['shop']);
    h.may = () => true;
    h.asked = [];
    await h.post(`Bearer ${TOKEN}`);
    expect(h.resets[1]!.request.namespaces).toBe('all');
    expect(h.asked).toEqual([{ caller: SRE, attempts: {} }]);
  });

  it('403 when the caller may not update the attempt itself: asked as that caller, of that attempt', async () => {
    const h = new Harness();
    h.may = (a) => a.name === undefined;
    const answer = await h.post(`Bearer ${TOKEN}`);
    expect(answer).toMatchObject({ status: 403, body: { correlationId: CID, result: 'forbidden', user: SRE.username, attempt: ATTEMPT } });
    expect(answer.body.message).toBe(`${SRE.username} may not update rollbackattempts.ai-operator.io cart-0b9f2c4e in namespace shop`);
    expect(h.asked).toEqual([{ caller: SRE, attempts: {} }, { caller: SRE, attempts: ATTEMPT }]);
    expect(h.logged().at(-1)).toMatchObject({ level: 'WARN', status: 403, result: 'forbidden', user: SRE.username, attempt: 'shop/cart-0b9f2c4e' });
  });

  it('404 for an unknown id, and for one that is not a UUID (without asking the operator)', async () => {
    const h = new Harness();
    h.outcome = async () => ({ result: 'not-found' });
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 404, body: { result: 'not-found', message: `no rollback attempt has the correlationId ${CID}` } });
    expect(await h.post(`Bearer ${TOKEN}`, '..%2Fleader')).toMatchObject({ status: 404, body: { result: 'not-found', message: expect.stringMatching(/correlationIds are UUIDs/) } });
    expect(h.resets).toHaveLength(1);
  });

  it('409 for an attempt that is not in Abort, naming its state', async () => {
    const h = new Harness();
    h.outcome = async () => ({ result: 'not-aborted', attempt: ATTEMPT, state: 'PRCreated' });
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 409, body: { result: 'not-aborted', state: 'PRCreated', message: expect.stringMatching(/in PRCreated, not Abort/) } });
  });

  it('200 once the attempt is Idle, naming the caller; 202 while it is under way', async () => {
    const h = new Harness();
    const answer = await h.post(`Bearer ${TOKEN}`);
    expect(answer).toEqual({ status: 200, body: { correlationId: CID, result: 'reset', message: `reset by ${SRE.username}: Abort -> Idle`, user: SRE.username, attempt: ATTEMPT, state: 'Idle' } });
    expect(h.resets.map((r) => [r.correlationId, r.request.caller])).toEqual([[CID, SRE]]);
    expect(h.logged().at(-1)).toMatchObject({ level: 'INFO', message: 'Reset request carried out', status: 200, user: SRE.username });
    h.outcome = async () => ({ result: 'accepted', attempt: ATTEMPT });
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 202, body: { result: 'accepted', message: expect.stringMatching(/under way/) } });
  });

  it('503 from a standby, naming the leader (null when none is elected)', async () => {
    const h = new Harness();
    h.outcome = async () => ({ result: 'not-leader', leader: 'ai-operator-7f9c-0' });
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 503, headers: { 'retry-after': '5' }, body: { result: 'not-leader', leader: 'ai-operator-7f9c-0', message: 'this replica is a standby: the leader is ai-operator-7f9c-0' } });
    h.outcome = async () => ({ result: 'not-leader', leader: undefined });
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 503, body: { result: 'not-leader', leader: null } });
    // Even a standby answers nobody who is not authenticated.
    expect(await h.post('Bearer garbage')).toMatchObject({ status: 401 });
  });

  it('503 when the API server or etcd cannot answer; 500 on anything else', async () => {
    const h = new Harness();
    h.authError = new IntegrationError('createTokenReview', 'UNAVAILABLE', 'connect ECONNREFUSED');
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 503, body: { result: 'unavailable', message: expect.stringMatching(/ECONNREFUSED/) } });
    h.authError = undefined;
    h.outcome = async () => { throw new StoreUnavailable('deadline exceeded'); };
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 503, body: { result: 'unavailable' } });
    h.outcome = async () => { throw new TypeError('boom'); };
    expect(await h.post(`Bearer ${TOKEN}`)).toMatchObject({ status: 500, body: { result: 'error' } });
  });
});
