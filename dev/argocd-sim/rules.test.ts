import { describe, expect, it } from 'vitest';
import { appendHistory, appHealth, applicationStatus, argoTime, deploymentHealth, deploymentsIn, deploymentStatus } from './rules.ts';

const deployment = (name: string, extra = '') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
${extra}spec:
  replicas: 3
  selector: {matchLabels: {app: ${name}}}
  template: {metadata: {labels: {app: ${name}}}, spec: {containers: [{name: c, image: nginx}]}}
`;

describe('deploymentsIn', () => {
  it('finds apps/v1 Deployments in multi-document files, reading the broken annotation', () => {
    const found = deploymentsIn([
      { file: 'app/deploy.yaml', content: `${deployment('api')}---\napiVersion: v1\nkind: Service\nmetadata: {name: api}\n---\n${deployment('worker', '  namespace: jobs\n  annotations:\n    ai-operator.dev/broken: "true"\n')}` },
      { file: 'app/empty.yaml', content: '---\n' },
    ], 'shop');
    expect(found.map(({ name, namespace, replicas, broken }) => ({ name, namespace, replicas, broken }))).toEqual([
      { name: 'api', namespace: 'shop', replicas: 3, broken: false },
      { name: 'worker', namespace: 'jobs', replicas: 3, broken: true },
    ]);
  });

  it('fails on a manifest that is not YAML, naming the file', () => {
    expect(() => deploymentsIn([{ file: 'app/bad.yaml', content: 'a: [1, 2\n' }], 'x')).toThrow(/app\/bad.yaml/);
  });
});

describe('the health rule', () => {
  const [good, broken] = deploymentsIn([{ file: 'd.yaml', content: `${deployment('good')}---\n${deployment('bad', '  annotations: {ai-operator.dev/broken: "true"}\n')}` }], 'ns');

  it('is Healthy for a sound Deployment, Progressing then Degraded for a broken one', () => {
    expect(deploymentHealth(good!, 0, 5000).status).toBe('Healthy');
    expect(deploymentHealth(broken!, 4999, 5000).status).toBe('Progressing');
    expect(deploymentHealth(broken!, 5000, 5000)).toEqual({ status: 'Degraded', message: 'Deployment "bad" exceeded its progress deadline' });
  });

  it('gives the app its worst resource\'s health, Healthy with none', () => {
    expect(appHealth([]).status).toBe('Healthy');
    expect(appHealth([{ status: 'Healthy' }, { status: 'Degraded' }, { status: 'Progressing' }]).status).toBe('Degraded');
  });

  it('reports no available replica for a broken Deployment', () => {
    expect(deploymentStatus(broken!, 2)).toMatchObject({ observedGeneration: 2, replicas: 3, availableReplicas: 0, unavailableReplicas: 3 });
    expect(deploymentStatus(good!, 1)).toMatchObject({ replicas: 3, availableReplicas: 3, readyReplicas: 3 });
  });
});

describe('history and status', () => {
  it('appends with ids counting up and keeps the last `limit` entries', () => {
    let history = appendHistory([], { revision: 'a', deployedAt: 't', deployStartedAt: 't', source: {} }, 2);
    history = appendHistory(history, { revision: 'b', deployedAt: 't', deployStartedAt: 't', source: {} }, 2);
    history = appendHistory(history, { revision: 'c', deployedAt: 't', deployStartedAt: 't', source: {} }, 2);
    expect(history.map((h) => [h.id, h.revision])).toEqual([[1, 'b'], [2, 'c']]);
  });

  it('writes sync, health, history and resources as Argo CD does', () => {
    const at = new Date('2026-02-27T10:00:00.500Z');
    const deployments = deploymentsIn([{ file: 'd.yaml', content: deployment('api', '  annotations: {ai-operator.dev/broken: "true"}\n') }], 'shop');
    const history = appendHistory([], { revision: 'abc', deployedAt: argoTime(at), deployStartedAt: argoTime(at), source: { path: 'app' } });
    const status = applicationStatus({ source: { path: 'app' }, destination: { namespace: 'shop' }, revision: 'def', history, deployments, now: new Date(at.getTime() + 2000), degradeAfterMs: 10_000 });
    expect(argoTime(at)).toBe('2026-02-27T10:00:00Z');
    expect(status).toEqual({
      sync: { status: 'Synced', revision: 'def', comparedTo: { source: { path: 'app' }, destination: { namespace: 'shop' } } },
      health: { status: 'Progressing', message: 'Waiting for rollout to finish: 0 of 3 updated replicas are available...' },
      history: [{ id: 0, revision: 'abc', deployedAt: '2026-02-27T10:00:00Z', deployStartedAt: '2026-02-27T10:00:00Z', source: { path: 'app' } }],
      resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'api', status: 'Synced', health: { status: 'Progressing', message: 'Waiting for rollout to finish: 0 of 3 updated replicas are available...' } }],
      sourceType: 'Directory',
    });
  });
});
