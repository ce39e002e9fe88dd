// Which workloads are an Application's: what Argo CD marks on them when it applies them (its
// resource tracking), not the names in the Application's status — that status has no subresource
// in Argo CD's CRD, so anyone who may patch the Application may write it. Pure.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { AppRef } from '../../fsm/record.ts';
import type { ApplicationView } from '../../ports/argocd.ts';

/**
 * Argo CD's resource tracking (argo-cd v3 `common/common.go`, `util/argo/resource_tracking.go`):
 * annotation tracking, the default since 3.0, writes `<app>:<group>/<kind>:<namespace>/<name>`;
 * label tracking writes the app alone in the instance label.
 */
export const TRACKING_ID_ANNOTATION = 'argocd.argoproj.io/tracking-id';
export const INSTANCE_LABEL = 'app.kubernetes.io/instance';

/**
 * The app's name in Argo CD's tracking (`Application.InstanceName`): its name in
 * Argo CD's own namespace, `<namespace>_<name>` in any other.
 */
export function trackingName(app: AppRef, argocdNamespace: string): string {
  return app.namespace === argocdNamespace ? app.name : `${app.namespace}_${app.name}`;
}

export interface TrackingId {
  app: string;
  group: string;
  kind: string;
  namespace: string;
  name: string;
}

/** A tracking id as Argo CD's ParseAppInstanceValue reads it; undefined when it is not one. */
export function parseTrackingId(value: string): TrackingId | undefined {
  const [app, groupKind, namespaceName, ...rest] = value.split(':');
  if (rest.length > 0 || app === undefined || groupKind === undefined || namespaceName === undefined) return undefined;
  const [group, kind, ...g] = groupKind.split('/');
  const [namespace, name, ...n] = namespaceName.split('/');
  if (g.length > 0 || n.length > 0 || kind === undefined || name === undefined) return undefined;
  return { app, group: group!, kind, namespace: namespace!, name };
}

/**
 * Whether Argo CD manages this Deployment for the app (`instance`: trackingName).
 * By its tracking id when it has one, which must also name this very object, as
 * Argo CD's isSelfReferencedObj requires (an annotation copied onto another
 * object does not make it the app's); by the instance label only when it has
 * none (label tracking, the default before 3.0). Pure.
 */
export function managedBy(workload: { metadata?: V1ObjectMeta }, instance: string, kind: 'Deployment' | 'StatefulSet' = 'Deployment'): boolean {
  const metadata = workload.metadata ?? {};
  const id = metadata.annotations?.[TRACKING_ID_ANNOTATION];
  if (id !== undefined) {
    const tracked = parseTrackingId(id);
    return tracked !== undefined && tracked.app === instance && tracked.group === 'apps' && tracked.kind === kind
      && tracked.namespace === metadata.namespace && tracked.name === metadata.name;
  }
  return metadata.labels?.[INSTANCE_LABEL] === instance;
}

/**
 * Where the app's Deployments may be: its destination namespace, and the
 * namespaces its status names for Deployments (a manifest may set its own).
 * Only where to look: what is found there counts only if Argo CD's tracking says
 * it is the app's, so a status naming other namespaces adds no Deployment. Pure.
 */
export function namespacesOf(app: ApplicationView, kinds: readonly string[] = ['Deployment']): string[] {
  const named = app.resources.filter((r) => kinds.includes(r.kind) && r.group === 'apps' && r.namespace).map((r) => r.namespace!);
  return [...new Set([...(app.destinationNamespace ? [app.destinationNamespace] : []), ...named])].sort();
}
