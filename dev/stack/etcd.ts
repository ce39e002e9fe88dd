// A real etcd 3.5 on loopback with a throw-away data dir (envtest's flags).
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface EtcdInstance {
  endpoint: string;
  process: ManagedProcess;
}

export interface EtcdStartOptions {
  /** `debug` logs every unary request it serves ("request stats", with its keys): what a test counts reads by. */
  logLevel?: 'debug' | 'info' | 'warn';
}

export async function startEtcd(workDir: string, name = 'etcd', options: EtcdStartOptions = {}): Promise<EtcdInstance> {
  const { etcd } = await binaries('etcd');
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const proc = spawnManaged(name, etcd!, [
    `--name=${name}`,
    `--data-dir=${join(workDir, name)}`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-cluster=${name}=http://127.0.0.1:${peerPort}`,
    '--unsafe-no-fsync=true',
    `--log-level=${options.logLevel ?? 'warn'}`,
  ], join(workDir, `${name}.log`));
  await waitHealthy(proc, () => httpOk(`${endpoint}/health`), 30_000);
  return { endpoint, process: proc };
}
