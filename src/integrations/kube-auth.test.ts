import type { V1SubjectAccessReview, V1TokenReview } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { callerFromTokenReview, reviewAllows, updateAttemptReview } from './kube-auth.ts';

// What the API server answers; fields it leaves out are absent, as on the wire.
const review = (status: object) => ({ spec: { token: 't' }, status }) as V1TokenReview;

describe('callerFromTokenReview', () => {
  it('names the user, groups, uid and extra of an authenticated token', () => {
    expect(callerFromTokenReview(review({
      authenticated: true,
      user: { username: 'system:serviceaccount:shop:sre', uid: 'u-1', groups: ['system:serviceaccounts', 'system:authenticated'], extra: { 'authentication.kubernetes.io/pod-name': ['p'] } },
    }))).toEqual({
      username: 'system:serviceaccount:shop:sre', uid: 'u-1', groups: ['system:serviceaccounts', 'system:authenticated'], extra: { 'authentication.kubernetes.io/pod-name': ['p'] },
    });
    expect(callerFromTokenReview(review({ authenticated: true, user: { username: 'alice' } }))).toEqual({ username: 'alice', groups: [] });
  });

  it('is nobody when the API server does not authenticate the token', () => {
    expect(callerFromTokenReview(review({ authenticated: false, error: 'invalid bearer token' }))).toBeUndefined();
    expect(callerFromTokenReview(review({}))).toBeUndefined();
    expect(callerFromTokenReview({ spec: { token: 't' } })).toBeUndefined();
    expect(callerFromTokenReview(review({ authenticated: true, user: {} }))).toBeUndefined();
  });

  it('is nobody for the anonymous user, even "authenticated" (an API server with anonymous auth on)', () => {
    expect(callerFromTokenReview(review({ authenticated: true, user: { username: 'system:anonymous', groups: ['system:unauthenticated'] } }))).toBeUndefined();
    expect(callerFromTokenReview(review({ authenticated: true, user: { username: 'system:anonymous' } }))).toBeUndefined();
    expect(callerFromTokenReview(review({ authenticated: true, user: { username: 'someone', groups: ['system:unauthenticated'] } }))).toBeUndefined();
  });
});

describe('updateAttemptReview', () => {
  it('asks for update on that RollbackAttempt, as that user with their groups', () => {
    expect(updateAttemptReview({ username: 'bob', groups: ['sre'], uid: 'u-2', extra: { scopes: ['a'] } }, { namespace: 'shop', name: 'cart-1a2b3c4d' })).toEqual({
      apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview',
      spec: {
        user: 'bob', groups: ['sre'], uid: 'u-2', extra: { scopes: ['a'] },
        resourceAttributes: { group: 'ai-operator.io', resource: 'rollbackattempts', verb: 'update', namespace: 'shop', name: 'cart-1a2b3c4d' },
      },
    });
    expect(updateAttemptReview({ username: 'bob', groups: [] }, { namespace: 'shop', name: 'x' }).spec).not.toHaveProperty('uid');
  });

  it('asks namespace-wide without a name, cluster-wide without a namespace (no empty fields)', () => {
    const attributes = (ref: { namespace?: string; name?: string }) => updateAttemptReview({ username: 'bob', groups: [] }, ref).spec.resourceAttributes;
    expect(attributes({ namespace: 'shop' })).toEqual({ group: 'ai-operator.io', resource: 'rollbackattempts', verb: 'update', namespace: 'shop' });
    expect(attributes({})).toEqual({ group: 'ai-operator.io', resource: 'rollbackattempts', verb: 'update' });
  });
});

describe('reviewAllows', () => {
  it('is yes only on allowed, and never when an authorizer denied', () => {
    const sar = (status?: object) => ({ spec: {}, ...(status ? { status } : {}) }) as V1SubjectAccessReview;
    expect(reviewAllows(sar({ allowed: true }))).toBe(true);
    expect(reviewAllows(sar({ allowed: false }))).toBe(false);
    expect(reviewAllows(sar({ allowed: true, denied: true }))).toBe(false);
    expect(reviewAllows(sar({ allowed: false, denied: true }))).toBe(false);
    expect(reviewAllows(sar())).toBe(false);
  });
});
