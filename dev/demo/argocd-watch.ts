// Argo CD's side of the timeline: what it reports on each Application, one
// line each time its sync status, synced revision or health changes (with the
// health message of the moment: a rollout's progress message alone changes too
// often to print), read from the API server as the operator reads it.
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { stamp } from './timeline.ts';

interface Application {
  metadata: { name: string };
  status?: { sync?: { status?: string; revision?: string }; health?: { status?: string; message?: string } };
}

export function describeStatus(app: Application): string {
  const { sync, health } = app.status ?? {};
  const revision = sync?.revision ? ` ${sync.revision.slice(0, 7)}` : '';
  const message = health?.message ? ` (${health.message})` : '';
  return `Argo CD: ${app.metadata.name} ${sync?.status ?? 'Unknown'}${revision}, ${health?.status ?? 'Unknown'}${message}`;
}

export function watchApplications(kubeconfig: string, namespace: string, intervalMs = 1000): { stop(): Promise<void> } {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const api = kc.makeApiClient(CustomObjectsApi);
  const seen = new Map<string, string>();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const list = await api.listNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace, plural: 'applications' }) as { items: Application[] };
        for (const app of list.items) {
          const { sync, health } = app.status ?? {};
          const key = `${sync?.status}|${sync?.revision}|${health?.status}`;
          if (seen.get(app.metadata.name) !== key) stamp(describeStatus(app));
          seen.set(app.metadata.name, key);
        }
      } catch {
        // A missed reading is only a line printed a second later.
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return { stop: async () => { stopped = true; await loop; } };
}
