// The local real stack: etcd (operator state and the apiserver's storage),
// kube-apiserver, NATS JetStream, Prometheus, Elasticsearch and Jaeger, all on loopback
// with temp data dirs. Components start in parallel; if one fails, every one
// already started is stopped before the error is thrown. With `argocd`, also
// the real GitOps loop (gitops-cluster.ts): real Argo CD on a cluster of its own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startElasticsearch, type ElasticsearchInstance } from './elasticsearch.ts';
import { startEtcd, type EtcdInstance } from './etcd.ts';
import { startGitOpsCluster, type GitOpsCluster, type GitOpsOptions } from './gitops-cluster.ts';
import { startJaeger, type JaegerInstance } from './jaeger.ts';
import { startKube, useExistingCluster, type KubeInstance } from './kube.ts';
import { startNats, type NatsInstance } from './nats.ts';
import { startPrometheus, writeFileTargets, type FileTargets, type PrometheusInstance, type Sample } from './prometheus.ts';
import type { ManagedProcess } from './process.ts';

export type { Sample } from './prometheus.ts';

export interface StackOptions {
  /** Synthetic history backfilled into Prometheus before it starts. */
  prometheusHistory?: Sample[];
  /** host:port targets Prometheus scrapes (the operator's /metrics). */
  scrapeTargets?: string[];
  /** Keep the data dirs after stop (for post-mortems). */
  keepData?: boolean;
  /** Also start real Argo CD, kube-controller-manager, kube-scheduler and KWOK (provision.sh argocd-stack). */
  argocd?: boolean | GitOpsOptions;
}

export interface Stack {
  workDir: string;
  etcd: EtcdInstance;
  kube: KubeInstance;
  nats: NatsInstance;
  prometheus: PrometheusInstance;
  elasticsearch: ElasticsearchInstance;
  /** The trace backend (OTLP/HTTP in, in-memory, query API out). */
  jaeger: JaegerInstance;
  argocd?: GitOpsCluster;
  stop(): Promise<void>;
}

/** What a test process needs to reach the stack (serialisable). */
export interface StackEndpoints {
  workDir: string;
  etcd: string;
  kubeUrl: string;
  kubeconfig: string;
  kubectl: string;
  nats: string;
  prometheus: string;
  elasticsearch: string;
  jaeger: JaegerEndpoints;
  argocd?: ArgoCdEndpoints;
}

/** Jaeger's two sides: where an operator sends spans, where a test reads traces back. */
export interface JaegerEndpoints {
  /** OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP, protobuf or JSON). */
  otlp: string;
  /** The query API: `${query}/api/traces/{traceId}`. */
  query: string;
}

/** The GitOps cluster's side of the endpoints. */
export interface ArgoCdEndpoints {
  /** Its own API server (not kubeUrl's): Applications, and the Deployments Argo CD syncs. */
  kubeUrl: string;
  kubeconfig: string;
  kubectl: string;
  /** Argo CD's namespace: the settings (argocd-cm) and the default AppProject, and Applications. */
  namespace: string;
  /** A glob (APPLICATION_NAMESPACES): Applications in a namespace matching it are reconciled too. */
  applicationNamespaces: string;
  /** The Prometheus job (the stack's Prometheus) that scrapes the shared controller's metrics every 2 s. */
  prometheusJob: string;
  /** The application controller's Prometheus endpoint (argocd_app_info). */
  metrics: string;
  persistResourceHealth: boolean;
  /** A bare repository at `${gitRoot}/a/b.git` is cloned by Argo CD as `${gitUrl}/a/b.git`. */
  gitRoot: string;
  gitUrl: string;
  /** host:port, for a private application controller (argocd.ts startApplicationController). */
  repoServer: string;
  redis: string;
  /** The KWOK node pods are scheduled onto. */
  node: string;
  startupMs: number;
}

export function endpointsOf(stack: Stack): StackEndpoints {
  return {
    workDir: stack.workDir,
    etcd: stack.etcd.endpoint,
    kubeUrl: stack.kube.url,
    kubeconfig: stack.kube.kubeconfig,
    kubectl: stack.kube.kubectl,
    nats: stack.nats.url,
    prometheus: stack.prometheus.url,
    elasticsearch: stack.elasticsearch.url,
    jaeger: { otlp: stack.jaeger.otlpHttp, query: stack.jaeger.query },
    ...(stack.argocd ? { argocd: argoCdEndpointsOf(stack.argocd) } : {}),
  };
}

function argoCdEndpointsOf(cluster: GitOpsCluster): ArgoCdEndpoints {
  return {
    kubeUrl: cluster.kube.url,
    kubeconfig: cluster.kube.kubeconfig,
    kubectl: cluster.kube.kubectl,
    namespace: cluster.controller.namespace,
    applicationNamespaces: cluster.controller.applicationNamespaces.join(','),
    prometheusJob: 'argocd',
    metrics: cluster.controller.metricsUrl,
    persistResourceHealth: cluster.controller.persistResourceHealth,
    gitRoot: cluster.git.root,
    gitUrl: cluster.git.url,
    repoServer: cluster.repoServer.address,
    redis: cluster.redis.address,
    node: cluster.kwok.node,
    startupMs: cluster.startupMs,
  };
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const workDir = mkdtempSync(join(tmpdir(), 'ai-operator-stack-'));
  const started: ManagedProcess[] = [];
  const track = <T extends { process?: ManagedProcess }>(instance: T): T => {
    if (instance.process) started.push(instance.process);
    return instance;
  };
  const stop = async () => {
    await Promise.allSettled(started.reverse().map((p) => p.stop()));
    if (!options.keepData) rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const etcd = startEtcd(workDir, 'etcd').then(track);
    const kube = (useExistingCluster() ? Promise.resolve('') : startEtcd(workDir, 'etcd-kube').then(track).then((e) => e.endpoint))
      .then((endpoint) => startKube(workDir, endpoint)).then(track);
    const nats = startNats(workDir).then(track);
    // Argo CD's own argocd_app_info, scraped every 2 s once its controller is up (its port is known only then).
    const argocdTargets: FileTargets | undefined = options.argocd ? { job: 'argocd', file: join(workDir, 'prometheus-argocd-targets.json'), interval: '2s' } : undefined;
    const prometheus = startPrometheus(workDir, options.prometheusHistory, options.scrapeTargets, undefined, argocdTargets).then(track);
    const elasticsearch = startElasticsearch(workDir).then(track);
    const jaeger = startJaeger(workDir).then(track);
    const argocd = options.argocd
      ? startGitOpsCluster(workDir, options.argocd === true ? {} : options.argocd, (p) => started.push(p))
      : Promise.resolve(undefined);
    // Wait for every start to settle, so a failure never leaves a process still
    // starting in the background after cleanup ran.
    const results = await Promise.allSettled([etcd, kube, nats, prometheus, elasticsearch, jaeger, argocd]);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) throw new Error(failures.map((f) => (f.reason as Error).message).join('\n'));
    const gitops = await argocd;
    if (gitops && argocdTargets) await writeFileTargets(argocdTargets.file, [new URL(gitops.controller.metricsUrl).host]);
    return {
      workDir, etcd: await etcd, kube: await kube, nats: await nats, prometheus: await prometheus, elasticsearch: await elasticsearch,
      jaeger: await jaeger, ...(gitops ? { argocd: gitops } : {}), stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
