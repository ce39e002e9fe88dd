// Child processes of the local stack: started tethered to this process, logged
// to a file, waited on until healthy, and stopped without leaving orphans.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const tether = fileURLToPath(new URL('../scripts/tether.sh', import.meta.url));

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  exited(): boolean;
  stop(): Promise<void>;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
}

const running = new Set<ManagedProcess>();

export function spawnManaged(name: string, command: string, args: string[], logFile: string, options: SpawnOptions = {}): ManagedProcess {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child: ChildProcess = spawn(tether, [String(process.pid), command, ...args], {
    env: options.env ?? process.env,
    cwd: options.cwd,
    uid: options.uid,
    gid: options.gid,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  let hasExited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { hasExited = true; resolve(); }));
  const managed: ManagedProcess = {
    name,
    pid: child.pid ?? -1,
    logFile,
    exited: () => hasExited,
    async stop() {
      running.delete(managed);
      if (!hasExited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exit;
        clearTimeout(killer);
      }
      log.end();
    },
  };
  running.add(managed);
  return managed;
}

// Last resort for a runner that exits without calling stop(): the tethers see
// the parent gone within a second, this makes it immediate.
process.once('exit', () => {
  for (const p of running) {
    try { process.kill(p.pid, 'SIGTERM'); } catch { /* already gone */ }
  }
});

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `probe` until it returns true; otherwise stops the process and fails with its log tail. */
export async function waitHealthy(proc: ManagedProcess, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  try {
    await pollHealthy(proc, probe, timeoutMs);
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

async function pollHealthy(proc: ManagedProcess, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (proc.exited()) throw new Error(`${proc.name} exited during start-up; last log lines:\n${tail(proc.logFile)}`);
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${proc.name} not healthy after ${timeoutMs / 1000}s (${lastError}); last log lines:\n${tail(proc.logFile)}`);
}

export async function httpOk(url: string, init?: RequestInit): Promise<boolean> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
  await response.arrayBuffer();
  return response.ok;
}
