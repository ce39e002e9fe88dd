// Claim Leases (AppClaimPort): `ai-operator-claim-{app}` in the Application's
// namespace, spec.holderIdentity the installation, labelled with it and owned by
// the Application (garbage-collected with it). Never renewed and never taken
// over: a Lease here is a lock a human lifts, not a heartbeat (README "Two
// installations on one cluster").
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { CLAIM_ANNOTATION, LABELS } from '../api/group.ts';
import { labelValue, type AppRef } from '../fsm/record.ts';
import type { AppClaimPort } from '../ports/app-claims.ts';
import { IntegrationError } from '../ports/errors.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';

/** The claim Lease's name for an app: its name when that fits a label value, else shortened with a digest. Pure. */
export function claimLeaseName(app: AppRef): string {
  return `ai-operator-claim-${labelValue(app.name)}`;
}

export interface AppClaimsOptions {
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
}

export class AppClaims implements AppClaimPort {
  private readonly api: CoordinationV1Api;
  private readonly options: AppClaimsOptions;

  constructor(kc: KubeConfig, options: AppClaimsOptions = {}) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.options = options;
  }

  async claim(app: { ref: AppRef; uid?: string }, installation: string): Promise<string> {
    const name = claimLeaseName(app.ref);
    const held = await this.holder(app.ref.namespace, name);
    if (held !== undefined) return held;
    const body: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
      metadata: {
        name, namespace: app.ref.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'ai-operator', [LABELS.installation]: installation },
        annotations: { [CLAIM_ANNOTATION]: app.ref.name },
        ...(app.uid ? { ownerReferences: [{ apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', name: app.ref.name, uid: app.uid }] } : {}),
      },
      spec: { holderIdentity: installation, acquireTime: new V1MicroTime() },
    };
    try {
      await call('createClaimLease', () => this.api.createNamespacedLease({ namespace: app.ref.namespace, body }), this.callOptions());
      return installation;
    } catch (error) {
      // Another installation created it between our read and our create: its claim stands.
      if (!(error instanceof IntegrationError && error.code === 'CONFLICT')) throw error;
      const winner = await this.holder(app.ref.namespace, name);
      if (winner === undefined) throw new IntegrationError('createClaimLease', 'UNAVAILABLE', `Lease ${app.ref.namespace}/${name} exists but could not be read`);
      return winner;
    }
  }

  /** The holder of the Lease, or undefined when there is none. A Lease without a holder (written by hand) is nobody's to take: `(none)`. */
  private async holder(namespace: string, name: string): Promise<string | undefined> {
    try {
      const lease = await call('readClaimLease', () => this.api.readNamespacedLease({ namespace, name }), this.callOptions());
      return lease.spec?.holderIdentity || '(none)';
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  private callOptions() {
    return { classify: classifyHttpError, ...(this.options.metrics ? { metrics: this.options.metrics } : {}), timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs };
  }
}
