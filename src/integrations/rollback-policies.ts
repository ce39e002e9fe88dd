// RollbackPolicy objects on the Kubernetes API (RollbackPolicyPort): watched in
// every namespace through kube/watch.ts, their status written through call().
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { GROUP, KINDS, PLURALS, VERSION } from '../api/group.ts';
import type { Logger } from '../observability/log.ts';
import type { RollbackPolicySpec } from '../policy/settings.ts';
import type { PolicyObject, RollbackPolicyPort, RollbackPolicyStatus } from '../ports/rollback-policies.ts';
import { call, classifyHttpError } from './call.ts';
import { customObjectSource, type CustomObjectsOptions } from './kube/custom-objects.ts';
import { Watch } from './kube/watch.ts';

const PLURAL = PLURALS.policy;

interface RollbackPolicyObject extends KubernetesObject {
  spec?: RollbackPolicySpec;
  status?: RollbackPolicyStatus;
}

export interface RollbackPolicyObjectsOptions extends CustomObjectsOptions {
  log: Logger;
  /** The field manager of its status writes (`ai-operator-{installation}`): managedFields then say which installation wrote it. */
  fieldManager?: string;
}

export class RollbackPolicyObjects implements RollbackPolicyPort {
  private readonly api: CustomObjectsApi;
  private readonly watch: Watch<RollbackPolicyObject>;
  private readonly options: RollbackPolicyObjectsOptions;

  constructor(kc: KubeConfig, options: RollbackPolicyObjectsOptions) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.options = options;
    this.watch = new Watch<RollbackPolicyObject>({
      kind: KINDS.policy, log: options.log, relistIntervalMs: options.relistIntervalMs, backoffMs: options.restartBackoffMs,
      source: customObjectSource({
        kubeConfig: kc, resource: { group: GROUP, version: VERSION, plural: PLURAL },
        calls: { list: 'listRollbackPolicies', watch: 'watchRollbackPolicies' },
        metrics: options.metrics, timeoutMs: options.timeoutMs, backoffMs: options.backoffMs,
      }),
    });
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  list(): PolicyObject[] {
    return this.watch.list().map((o) => ({
      namespace: o.metadata!.namespace!, name: o.metadata!.name!, spec: o.spec ?? {},
      ...(o.metadata?.generation !== undefined ? { generation: o.metadata.generation } : {}),
      ...(o.metadata?.resourceVersion ? { resourceVersion: o.metadata.resourceVersion } : {}),
      ...(o.metadata?.uid ? { uid: o.metadata.uid } : {}),
      ...(o.status ? { status: o.status } : {}),
    }));
  }

  onChange(listener: () => void): () => void {
    // A relist that changed nothing is no change.
    return this.watch.on((event) => event.type !== 'relisted' && listener());
  }

  async writeStatus(policy: { namespace: string; name: string; resourceVersion?: string }, status: RollbackPolicyStatus): Promise<void> {
    // A resourceVersion in a merge patch is a precondition: a write made on a stale read gets 409.
    const body = policy.resourceVersion ? { metadata: { resourceVersion: policy.resourceVersion }, status } : { status };
    await call('patchRollbackPolicyStatus', () => this.api.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: policy.namespace, plural: PLURAL, name: policy.name, body, ...(this.options.fieldManager ? { fieldManager: this.options.fieldManager } : {}) },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ), { classify: classifyHttpError, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}
