import { describe, expect, it } from 'vitest';
import { appendHistory, appHealth, appHealthMessage, appInfoLabels, applicationStatus, argoTime, deploymentHealth, deploymentsIn, deploymentStatus, rollout, type DeploymentManifest, type Strategy } from './rules.ts';

const deployment = (name: string, extra = '', spec = '') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
${extra}spec:
  replicas: 3
${spec}  selector: {matchLabels: {app: ${name}}}
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

  it('reads the strategy: RollingUpdate by default, int or percent fields, Recreate; refuses what the API server would', () => {
    const strategy = (spec: string) => deploymentsIn([{ file: 'd.yaml', content: deployment('api', '', spec) }], 'ns')[0]!.strategy;
    expect(strategy('')).toEqual({ type: 'RollingUpdate' });
    expect(strategy('  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: "50%"}}\n')).toEqual({ type: 'RollingUpdate', maxSurge: 0, maxUnavailable: '50%' });
    expect(strategy('  strategy: {type: Recreate}\n')).toEqual({ type: 'Recreate' });
    expect(() => strategy('  strategy: {rollingUpdate: {maxSurge: "one"}}\n')).toThrow(/d\.yaml: Deployment api: spec\.strategy\.rollingUpdate\.maxSurge "one"/);
    expect(() => strategy('  strategy: {type: BlueGreen}\n')).toThrow(/spec\.strategy\.type "BlueGreen"/);
  });

  it('names the new ReplicaSet after the pod template, as pod-template-hash does', () => {
    const [a, b, c] = deploymentsIn([{ file: 'd.yaml', content: `${deployment('api')}---\n${deployment('api', '  annotations: {x: y}\n')}---\n${deployment('api').replace('image: nginx', 'image: nginx:2')}` }], 'ns');
    expect(a!.replicaSet).toMatch(/^api-[bcdfghjklmnpqrstvwxz2456789]{10}$/);
    expect(b!.replicaSet).toBe(a!.replicaSet);
    expect(c!.replicaSet).not.toBe(a!.replicaSet);
  });
});

describe('the rollout rule: where the deployment controller leaves a rollout', () => {
  const figures = (replicas: number, strategy: Strategy, broken = true) => {
    const r = rollout(replicas, strategy, broken);
    return [r.replicas, r.updatedReplicas, r.availableReplicas, r.unavailableReplicas];
  };
  const defaults: Strategy = { type: 'RollingUpdate' };

  it.each([
    // replicas, strategy, [replicas, updated, available, unavailable]
    [1, defaults, [2, 1, 1, 1]],
    // The old ReplicaSet at full strength: 25 % surge rounds up to 1, 25 % unavailable down to 0.
    [2, defaults, [3, 1, 2, 1]],
    [4, defaults, [5, 2, 3, 2]],
    [2, { type: 'RollingUpdate', maxUnavailable: 1 }, [3, 2, 1, 2]],
    [2, { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, [2, 1, 1, 1]],
    [10, { type: 'RollingUpdate', maxSurge: '50%', maxUnavailable: '10%' }, [15, 6, 9, 6]],
    // Both 0 would never progress: the controller takes one unavailable.
    [3, { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: '10%' }, [3, 1, 2, 1]],
    [2, { type: 'Recreate' }, [2, 2, 0, 2]],
  ] as Array<[number, Strategy, number[]]>)('stops a broken release of %i replica(s) under %j at replicas/updated/available/unavailable %j', (replicas, strategy, expected) => {
    expect(figures(replicas, strategy)).toEqual(expected);
  });

  it('finishes a good release under any strategy: every pod updated and available', () => {
    for (const strategy of [defaults, { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, { type: 'Recreate' }] as Strategy[]) {
      expect(figures(4, strategy, false)).toEqual([4, 4, 4, 0]);
    }
  });

  it('resolves the default 25 % as the controller does: surge rounded up, unavailable down', () => {
    expect(rollout(4, defaults, true)).toMatchObject({ maxSurge: 1, maxUnavailable: 1, old: 3, new: 2 });
    expect(rollout(10, defaults, true)).toMatchObject({ maxSurge: 3, maxUnavailable: 2, old: 8, new: 5 });
    expect(rollout(2, { type: 'Recreate' }, true)).toMatchObject({ maxSurge: 0, maxUnavailable: 0, old: 0, new: 2 });
  });
});

describe('the Deployment status and Argo CD\'s health of it', () => {
  const one = (spec: string, broken: boolean): DeploymentManifest =>
    deploymentsIn([{ file: 'd.yaml', content: deployment('web', broken ? '  annotations: {ai-operator.dev/broken: "true"}\n' : '', spec).replace('replicas: 3', 'replicas: 2') }], 'ns')[0]!;
  const start = Date.parse('2026-02-27T10:00:00Z');
  const conditions = (d: DeploymentManifest, afterMs: number) => deploymentStatus(d, start, start + afterMs, 5000).conditions.map((c) => `${c.type}=${c.status}/${c.reason}`);

  it('reports a broken default rollout as the controller does: 3/1/2/1, Available, Progressing until the deadline, then ProgressDeadlineExceeded', () => {
    const broken = one('', true);
    const before = deploymentStatus(broken, start, start + 4999, 5000);
    expect(before).toMatchObject({ replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 1 });
    expect(conditions(broken, 4999)).toEqual(['Available=True/MinimumReplicasAvailable', 'Progressing=True/ReplicaSetUpdated']);
    expect(deploymentHealth(broken, before)).toEqual({ status: 'Progressing', message: 'Waiting for rollout to finish: 1 out of 2 new replicas have been updated...' });

    const after = deploymentStatus(broken, start, start + 5000, 5000);
    expect(after.conditions[1]).toEqual({
      type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: `ReplicaSet "${broken.replicaSet}" has timed out progressing.`,
      lastUpdateTime: '2026-02-27T10:00:05Z', lastTransitionTime: '2026-02-27T10:00:05Z',
    });
    expect(deploymentHealth(broken, after)).toEqual({ status: 'Degraded', message: 'Deployment "web" exceeded its progress deadline' });
    // Past the deadline nothing changes any more: the simulator writes it once.
    expect(deploymentStatus(broken, start, start + 60_000, 5000)).toEqual(after);
  });

  it('marks a broken Recreate rollout without minimum availability; Argo CD waits on its updated replicas', () => {
    const recreate = one('  strategy: {type: Recreate}\n', true);
    expect(conditions(recreate, 0)).toEqual(['Available=False/MinimumReplicasUnavailable', 'Progressing=True/ReplicaSetUpdated']);
    expect(deploymentHealth(recreate, deploymentStatus(recreate, start, start, 5000)).message).toBe('Waiting for rollout to finish: 0 of 2 updated replicas are available...');
  });

  it('marks a good rollout done: NewReplicaSetAvailable, Healthy, even past the deadline', () => {
    const good = one('', false);
    const status = deploymentStatus(good, start, start + 60_000, 5000);
    expect(status).toMatchObject({ replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 0 });
    expect(conditions(good, 60_000)).toEqual(['Available=True/MinimumReplicasAvailable', 'Progressing=True/NewReplicaSetAvailable']);
    expect(deploymentHealth(good, status)).toEqual({ status: 'Healthy' });
  });

  it('says Argo CD\'s message for old replicas pending termination', () => {
    const d = one('', true);
    expect(deploymentHealth(d, { ...deploymentStatus(d, start, start, 5000), updatedReplicas: 2 }).message).toBe('Waiting for rollout to finish: 1 old replicas are pending termination...');
  });

  it('gives the app its worst resource\'s health, Healthy with none', () => {
    expect(appHealth([]).status).toBe('Healthy');
    expect(appHealth([{ status: 'Healthy' }, { status: 'Degraded' }, { status: 'Progressing' }]).status).toBe('Degraded');
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
    const history = appendHistory([], { revision: 'abc', deployedAt: argoTime(at), deployStartedAt: argoTime(at), source: { path: 'app' }, initiatedBy: { automated: true } });
    const input = { source: { path: 'app' }, destination: { namespace: 'shop' }, revision: 'def', history, deployments, now: new Date(at.getTime() + 2000), degradeAfterMs: 10_000 };
    const status = applicationStatus(input);
    expect(argoTime(at)).toBe('2026-02-27T10:00:00Z');
    // As Argo CD 3.6 writes it by default (seen on the stack's real controller): the app's message names the
    // resource that caused its health; each resource's own health stays in the resource tree.
    expect(status).toEqual({
      sync: { status: 'Synced', revision: 'def', comparedTo: { source: { path: 'app' }, destination: { namespace: 'shop' } } },
      health: { status: 'Progressing', message: 'Caused by apps/Deployment:shop/api', lastTransitionTime: '2026-02-27T10:00:02Z' },
      history: [{ id: 0, revision: 'abc', deployedAt: '2026-02-27T10:00:00Z', deployStartedAt: '2026-02-27T10:00:00Z', source: { path: 'app' }, initiatedBy: { automated: true } }],
      operationState: {
        phase: 'Succeeded', message: 'successfully synced (all tasks run)', startedAt: '2026-02-27T10:00:00Z', finishedAt: '2026-02-27T10:00:00Z',
        operation: { sync: { revision: 'abc', source: { path: 'app' } }, initiatedBy: { automated: true } },
        syncResult: { revision: 'abc', source: { path: 'app' } },
      },
      controllerNamespace: 'argocd',
      resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'api', status: 'Synced' }],
      resourceHealthSource: 'appTree',
      sourceHydrator: {},
      sourceType: 'Directory',
    });
    // With --persist-resource-health each resource carries its health and message, and the source is inline: Argo CD's empty value
    const later = new Date(at.getTime() + 4000);
    const persisted = applicationStatus({ ...input, now: later, persistResourceHealth: true, previousHealth: { status: 'Progressing', lastTransitionTime: '2026-02-27T10:00:02Z' } });
    expect(persisted).toMatchObject({
      resources: [{ kind: 'Deployment', name: 'api', health: { status: 'Progressing', message: 'Waiting for rollout to finish: 1 out of 3 new replicas have been updated...' } }],
      resourceHealthSource: null,
      // The same health since the last write: its transition time stays
      health: { status: 'Progressing', lastTransitionTime: '2026-02-27T10:00:02Z' },
    });
    // A new health is a transition
    const degraded = applicationStatus({ ...input, now: new Date(at.getTime() + 11_000), previousHealth: { status: 'Progressing', lastTransitionTime: '2026-02-27T10:00:02Z' } });
    expect(degraded.health).toEqual({ status: 'Degraded', message: 'Caused by apps/Deployment:shop/api', lastTransitionTime: '2026-02-27T10:00:11Z' });
  });

  it('names the causes of the app\'s health as Argo CD does: those of the worst health, three at most, none when Healthy', () => {
    const at = (name: string) => ({ namespace: 'shop', name });
    expect(appHealthMessage([at('a'), at('b')], [{ status: 'Healthy' }, { status: 'Healthy' }])).toBeUndefined();
    expect(appHealthMessage([at('a'), at('b'), at('c')], [{ status: 'Progressing' }, { status: 'Degraded' }, { status: 'Degraded' }]))
      .toBe('Caused by apps/Deployment:shop/b, apps/Deployment:shop/c');
    expect(appHealthMessage(['a', 'b', 'c', 'd', 'e'].map(at), Array(5).fill({ status: 'Degraded' })))
      .toBe('Caused by apps/Deployment:shop/a, apps/Deployment:shop/b, apps/Deployment:shop/c and 2 more');
  });

  it('labels argocd_app_info as Argo CD 3.6 does: the repo normalized, hydrator_status and phase', () => {
    expect(appInfoLabels({ namespace: 'argocd', name: 'web', automated: true, repoURL: 'https://github.com/Acme/GitOps.git', destServer: 'https://kubernetes.default.svc', destNamespace: 'web', syncStatus: 'Synced', healthStatus: 'Degraded', phase: 'Succeeded' })).toEqual({
      namespace: 'argocd', name: 'web', project: 'default', autosync_enabled: 'true', repo: 'https://github.com/acme/gitops',
      dest_server: 'https://kubernetes.default.svc', dest_namespace: 'web', sync_status: 'Synced', health_status: 'Degraded', hydrator_status: '', operation: '', phase: 'Succeeded',
    });
    expect(appInfoLabels({ namespace: 'a', name: 'b', automated: false, syncStatus: '', healthStatus: '' })).toMatchObject({ sync_status: 'Unknown', health_status: 'Unknown', phase: '' });
  });
});
