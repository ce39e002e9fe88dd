// A real nats-server with JetStream on loopback, file storage in a temp dir.
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface NatsInstance {
  url: string;
  monitorUrl: string;
  process: ManagedProcess;
}

export async function startNats(workDir: string): Promise<NatsInstance> {
  const bin = (await binaries('nats'))['nats-server']!;
  const [port, monitorPort] = [await freePort(), await freePort()];
  const proc = spawnManaged('nats-server', bin, [
    '-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort),
    '-js', '-sd', join(workDir, 'jetstream'),
  ], join(workDir, 'nats.log'));
  const monitorUrl = `http://127.0.0.1:${monitorPort}`;
  await waitHealthy(proc, () => httpOk(`${monitorUrl}/healthz?js-enabled-only=true`), 30_000);
  return { url: `nats://127.0.0.1:${port}`, monitorUrl, process: proc };
}
