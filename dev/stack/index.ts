// The local real stack: etcd (operator state and the apiserver's storage),
// kube-apiserver, NATS JetStream, Prometheus and Elasticsearch, all on loopback
// with temp data dirs. Components start in parallel; if one fails, every one
// already started is stopped before the error is thrown.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startElasticsearch, type ElasticsearchInstance } from './elasticsearch.ts';
import { startEtcd, type EtcdInstance } from './etcd.ts';
import { startKube, type KubeInstance } from './kube.ts';
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
    const kubeEtcd = startEtcd(workDir, 'etcd-kube').then(track);
    const [etcd, kube, nats, prometheus, elasticsearch] = await allOrNothing([
      startEtcd(workDir, 'etcd').then(track),
      kubeEtcd.then((e) => startKube(workDir, e.endpoint)).then(track),
      startNats(workDir).then(track),
      startPrometheus(workDir, options.prometheusHistory, options.scrapeTargets).then(track),
      startElasticsearch(workDir).then(track),
    ] as const);
    return { workDir, etcd, kube, nats, prometheus, elasticsearch, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

// Like Promise.all, but waits for every start to settle so that a failure never
// leaves a process starting in the background after cleanup ran.
async function allOrNothing<T extends readonly Promise<unknown>[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(promises);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length > 0) throw new Error(failures.map((f) => (f.reason as Error).message).join('\n'));
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}
