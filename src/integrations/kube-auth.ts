// Who calls the operator's HTTP endpoints, asked of the API server (SPEC §11):
// a TokenReview says whose bearer token it is, a SubjectAccessReview whether
// that user may update a RollbackAttempt. The cluster's RBAC decides, so the
// operator keeps no list of its own and needs only `create` on tokenreviews and
// subjectaccessreviews.
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig, type V1SubjectAccessReview, type V1TokenReview } from '@kubernetes/client-node';
import { GROUP, PLURALS } from '../api/group.ts';
import type { AttemptsRef, Caller, CallerAuthPort } from '../ports/kubernetes.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';

export interface KubeCallerAuthOptions {
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
}

export const ANONYMOUS_USER = 'system:anonymous';
export const UNAUTHENTICATED_GROUP = 'system:unauthenticated';

/**
 * The caller a TokenReview names, or undefined. An API server that allows
 * anonymous requests can answer "authenticated" for system:anonymous; that is
 * still nobody, whatever RBAC grants it.
 */
export function callerFromTokenReview(review: V1TokenReview): Caller | undefined {
  const status = review.status;
  const user = status?.user;
  if (!status?.authenticated || !user?.username) return undefined;
  const groups = user.groups ?? [];
  if (user.username === ANONYMOUS_USER || groups.includes(UNAUTHENTICATED_GROUP)) return undefined;
  return {
    username: user.username,
    groups,
    ...(user.uid ? { uid: user.uid } : {}),
    ...(user.extra && Object.keys(user.extra).length > 0 ? { extra: user.extra } : {}),
  };
}

/**
 * The question "may this caller update that RollbackAttempt?", as the API server
 * takes it; without a name, any RollbackAttempt of the namespace; without a
 * namespace, in every namespace.
 */
export function updateAttemptReview(caller: Caller, attempts: AttemptsRef): V1SubjectAccessReview {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: caller.username,
      groups: caller.groups,
      ...(caller.uid ? { uid: caller.uid } : {}),
      ...(caller.extra ? { extra: caller.extra } : {}),
      resourceAttributes: {
        group: GROUP, resource: PLURALS.attempt, verb: 'update',
        ...(attempts.namespace !== undefined ? { namespace: attempts.namespace } : {}),
        ...(attempts.name !== undefined ? { name: attempts.name } : {}),
      },
    },
  };
}

/** Allowed only on an explicit yes that no authorizer vetoed. */
export function reviewAllows(review: V1SubjectAccessReview): boolean {
  return review.status?.allowed === true && review.status.denied !== true;
}

export class KubeCallerAuth implements CallerAuthPort {
  private readonly authn: AuthenticationV1Api;
  private readonly authz: AuthorizationV1Api;
  private readonly options: KubeCallerAuthOptions;

  constructor(kubeConfig: KubeConfig, options: KubeCallerAuthOptions = {}) {
    this.authn = kubeConfig.makeApiClient(AuthenticationV1Api);
    this.authz = kubeConfig.makeApiClient(AuthorizationV1Api);
    this.options = options;
  }

  async authenticate(token: string): Promise<Caller | undefined> {
    // No audiences: the API server's own, which is what `kubectl create token` issues for.
    const review = await this.call('createTokenReview', () => this.authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } }));
    return callerFromTokenReview(review);
  }

  async mayUpdate(caller: Caller, attempts: AttemptsRef): Promise<boolean> {
    const review = await this.call('createSubjectAccessReview', () => this.authz.createSubjectAccessReview({ body: updateAttemptReview(caller, attempts) }));
    return reviewAllows(review);
  }

  // A caller is waiting on the other end: short timeout, short retries.
  private call<T>(name: string, run: () => Promise<T>): Promise<T> {
    return call(name, run, {
      classify: classifyHttpError, metrics: this.options.metrics,
      timeoutMs: this.options.timeoutMs ?? 5000, backoffMs: this.options.backoffMs ?? [250, 500],
    });
  }
}
