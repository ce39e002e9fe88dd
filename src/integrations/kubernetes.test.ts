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

  it('reads desired (default 1) and available (default 0) replicas', () => {
    expect(replicasOf('api', { spec: { replicas: 3, selector: {}, template: {} }, status: { availableReplicas: 1 } })).toEqual({ name: 'api', desired: 3, available: 1 });
    expect(replicasOf('api', { spec: { selector: {}, template: {} } })).toEqual({ name: 'api', desired: 1, available: 0 });
    // Argo CD lists it, the cluster does not have it: nothing runs.
    expect(replicasOf('api', undefined)).toEqual({ name: 'api', desired: 1, available: 0 });
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
