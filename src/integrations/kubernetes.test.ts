import { describe, expect, it } from 'vitest';
import type { V1Deployment } from '@kubernetes/client-node';
import type { ApplicationView } from '../ports/argocd.ts';
import { managedBy, namespacesOf, parseTrackingId, podSummary, replicasOf, selectorString, trackingName } from './kubernetes.ts';

const app = (resources: ApplicationView['resources'], destinationNamespace?: string): ApplicationView =>
  ({ ref: { namespace: 'argocd', name: 'a' }, labels: {}, history: [], resources, ...(destinationNamespace ? { destinationNamespace } : {}) });

const deployment = (namespace: string, name: string, metadata: { annotations?: Record<string, string>; labels?: Record<string, string> }): V1Deployment =>
  ({ metadata: { namespace, name, ...metadata }, spec: { selector: {}, template: {} } });

describe('which Deployments are the app\'s: Argo CD\'s resource tracking', () => {
  it('names the app as Argo CD\'s InstanceName does: <namespace>_<name> outside Argo CD\'s namespace', () => {
    expect(trackingName({ namespace: 'argocd', name: 'cart' }, 'argocd')).toBe('cart');
    expect(trackingName({ namespace: 'team-a', name: 'cart' }, 'argocd')).toBe('team-a_cart');
  });

  it('reads a tracking id as Argo CD writes it: <app>:<group>/<kind>:<namespace>/<name>', () => {
    expect(parseTrackingId('team-a_cart:apps/Deployment:shop/api')).toEqual({ app: 'team-a_cart', group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'api' });
    expect(parseTrackingId('cart:/Service:shop/api')).toEqual({ app: 'cart', group: '', kind: 'Service', namespace: 'shop', name: 'api' });
    for (const bad of ['cart', 'cart:apps/Deployment', 'cart:Deployment:shop/api', 'cart:apps/Deployment:api', 'cart:apps/Deployment:shop/api:x']) {
      expect(parseTrackingId(bad)).toBeUndefined();
    }
  });

  it('takes a Deployment whose tracking id names the app and this very object', () => {
    const tracked = (id: string) => deployment('shop', 'api', { annotations: { 'argocd.argoproj.io/tracking-id': id } });
    expect(managedBy(tracked('cart:apps/Deployment:shop/api'), 'cart')).toBe(true);
    expect(managedBy(tracked('other:apps/Deployment:shop/api'), 'cart')).toBe(false);
    // Copied from another object (Argo CD's isSelfReferencedObj): not this one's
    expect(managedBy(tracked('cart:apps/Deployment:shop/web'), 'cart')).toBe(false);
    expect(managedBy(tracked('cart:apps/Deployment:other/api'), 'cart')).toBe(false);
    expect(managedBy(tracked('cart:apps/StatefulSet:shop/api'), 'cart')).toBe(false);
    expect(managedBy(tracked('garbage'), 'cart')).toBe(false);
  });

  it('takes the instance label (label tracking) only when there is no tracking id', () => {
    expect(managedBy(deployment('shop', 'api', { labels: { 'app.kubernetes.io/instance': 'cart' } }), 'cart')).toBe(true);
    expect(managedBy(deployment('shop', 'api', { labels: { 'app.kubernetes.io/instance': 'other' } }), 'cart')).toBe(false);
    expect(managedBy(deployment('shop', 'api', {
      labels: { 'app.kubernetes.io/instance': 'cart' }, annotations: { 'argocd.argoproj.io/tracking-id': 'other:apps/Deployment:shop/api' },
    }), 'cart')).toBe(false);
    expect(managedBy(deployment('shop', 'api', {}), 'cart')).toBe(false);
  });

  it('looks in the destination namespace and in those the status names for Deployments, each once', () => {
    expect(namespacesOf(app([
      { group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'api' },
      { group: '', kind: 'Service', namespace: 'svc-only', name: 'api' },
      { group: 'apps', kind: 'Deployment', namespace: 'web', name: 'frontend' },
      { group: 'apps', kind: 'Deployment', name: 'no-namespace' },
    ], 'shop'))).toEqual(['shop', 'web']);
    expect(namespacesOf(app([], 'shop'))).toEqual(['shop']);
    expect(namespacesOf(app([]))).toEqual([]);
  });
});

describe('ClusterReader helpers', () => {
  it('reads the rollout figures of a Deployment stuck under the default RollingUpdate (3/1/2/1 for 2 replicas)', () => {
    // As a real kube-controller-manager writes it for a release whose pods never become ready.
    expect(replicasOf({ metadata: { name: 'web' }, spec: { replicas: 2, selector: {}, template: {} }, status: {
      observedGeneration: 2, replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 1,
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' },
        { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "web-5d8f7b9c4" has timed out progressing.' },
      ],
    } })).toEqual({ name: 'web', desired: 2, updated: 1, available: 2, unavailable: 1, progressDeadlineExceeded: true });
  });

  it('reads a finished rollout, and takes the fields the API omits when zero as 0 (desired defaults to 1)', () => {
    expect(replicasOf({ metadata: { name: 'web' }, spec: { replicas: 2, selector: {}, template: {} }, status: {
      replicas: 2, updatedReplicas: 2, availableReplicas: 2,
      conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }],
    } })).toEqual({ name: 'web', desired: 2, updated: 2, available: 2, unavailable: 0, progressDeadlineExceeded: false });
    expect(replicasOf({ metadata: { name: 'api' }, spec: { selector: {}, template: {} } })).toEqual({ name: 'api', desired: 1, updated: 0, available: 0, unavailable: 0, progressDeadlineExceeded: false });
  });

  it('writes a label selector as the API expects it', () => {
    expect(selectorString({
      matchLabels: { app: 'api', tier: 'web' },
      matchExpressions: [
        { key: 'track', operator: 'In', values: ['stable', 'canary'] },
        { key: 'env', operator: 'NotIn', values: ['dev'] },
        { key: 'team', operator: 'Exists' },
        { key: 'legacy', operator: 'DoesNotExist' },
      ],
    })).toBe('app=api,tier=web,track in (stable,canary),env notin (dev),team,!legacy');
  });

  it('summarises a pod: phase, readiness and restarts over its containers', () => {
    expect(podSummary({
      metadata: { name: 'api-1' },
      status: {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: 'True' }],
        containerStatuses: [
          { name: 'a', image: 'a', imageID: '', ready: true, restartCount: 2 },
          { name: 'b', image: 'b', imageID: '', ready: true, restartCount: 3 },
        ],
      },
    })).toEqual({ name: 'api-1', phase: 'Running', ready: true, restarts: 5 });
    expect(podSummary({ metadata: { name: 'api-2' } })).toEqual({ name: 'api-2', phase: 'Unknown', ready: false, restarts: 0 });
  });
});
