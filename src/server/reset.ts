// POST /reset/{correlationId} (SPEC §11, the seed's runbook §7.1): Abort → Idle
// for a caller the API server vouches for. The order of the checks is the
// contract: who are you (401; never anonymous); may you update RollbackAttempts
// anywhere this operator keeps them (403) — asked before anything that depends
// on the id is read, so a caller who may not gets one answer whatever the id,
// and costs the leader no read; is this the leader (503, naming it); is there
// such an attempt in a namespace where you may (404); may you update that one
// (403); is it aborted (409). The reset itself is the annotation's path through
// the reconciler.
import { GROUP, PLURALS } from '../api/group.ts';
import type { Logger } from '../observability/log.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { AttemptObjectRef, Caller, CallerAuthPort } from '../ports/kubernetes.ts';
import { StoreUnavailable } from '../store/kv.ts';

/** What the operator did with a reset request (Operator.reset). */
export type ResetOutcome =
  /** The attempt went Abort → Idle; its PR, if open, was closed first. */
  | { result: 'reset'; attempt: AttemptObjectRef }
  /** Recorded and under way (closing the PR took longer than the wait); the attempt shows when it is Idle. */
  | { result: 'accepted'; attempt: AttemptObjectRef }
  | { result: 'not-found' }
  | { result: 'forbidden'; attempt: AttemptObjectRef }
  | { result: 'not-aborted'; attempt: AttemptObjectRef; state: string }
  /** A standby: the leader key's value in etcd, undefined when nobody leads right now. */
  | { result: 'not-leader'; leader: string | undefined };

export interface ResetRequest {
  caller: Caller;
  /**
   * Where the caller may update RollbackAttempts, asked before the request
   * reached the operator: every namespace, or these (never empty). An attempt
   * elsewhere is answered as one that does not exist.
   */
  namespaces: 'all' | readonly string[];
  /** Asked once the attempt is found, before its state is looked at. */
  mayReset: (attempt: AttemptObjectRef) => Promise<boolean>;
}

export type ResetService = (correlationId: string, request: ResetRequest) => Promise<ResetOutcome>;

export interface ResetBody {
  correlationId: string;
  result: ResetOutcome['result'] | 'unauthenticated' | 'unavailable' | 'error';
  message: string;
  user?: string;
  attempt?: AttemptObjectRef;
  state?: string;
  leader?: string | null;
}

export interface ResetAnswer {
  status: number;
  body: ResetBody;
  headers?: Record<string, string>;
}

export interface HttpResetRequest {
  /** The request path, without the query. */
  path: string;
  /** The Authorization header as received. */
  authorization: string | undefined;
}

export type ResetHandler = (request: HttpResetRequest) => Promise<ResetAnswer>;

export const RESET_PATH_PREFIX = '/reset/';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The token of an `Authorization: Bearer <token>` header (RFC 6750: the scheme is case-insensitive). */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

/**
 * Where the caller may update RollbackAttempts, asked of the API server before
 * any lookup: every namespace (one cluster-wide SubjectAccessReview), else
 * those of `watched` where a namespace-wide review allows it; empty when
 * nowhere. Needs no etcd read and nothing of the id.
 */
export async function resetScope(auth: CallerAuthPort, caller: Caller, watched: () => Promise<readonly string[]>): Promise<'all' | string[]> {
  if (await auth.mayUpdate(caller, {})) return 'all';
  const namespaces = [...new Set(await watched())].sort();
  const allowed = await Promise.all(namespaces.map(async (namespace) => ((await auth.mayUpdate(caller, { namespace })) ? namespace : undefined)));
  return allowed.filter((namespace): namespace is string => namespace !== undefined);
}

const STATUS: Record<ResetBody['result'], number> = {
  reset: 200, accepted: 202, unauthenticated: 401, forbidden: 403, 'not-found': 404, 'not-aborted': 409, 'not-leader': 503, unavailable: 503, error: 500,
};

export interface ResetHandlerDeps {
  auth: CallerAuthPort;
  reset: ResetService;
  log: Logger;
  /**
   * The namespaces whose RollbackAttempts this installation keeps, for a caller
   * without the right cluster-wide: WATCH_NAMESPACES, or (watching every
   * namespace) those of the Applications it watches and Argo CD's.
   */
  watched: () => Promise<readonly string[]>;
}

export function resetHandler(deps: ResetHandlerDeps): ResetHandler {
  const log = deps.log;
  return async ({ path, authorization }) => {
    const correlationId = path.startsWith(RESET_PATH_PREFIX) ? path.slice(RESET_PATH_PREFIX.length) : path;
    let user: string | undefined;
    const answer = (result: ResetBody['result'], message: string, extra: Partial<ResetBody> = {}): ResetAnswer => {
      const status = STATUS[result];
      const body: ResetBody = { correlationId, result, message, ...(user ? { user } : {}), ...extra };
      // Every refusal is logged with its reason; the token never is.
      const fields = { correlationId, status, result, user, reason: message, ...(extra.attempt ? { attempt: `${extra.attempt.namespace}/${extra.attempt.name}` } : {}) };
      if (status >= 400) log.warn('Refused reset request', fields);
      else log.info('Reset request carried out', fields);
      return {
        status, body,
        ...(result === 'unauthenticated' ? { headers: { 'www-authenticate': 'Bearer realm="ai-operator"' } } : {}),
        ...(result === 'not-leader' || result === 'unavailable' ? { headers: { 'retry-after': '5' } } : {}),
      };
    };
    try {
      const token = bearerToken(authorization);
      if (!token) return answer('unauthenticated', 'a Kubernetes bearer token is required: Authorization: Bearer <token>');
      const caller = await deps.auth.authenticate(token);
      if (!caller) return answer('unauthenticated', 'the API server did not authenticate this token (anonymous callers are never served)');
      user = caller.username;
      // Nothing of the id is looked at before this: the same answer for every id.
      const namespaces = await resetScope(deps.auth, caller, deps.watched);
      if (namespaces !== 'all' && namespaces.length === 0) {
        return answer('forbidden', `${caller.username} may not update ${PLURALS.attempt}.${GROUP} in any namespace this operator watches`);
      }
      if (!UUID.test(correlationId)) return answer('not-found', `no rollback attempt has the correlationId ${JSON.stringify(correlationId)}: correlationIds are UUIDs`);
      const outcome = await deps.reset(correlationId, { caller, namespaces, mayReset: (attempt) => deps.auth.mayUpdate(caller, attempt) });
      switch (outcome.result) {
        case 'reset':
          return answer('reset', `reset by ${caller.username}: Abort -> Idle`, { attempt: outcome.attempt, state: 'Idle' });
        case 'accepted':
          return answer('accepted', `reset by ${caller.username} recorded and under way (closing the attempt's pull request first); kubectl get rollbackattempt ${outcome.attempt.name} -n ${outcome.attempt.namespace} shows Idle when done`, { attempt: outcome.attempt });
        case 'not-found':
          return answer('not-found', namespaces === 'all'
            ? `no rollback attempt has the correlationId ${correlationId}`
            : `no rollback attempt has the correlationId ${correlationId} in a namespace where ${caller.username} may update ${PLURALS.attempt}.${GROUP} (${namespaces.join(', ')})`);
        case 'forbidden':
          return answer('forbidden', `${caller.username} may not update ${PLURALS.attempt}.${GROUP} ${outcome.attempt.name} in namespace ${outcome.attempt.namespace}`, { attempt: outcome.attempt });
        case 'not-aborted':
          return answer('not-aborted', `the attempt is in ${outcome.state}, not Abort: only an aborted attempt can be reset`, { attempt: outcome.attempt, state: outcome.state });
        case 'not-leader':
          return answer('not-leader', outcome.leader ? `this replica is a standby: the leader is ${outcome.leader}` : 'this replica is a standby and no leader is elected right now: retry shortly', { leader: outcome.leader ?? null });
      }
    } catch (error) {
      // The API server or etcd could not answer: nothing was decided, the caller may retry.
      if (error instanceof IntegrationError || error instanceof StoreUnavailable) return answer('unavailable', `could not check the request: ${error.message}`);
      return answer('error', `unexpected error: ${(error as Error).message}`);
    }
  };
}
