import { describe, expect, it } from 'vitest';
import type { ApplicationView } from '../ports/argocd.ts';
import { deploymentsOf, podSummary, replicasOf, selectorString } from './kubernetes.ts';

const app = (resources: ApplicationView['resources']): ApplicationView => ({ ref: { namespace: 'argocd', name: 'a' }, labels: {}, history: [], resources });

describe('ClusterReader helpers', () => {
  it('takes the app\'s Deployments from the resources Argo CD lists', () => {
    expect(deploymentsOf(app([
      { group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'api' },
      { group: '', kind: 'Service', namespace: 'shop', name: 'api' },
      { group: 'apps', kind: 'StatefulSet', namespace: 'shop', name: 'db' },
      { group: 'extensions', kind: 'Deployment', namespace: 'shop', name: 'legacy' },
      { group: 'apps', kind: 'Deployment', namespace: 'web', name: 'frontend' },
    ]))).toEqual([{ namespace: 'shop', name: 'api' }, { namespace: 'web', name: 'frontend' }]);
  });

  it('reads the rollout figures of a Deployment stuck under the default RollingUpdate (3/1/2/1 for 2 replicas)', () => {
    // As a real kube-controller-manager writes it for a release whose pods never become ready.
    expect(replicasOf('web', { spec: { replicas: 2, selector: {}, template: {} }, status: {
      observedGeneration: 2, replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 1,
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' },
        { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "web-5d8f7b9c4" has timed out progressing.' },
      ],
    } })).toEqual({ name: 'web', desired: 2, updated: 1, available: 2, unavailable: 1, progressDeadlineExceeded: true });
  });

  it('reads a finished rollout, and takes the fields the API omits when zero as 0 (desired defaults to 1)', () => {
    expect(replicasOf('web', { spec: { replicas: 2, selector: {}, template: {} }, status: {
      replicas: 2, updatedReplicas: 2, availableReplicas: 2,
      conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }],
    } })).toEqual({ name: 'web', desired: 2, updated: 2, available: 2, unavailable: 0, progressDeadlineExceeded: false });
    expect(replicasOf('api', { spec: { selector: {}, template: {} } })).toEqual({ name: 'api', desired: 1, updated: 0, available: 0, unavailable: 0, progressDeadlineExceeded: false });
  });

  it('marks a Deployment Argo CD lists but the cluster lacks as absent: nothing of it runs', () => {
    expect(replicasOf('api', undefined)).toEqual({ name: 'api', desired: 1, updated: 0, available: 0, unavailable: 1, progressDeadlineExceeded: false, absent: true });
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
