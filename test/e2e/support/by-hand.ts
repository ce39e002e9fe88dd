// Acting as Argo CD: Applications whose status the test writes itself, in a
// namespace the Argo CD simulator does not watch — for the shapes and timings a
// simulator would never produce (flapping health, no sync revision, malformed
// statuses), as real Argo CD or a human with patch rights can.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { StackEndpoints } from '../../../dev/stack/index.ts';
import type { CloudEvent } from '../../../src/fsm/cloud-events.ts';
import { freshNamespace, kubeConfig } from './kube.ts';

export interface HandDrivenApp {
  namespace: string;
  name: string;
  /** Writes the Application's status (a merge patch of the status subresource). */
  setStatus(status: Record<string, unknown>): Promise<void>;
}

export interface HandDrivenSpec {
  name: string;
  environment: 'staging' | 'production';
  repoURL: string;
  path: string;
  status: Record<string, unknown>;
  /** Replaces the single `source` (a multi-source or source-hydrator shape). */
  spec?: Record<string, unknown>;
}

export async function givenHandDrivenNamespace(stack: StackEndpoints, prefix: string): Promise<{ namespace: string; app(spec: HandDrivenSpec): Promise<HandDrivenApp> }> {
  const namespace = await freshNamespace(stack, prefix);
  const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
  const target = { group: 'argoproj.io', version: 'v1alpha1', namespace, plural: 'applications' };
  return {
    namespace,
    app: async (spec) => {
      await api.createNamespacedCustomObject({ ...target, body: {
        apiVersion: 'argoproj.io/v1alpha1', kind: 'Application',
        metadata: { name: spec.name, namespace, labels: { 'ai-operator.enabled': 'true', environment: spec.environment } },
        spec: { project: 'default', ...(spec.spec ?? { source: { repoURL: spec.repoURL, path: spec.path, targetRevision: 'main' } }), destination: { namespace: `${namespace}-workload` } },
      } });
      const setStatus = async (status: Record<string, unknown>) => {
        await api.patchNamespacedCustomObjectStatus({ ...target, name: spec.name, body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      };
      await setStatus(spec.status);
      return { namespace, name: spec.name, setStatus };
    },
  };
}

/** Every event on the operator's stream (its installation's, Scenario.stream) about one Application (`namespace/name`), in stream order. */
export async function streamEventsAbout(stack: StackEndpoints, subject: string, stream: string): Promise<CloudEvent[]> {
  const nc = await connect({ servers: stack.nats });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const events: CloudEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const message = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
      const event = message?.json<CloudEvent>();
      if (event?.subject === subject) events.push(event);
    }
    return events;
  } finally {
    await nc.close();
  }
}
