// The local real stack: etcd (operator state and the apiserver's storage),
// kube-apiserver, NATS JetStream, Prometheus and Elasticsearch, all on loopback
// with temp data dirs. Components start in parallel; if one fails, every one
// already started is stopped before the error is thrown.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startElasticsearch, type ElasticsearchInstance } from './elasticsearch.ts';
import { startEtcd, type EtcdInstance } from './etcd.ts';
import { startKube, useExistingCluster, type KubeInstance } from './kube.ts';
import { startNats, type NatsInstance } from './nats.ts';
import { startPrometheus, type PrometheusInstance, type Sample } from './prometheus.ts';
import type { ManagedProcess } from './process.ts';

export type { Sample } from './prometheus.ts';

export interface StackOptions {
  /** Synthetic history backfilled into Prometheus before it starts. */
  prometheusHistory?: Sample[];
  /** host:port targets Prometheus scrapes (the operator's /metrics). */
  scrapeTargets?: string[];
  /** Keep the data dirs after stop (for post-mortems). */
  keepData?: boolean;
}

export interface Stack {
  workDir: string;
  etcd: EtcdInstance;
  kube: KubeInstance;
  nats: NatsInstance;
  prometheus: PrometheusInstance;
  elasticsearch: ElasticsearchInstance;
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
    const prometheus = startPrometheus(workDir, options.prometheusHistory, options.scrapeTargets).then(track);
    const elasticsearch = startElasticsearch(workDir).then(track);
    // Wait for every start to settle, so a failure never leaves a process still
    // starting in the background after cleanup ran.
    const results = await Promise.allSettled([etcd, kube, nats, prometheus, elasticsearch]);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) throw new Error(failures.map((f) => (f.reason as Error).message).join('\n'));
    return { workDir, etcd: await etcd, kube: await kube, nats: await nats, prometheus: await prometheus, elasticsearch: await elasticsearch, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
