// RollbackPolicies, as declared in Git: watched through the API server and kept
// in a cache the application reconciler consults (which policy governs an app,
// with what settings). Each policy's status says how many Applications it
// matches and whether it is Ready. Level-based: the status is recomputed from
// the cache on every resync, never accumulated.
import { CustomObjectsApi, KubeConfig, PatchStrategy, makeInformer, setHeaderOptions, type Informer, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import type { Logger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { repositoryRefusal } from '../governance/repository.ts';
import { monitoringFor, type Defaults, type RollbackPolicy, type RollbackPolicySpec } from '../policy/settings.ts';
import type { MonitoredApp } from './application.ts';

const GROUP = 'ai-operator.io';
const VERSION = 'v1alpha1';
const PLURAL = 'rollbackpolicies';

interface PolicyObject extends KubernetesObject {
  spec?: RollbackPolicySpec;
  status?: { matchedApplications?: number; observedGeneration?: number; conditions?: Array<{ type: string; status: string; message?: string; lastTransitionTime?: string }> };
}

/** Which policy governs the app: the first by namespace/name that names or selects it. Pure. */
export function governingPolicy(app: ApplicationView, policies: RollbackPolicy[], defaults: Defaults): RollbackPolicy | undefined {
  const monitored = monitoringFor(app, policies, defaults);
  return monitored?.policyRef ? policies.find((p) => p.name === monitored.policyRef!.name && p.namespace === monitored.policyRef!.namespace) : undefined;
}

export class RollbackPolicies {
  private readonly api: CustomObjectsApi;
  private readonly informer: Informer<PolicyObject> & ObjectCache<PolicyObject>;
  private readonly defaults: Defaults;
  private readonly log: Logger;
  private readonly allowedOwner: string | undefined;
  private readonly namespaces: ReadonlySet<string> | undefined;

  /**
   * `allowedOwner`: GITHUB_ORG, whose repositories alone the operator may open PRs on.
   * `namespaces`: WATCH_NAMESPACES; policies elsewhere belong to another installation,
   * which alone may judge and write their status.
   */
  constructor(kc: KubeConfig, defaults: Defaults, log: Logger, onChange: () => void, options: { allowedOwner?: string; namespaces?: string[] } = {}) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.defaults = defaults;
    this.allowedOwner = options.allowedOwner;
    this.namespaces = options.namespaces?.length ? new Set(options.namespaces) : undefined;
    this.log = log;
    this.informer = makeInformer<PolicyObject>(kc, `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      () => this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL }) as never);
    for (const verb of ['add', 'update', 'delete'] as const) this.informer.on(verb, () => onChange());
    this.informer.on('error', (error: unknown) => {
      this.log.warn('RollbackPolicy watch failed; restarting it', { error: String(error) });
      setTimeout(() => void this.informer.start().catch((e: Error) => this.log.warn('RollbackPolicy watch restart failed', { error: e.message })), 2000).unref();
    });
  }

  start(): Promise<void> {
    return this.informer.start();
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  policies(): RollbackPolicy[] {
    return this.objects().map((o) => ({ name: o.metadata!.name!, namespace: o.metadata!.namespace!, spec: o.spec ?? {} }));
  }

  /** The RollbackPolicy objects of the watched namespaces. */
  private objects(): PolicyObject[] {
    return this.informer.list().filter((o) => !this.namespaces || this.namespaces.has(o.metadata?.namespace ?? ''));
  }

  monitoring(app: ApplicationView): MonitoredApp | undefined {
    return monitoringFor(app, this.policies(), this.defaults);
  }

  /** Writes matchedApplications and Ready on every policy whose status is out of date. */
  async writeStatuses(apps: ApplicationView[]): Promise<void> {
    const policies = this.policies();
    const matched = new Map<string, number>();
    const refused = new Map<string, string[]>();
    for (const app of apps) {
      const policy = governingPolicy(app, policies, this.defaults);
      if (!policy) continue;
      const key = `${policy.namespace}/${policy.name}`;
      matched.set(key, (matched.get(key) ?? 0) + 1);
      if (repositoryRefusal(app.source, this.allowedOwner)) refused.set(key, [...(refused.get(key) ?? []), app.ref.name]);
    }
    for (const object of this.objects()) {
      const { name, namespace, generation } = object.metadata!;
      const key = `${namespace}/${name}`;
      const count = matched.get(key) ?? 0;
      const refusedApps = (refused.get(key) ?? []).sort();
      const refusal = refusedApps.length === 0
        ? 'every governed Application\'s repository is within GITHUB_ORG'
        : `${refusedApps.length} governed Application(s) refused, their repository outside GITHUB_ORG ${this.allowedOwner}: ${refusedApps.slice(0, 20).join(', ')}${refusedApps.length > 20 ? ', …' : ''}`;
      const current = object.status?.conditions?.find((c) => c.type === 'ApplicationsRefused');
      if (object.status?.matchedApplications === count && object.status.observedGeneration === generation && current?.message === refusal) continue;
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      const status = {
        observedGeneration: generation ?? 0,
        matchedApplications: count,
        conditions: [{
          type: 'Ready', status: 'True', reason: count > 0 ? 'ApplicationsMatched' : 'NoApplicationsMatched',
          message: `${count} Application(s) governed by this policy${object.spec?.suspend ? ' (suspended: no new attempts)' : ''}`,
          lastTransitionTime: now, observedGeneration: generation ?? 0,
        }, {
          type: 'ApplicationsRefused', status: refusedApps.length > 0 ? 'True' : 'False',
          reason: refusedApps.length > 0 ? 'RepositoryOutsideOrg' : 'NoneRefused', message: refusal,
          lastTransitionTime: current && current.status === (refusedApps.length > 0 ? 'True' : 'False') ? current.lastTransitionTime : now,
          observedGeneration: generation ?? 0,
        }],
      };
      await this.api.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace: namespace!, plural: PLURAL, name: name!, body: { status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ).catch((error: Error) => this.log.warn('Could not write RollbackPolicy status', { policy: `${namespace}/${name}`, error: error.message }));
    }
  }
}
