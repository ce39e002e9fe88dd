// A real redis-server on loopback, in memory only: Argo CD's cache (manifests,
// app state, cluster info), shared by the repo server and the controllers.
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import { freePort, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface RedisInstance {
  /** host:port, as Argo CD's --redis takes it. */
  address: string;
  process: ManagedProcess;
}

/** Sends PING over the inline protocol; true on +PONG. */
export function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.setTimeout(2000, () => socket.destroy(new Error('timeout')));
    socket.once('data', (data) => { socket.end(); resolve(data.toString().startsWith('+PONG')); });
    socket.once('error', reject);
  });
}

export async function startRedis(workDir: string, name = 'redis'): Promise<RedisInstance> {
  const bin = (await binaries('redis'))['redis-server']!;
  const port = await freePort();
  const dir = join(workDir, name);
  mkdirSync(dir, { recursive: true });
  const proc = spawnManaged(name, bin, [
    '--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    // A cache that may be lost: no snapshots, no append-only file.
    '--save', '', '--appendonly', 'no',
  ], join(workDir, `${name}.log`));
  await waitHealthy(proc, () => redisPing(port), 30_000);
  return { address: `127.0.0.1:${port}`, process: proc };
}
