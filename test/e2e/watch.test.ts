// The one watch (src/integrations/kube/watch.ts) on the real kube-apiserver: a
// watch the server ends (its timeoutSeconds, here 2 s) is resumed from the last
// resourceVersion, and what changed while no watch was open reaches the cache.
// The watch that breaks instead (a cut connection: backoff, relist, prune) is in
// integrations.test.ts, through the Argo CD watcher.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { describe, expect, inject, it } from 'vitest';
import { customObjectSource } from '../../src/integrations/kube/custom-objects.ts';
import { Watch, type KubeObject, type WatchSource } from '../../src/integrations/kube/watch.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { freshNamespace, kubeConfig } from './support/kube.ts';
import { eventually } from './support/operator.ts';

const stack = inject('stack');
const APP = { group: 'argoproj.io', version: 'v1alpha1', plural: 'applications' } as const;

interface Application extends KubeObject {
  metadata?: KubeObject['metadata'] & { labels?: Record<string, string> };
}

/** A source that counts lists and watch opens, and can hold the next open until released. */
function gated(source: WatchSource<Application>) {
  const counts = { lists: 0, opens: 0, ends: 0 };
  let gate: Promise<void> | undefined;
  let release = () => {};
  let held = () => {};
  const wrapped: WatchSource<Application> = {
    list: (namespace) => {
      counts.lists++;
      return source.list(namespace);
    },
    watch: async (namespace, resourceVersion, onEvent, onEnd) => {
      if (gate) {
        held();
        await gate;
      }
      counts.opens++;
      return source.watch(namespace, resourceVersion, onEvent, (error) => {
        counts.ends++;
        onEnd(error);
      });
    },
  };
  return {
    source: wrapped, counts,
    /** The next watch opens only after release(); resolves once one is waiting. */
    holdNext: () => new Promise<void>((resolve) => {
      held = resolve;
      gate = new Promise<void>((r) => (release = () => { gate = undefined; r(); }));
    }),
    release: () => release(),
  };
}

describe('Watch on the real API server', () => {
  it('outlives the server closing its watch, and drops an object deleted while no watch was open', async () => {
    const namespace = await freshNamespace(stack, 'watch');
    const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
    const create = (name: string) => api.createNamespacedCustomObject({ ...APP, namespace, body: {
      apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace },
      spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: name }, destination: { namespace: 'x' } },
    } });
    // Given two Applications, watched with the server ending every watch after 2 s
    await create('stays');
    await create('goes');
    const lines: Array<Record<string, unknown>> = [];
    const metrics = new Metrics();
    const source = gated(customObjectSource<Application>({
      kubeConfig: kubeConfig(stack), resource: APP, calls: { list: 'listApplications', watch: 'watchApplications' },
      watchTimeoutSeconds: 2, metrics, backoffMs: [50, 100, 200],
    }));
    const watch = new Watch<Application>({
      kind: 'Application', source: source.source, namespaces: [namespace], relistIntervalMs: 60 * 60_000,
      log: createLogger('DEBUG', {}, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)),
    });
    const names = () => watch.list().map((o) => o.metadata?.name).sort();
    try {
      await watch.start();
      await watch.synced();
      expect(names()).toEqual(['goes', 'stays']);

      // When the server ends the watch, and before the next one opens one Application is deleted and another created
      const waiting = source.holdNext();
      await eventually('the server to end the watch', async () => source.counts.ends >= 1, 10_000);
      await waiting;
      await api.deleteNamespacedCustomObject({ ...APP, namespace, name: 'goes' });
      await create('arrives');
      expect(names()).toEqual(['goes', 'stays']);
      source.release();

      // Then the watch resumes, and the cache has the deletion and the creation
      await eventually('the cache up to date', async () => names().join() === 'arrives,stays', 10_000);
      // From where it was: no second list, no failure
      expect(source.counts.lists).toBe(1);
      expect(lines.filter((l) => l.message === 'Application watch failed; restarting it')).toEqual([]);

      // And it keeps going across further server closes: a later change arrives
      const opens = source.counts.opens;
      await eventually('two more server closes', async () => source.counts.opens >= opens + 2, 10_000);
      await api.patchNamespacedCustomObject({ ...APP, namespace, name: 'stays', body: { metadata: { labels: { seen: 'yes' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      await eventually('the label in the cache', async () => watch.get(namespace, 'stays')?.metadata?.labels?.seen === 'yes', 10_000);
      expect(source.counts.lists).toBe(1);
      // Each open went through call(): timed like any other request
      const timed = /ai_operator_mcp_call_duration_seconds_count\{call_name="watchApplications"\} (\d+)/.exec(await metrics.registry.metrics());
      expect(Number(timed?.[1])).toBeGreaterThanOrEqual(3);
    } finally {
      await watch.stop();
    }
  });
});
