import type { V1Deployment, V1Pod, V1ReplicaSet, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { currentRevisions, podFacts, type NamespaceObjects } from './revision-pods.ts';

const ns = 'shop';
const tracking = (kind: string, name: string, app = 'web') => ({ 'argocd.argoproj.io/tracking-id': `${app}:apps/${kind}:${ns}/${name}` });
const owner = (kind: string, name: string, uid: string) => [{ apiVersion: 'apps/v1', kind, name, uid, controller: true }];

function deployment(revision: string, extra: Partial<V1Deployment['metadata']> = {}, observedGeneration = 3): V1Deployment {
  return {
    metadata: { name: 'web', namespace: ns, uid: 'd-web', generation: 3, annotations: { ...tracking('Deployment', 'web'), 'deployment.kubernetes.io/revision': revision }, ...extra },
    status: { observedGeneration },
  };
}
const replicaSet = (hash: string, revision: string): V1ReplicaSet => ({
  metadata: { name: `web-${hash}`, namespace: ns, uid: `rs-${hash}`, labels: { app: 'web', 'pod-template-hash': hash }, annotations: { 'deployment.kubernetes.io/revision': revision }, ownerReferences: owner('Deployment', 'web', 'd-web') },
});
function pod(name: string, ownerUid: string, status: V1Pod['status'], labels: Record<string, string> = {}, extra: Partial<V1Pod['metadata']> = {}): V1Pod {
  return { metadata: { name, namespace: ns, labels, ownerReferences: owner('ReplicaSet', 'x', ownerUid), creationTimestamp: '2026-12-07T09:59:00Z' as never, ...extra }, status };
}
const crashLooping: V1Pod['status'] = {
  phase: 'Running', startTime: '2026-12-07T09:59:02Z' as never,
  conditions: [{ type: 'Ready', status: 'False' }],
  containerStatuses: [{
    name: 'web', image: 'web:v2', imageID: '', ready: false, restartCount: 4,
    state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } },
    lastState: { terminated: { exitCode: 1, reason: 'Error', finishedAt: '2026-12-07T09:59:50Z' as never } },
  }],
};
const ready: V1Pod['status'] = {
  phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }],
  containerStatuses: [{ name: 'web', image: 'web:v1', imageID: '', ready: true, restartCount: 0, state: { running: {} } }],
};

const objects = (extra: Partial<NamespaceObjects> = {}): NamespaceObjects => ({
  deployments: [deployment('2')],
  replicaSets: [replicaSet('old111', '1'), replicaSet('new222', '2')],
  statefulSets: [],
  pods: [
    pod('web-old111-a', 'rs-old111', ready), pod('web-old111-b', 'rs-old111', ready),
    pod('web-new222-a', 'rs-new222', crashLooping),
  ],
  ...extra,
});

describe('currentRevisions: the pods of the current revision only', () => {
  it('takes the new ReplicaSet of the Deployment by its revision annotation, and its pods alone', () => {
    expect(currentRevisions(objects(), 'web')).toEqual([{
      kind: 'Deployment', namespace: ns, name: 'web', revision: 'new222',
      pods: [{
        name: 'web-new222-a', ready: false, startedAt: '2026-12-07T09:59:02Z',
        containers: [{ name: 'web', ready: false, restartCount: 4, waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' }, lastTerminated: { reason: 'Error', exitCode: 1, finishedAt: '2026-12-07T09:59:50Z' } }],
      }],
    }]);
  });

  it('says nothing of a Deployment whose controller has not observed its latest spec yet (its status is the old revision\'s)', () => {
    expect(currentRevisions(objects({ deployments: [deployment('1', {}, 2)] }), 'web')).toEqual([]);
  });

  it('says nothing before the new ReplicaSet exists', () => {
    expect(currentRevisions(objects({ deployments: [deployment('3')] }), 'web')).toEqual([]);
  });

  it('never reads another app\'s Deployment, nor one whose tracking id was copied from another object', () => {
    expect(currentRevisions(objects(), 'other')).toEqual([]);
    const copied = deployment('2', { name: 'web-copy', annotations: { ...tracking('Deployment', 'web'), 'deployment.kubernetes.io/revision': '2' } });
    expect(currentRevisions(objects({ deployments: [copied] }), 'web')).toEqual([]);
  });

  it('leaves out pods being deleted', () => {
    const deleting = pod('web-new222-b', 'rs-new222', crashLooping, {}, { deletionTimestamp: '2026-12-07T10:00:00Z' as never });
    expect(currentRevisions(objects({ pods: [...objects().pods, deleting] }), 'web')[0]!.pods.map((p) => p.name)).toEqual(['web-new222-a']);
  });

  it('takes a StatefulSet\'s pods of its updateRevision, not those of its currentRevision', () => {
    const sts: V1StatefulSet = {
      metadata: { name: 'db', namespace: ns, uid: 's-db', generation: 2, annotations: tracking('StatefulSet', 'db') },
      status: { observedGeneration: 2, replicas: 3, currentRevision: 'db-aaa', updateRevision: 'db-bbb' },
    };
    const stsPod = (name: string, hash: string, status: V1Pod['status']) => ({ ...pod(name, 's-db', status, { 'controller-revision-hash': hash }) });
    const found = currentRevisions({ deployments: [], replicaSets: [], statefulSets: [sts], pods: [stsPod('db-0', 'db-aaa', ready), stsPod('db-1', 'db-aaa', ready), stsPod('db-2', 'db-bbb', crashLooping)] }, 'web');
    expect(found.map((r) => [r.kind, r.name, r.revision, r.pods.map((p) => p.name)])).toEqual([['StatefulSet', 'db', 'db-bbb', ['db-2']]]);
  });
});

describe('podFacts', () => {
  it('reads init containers (flagged) before the others, Dates as ISO strings, the creation time without a start', () => {
    const facts = podFacts({
      metadata: { name: 'p', creationTimestamp: new Date('2026-12-07T09:00:00Z') },
      status: {
        initContainerStatuses: [{ name: 'migrate', image: '', imageID: '', ready: false, restartCount: 2, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137, reason: 'OOMKilled', finishedAt: new Date('2026-12-07T09:01:00Z') } } }],
        containerStatuses: [{ name: 'web', image: '', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'PodInitializing' } } }],
      },
    });
    expect(facts).toEqual({
      name: 'p', ready: false, startedAt: '2026-12-07T09:00:00.000Z',
      containers: [
        { name: 'migrate', init: true, ready: false, restartCount: 2, waiting: { reason: 'CrashLoopBackOff' }, lastTerminated: { reason: 'OOMKilled', exitCode: 137, finishedAt: '2026-12-07T09:01:00.000Z' } },
        { name: 'web', ready: false, restartCount: 0, waiting: { reason: 'PodInitializing' } },
      ],
    });
  });
});
