// The fault harness: real components started PRIVATELY for one test file, which
// the test may then stop, pause (SIGSTOP) and restart in place (same data dir,
// same port, so every client's configured endpoint stays right), and outage
// windows of the GitHub simulator (5xx, hangs, resets). The harness only ever
// acts on what it started itself: the shared stack of the e2e global setup is
// used by other files at the same time and is never touched from here.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GitHubSim } from '../../../dev/github-sim/index.ts';
import { startElasticsearch } from '../../../dev/stack/elasticsearch.ts';
import { startEtcd } from '../../../dev/stack/etcd.ts';
import { startJaeger } from '../../../dev/stack/jaeger.ts';
import type { StackEndpoints } from '../../../dev/stack/index.ts';
import { startKube } from '../../../dev/stack/kube.ts';
import { startNats } from '../../../dev/stack/nats.ts';
import type { ManagedProcess } from '../../../dev/stack/process.ts';
import { startPrometheus, type Sample } from '../../../dev/stack/prometheus.ts';
import { installCrds } from './kube.ts';

export type ComponentName = 'etcd' | 'kube-apiserver' | 'NATS' | 'Prometheus' | 'Elasticsearch' | 'Jaeger';
export type OutageMode = 'stop' | 'pause';

/** One real server this test file started, and what may be done to it. */
export class Component {
  readonly name: ComponentName;
  private readonly process: ManagedProcess;
  private down?: OutageMode;

  constructor(name: ComponentName, process: ManagedProcess) {
    this.name = name;
    this.process = process;
  }

  /** The server's own pid (under the stack's tether). */
  serverPid(): number {
    return this.process.serverPid();
  }

  /** SIGTERM, and wait until it exited; its data dir stays. */
  async stop(): Promise<void> {
    await this.process.stop();
    this.down = 'stop';
  }

  /** SIGSTOP: the port stays open, connections stay up, nothing is answered. */
  pause(): void {
    this.process.pause();
    this.down = 'pause';
  }

  /** Back from pause() (SIGCONT) or stop() (the same command line, waited on until healthy). */
  async resume(): Promise<void> {
    if (this.down === 'pause') this.process.resume();
    else if (this.down === 'stop') await this.process.restart();
    this.down = undefined;
  }

  /** Stop and start again in place, waiting until it is healthy. */
  async restart(): Promise<void> {
    await this.process.restart();
    this.down = undefined;
  }

  isDown(): OutageMode | undefined {
    return this.down;
  }

  /** The final stop, for cleanup (a paused server is woken first). */
  async dispose(): Promise<void> {
    await this.process.stop();
  }
}

export interface OutageWindow {
  /** When the dependency was gone (epoch ms): paused, or stopped and exited. */
  readonly startedAt: number;
  /**
   * Waits out the rest of the window and brings the dependency back: `downMs`
   * it was away before the restart began (at `resumingAt`), `backAt` when it was
   * healthy again (a restart takes a while: kube-apiserver, Elasticsearch).
   */
  end(): Promise<{ downMs: number; resumingAt: number; backAt: number }>;
}

/** Takes `component` away now, for at least `windowMs` (ended by `end()`, which waits the rest of it out). */
export async function outage(component: Component, mode: OutageMode, windowMs: number): Promise<OutageWindow> {
  if (mode === 'stop') await component.stop();
  else component.pause();
  // From when it is gone: a stop drains first (kube-apiserver finishes its requests).
  const startedAt = Date.now();
  return {
    startedAt,
    async end() {
      const left = startedAt + windowMs - Date.now();
      if (left > 0) await new Promise((r) => setTimeout(r, left));
      const resumingAt = Date.now();
      await component.resume();
      return { downMs: resumingAt - startedAt, resumingAt, backAt: Date.now() };
    },
  };
}

export type GitHubFault = '5xx' | 'timeout' | 'reset';

/**
 * The GitHub simulator fails every request to `routes` (every API route when
 * absent) for `windowMs`: `5xx` answers 502, `timeout` holds the connection
 * until the window ends, `reset` drops it at once. With `afterEffect`, a write
 * still lands and only its answer is lost.
 */
export function githubOutage(github: GitHubSim, fault: GitHubFault, windowMs: number, options: { routes?: string[]; afterEffect?: boolean } = {}): { startedAt: number; until: number; over(): Promise<void> } {
  const startedAt = Date.now();
  const until = startedAt + windowMs;
  for (const route of options.routes ?? ['*']) {
    github.control.fail({
      route, until, ...(options.afterEffect ? { afterEffect: true } : {}),
      ...(fault === '5xx' ? { status: 502 } : { connection: fault === 'timeout' ? 'hang' : 'reset' }),
    });
  }
  return { startedAt, until, over: () => new Promise((r) => setTimeout(r, Math.max(0, until - Date.now()))) };
}

/** Private components for one test file; `dispose()` stops them all and removes their data. */
export class PrivateComponents {
  readonly dir = mkdtempSync(join(tmpdir(), 'ai-operator-faults-'));
  private readonly started: Component[] = [];

  constructor() {
    // Elasticsearch runs as its own user, which must be able to reach its data dir in here.
    chmodSync(this.dir, 0o711);
  }

  private track(name: ComponentName, process: ManagedProcess): Component {
    const component = new Component(name, process);
    this.started.push(component);
    return component;
  }

  async etcd(): Promise<{ endpoint: string; component: Component }> {
    const etcd = await startEtcd(this.dir, `etcd-${this.started.length}`);
    return { endpoint: etcd.endpoint, component: this.track('etcd', etcd.process) };
  }

  private subdir(name: string): string {
    const dir = join(this.dir, `${name}-${this.started.length}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  async nats(): Promise<{ url: string; component: Component }> {
    const nats = await startNats(this.subdir('nats'));
    return { url: nats.url, component: this.track('NATS', nats.process) };
  }

  async prometheus(history: Sample[] = []): Promise<{ url: string; component: Component }> {
    const prometheus = await startPrometheus(this.subdir('prometheus'), history);
    return { url: prometheus.url, component: this.track('Prometheus', prometheus.process) };
  }

  async elasticsearch(): Promise<{ url: string; component: Component }> {
    const es = await startElasticsearch(this.subdir('elasticsearch'));
    return { url: es.url, component: this.track('Elasticsearch', es.process) };
  }

  async jaeger(): Promise<{ otlp: string; query: string; component: Component }> {
    const jaeger = await startJaeger(this.subdir('jaeger'));
    return { otlp: jaeger.otlpHttp, query: jaeger.query, component: this.track('Jaeger', jaeger.process) };
  }

  /** An API server on an etcd of its own, with the CRDs installed; the stack endpoints to reach it. */
  async kube(): Promise<{ endpoints: Pick<StackEndpoints, 'kubeUrl' | 'kubeconfig' | 'kubectl'>; component: Component; storage: Component }> {
    const etcd = await startEtcd(this.dir, `etcd-kube-${this.started.length}`);
    const storage = this.track('etcd', etcd.process);
    const kube = await startKube(this.dir, etcd.endpoint);
    if (!kube.process) throw new Error('a private API server needs the local kube-apiserver (USE_EXISTING_CLUSTER is set)');
    const component = this.track('kube-apiserver', kube.process);
    const endpoints = { kubeUrl: kube.url, kubeconfig: kube.kubeconfig, kubectl: kube.kubectl };
    await installCrds(endpoints);
    return { endpoints, component, storage };
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.started.splice(0).reverse().map((c) => c.dispose()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
