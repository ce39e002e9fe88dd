// The Kubernetes client's configuration, with connections kept alive.
//
// @kubernetes/client-node 2.x gives every API request a new undici Agent
// (KubeConfig.applySecurityAuthentication → createDispatcher), so no connection
// is ever reused: each request pays a TCP and a TLS handshake, and the API server
// verifies the client certificate each time. In a burst of rollbacks that was a
// tenth of the operator's CPU. This KubeConfig hands the dispatcher the library
// built for the current cluster and credentials to the requests that follow. A
// change of TLS material starts a new one, and so does age, so certificates
// rotated in place (files, or an exec plugin's output) are read again.
import { KubeConfig, type Cluster, type RequestContext, type User } from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

export const DISPATCHER_MAX_AGE_MS = 5 * 60_000;
const RETIRE_AFTER_MS = 30_000;

/** What the library's dispatcher is built from: the same identity may share one. */
function tlsIdentity(cluster: Cluster | null, user: User | null): string {
  return JSON.stringify([
    cluster?.server, cluster?.caData, cluster?.caFile, cluster?.skipTLSVerify, cluster?.tlsServerName, cluster?.proxyUrl,
    user?.name, user?.certData, user?.certFile, user?.keyData, user?.keyFile,
  ]);
}

export class KeepAliveKubeConfig extends KubeConfig {
  #kept?: { identity: string; dispatcher: Dispatcher; until: number };
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(options: { maxAgeMs?: number; now?: () => number } = {}) {
    super();
    this.#maxAgeMs = options.maxAgeMs ?? DISPATCHER_MAX_AGE_MS;
    this.#now = options.now ?? Date.now;
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    // The library sets the headers (a fresh token each time) and builds a dispatcher;
    // building one opens nothing, so an unused one costs no connection.
    await super.applySecurityAuthentication(context);
    const built = context.getDispatcher();
    if (built === undefined) return;
    const identity = tlsIdentity(this.getCurrentCluster(), this.getCurrentUser());
    const now = this.#now();
    const kept = this.#kept;
    if (kept && kept.identity === identity && now < kept.until) {
      context.setDispatcher(kept.dispatcher);
      return;
    }
    this.#kept = { identity, dispatcher: built, until: now + this.#maxAgeMs };
    // A request handed the old one a moment ago may not have been sent yet: close it
    // later (closing lets requests in flight finish, and refuses new ones).
    if (kept) setTimeout(() => void kept.dispatcher.close().catch(() => undefined), RETIRE_AFTER_MS).unref();
  }
}
