// Child processes of the local stack: started tethered to this process, logged
// to a file, waited on until healthy, and stopped without leaving orphans.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const tether = fileURLToPath(new URL('../scripts/tether.sh', import.meta.url));

export interface ManagedProcess {
  readonly name: string;
  /** The tether's pid (changes on restart). */
  readonly pid: number;
  readonly logFile: string;
  exited(): boolean;
  stop(): Promise<void>;
  /** The server process itself, under the tether (what pause and resume signal). */
  serverPid(): number;
  /** SIGSTOP to the server: it keeps its sockets open and answers nothing (a hung node, a partition). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  paused(): boolean;
  /**
   * Starts the same command line again after stop() — same data dir, same port —
   * and waits for the health probe it was first started with (waitHealthy).
   */
  restart(): Promise<void>;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
}

const running = new Set<ManagedProcess>();

export function spawnManaged(name: string, command: string, args: string[], logFile: string, options: SpawnOptions = {}): ManagedProcess {
  let log = createWriteStream(logFile, { flags: 'a' });
  let child: ChildProcess;
  let hasExited = false;
  let exit: Promise<void>;
  let isPaused = false;
  const launch = () => {
    // After stop() the log was closed: a restart appends to the same file.
    if (log.writableEnded) log = createWriteStream(logFile, { flags: 'a' });
    child = spawn(tether, [String(process.pid), command, ...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    hasExited = false;
    const current = child;
    exit = new Promise<void>((resolve) => current.once('exit', () => { hasExited = true; resolve(); }));
  };
  launch();
  const signalServer = (signal: NodeJS.Signals) => process.kill(managed.serverPid(), signal);
  const halt = async () => {
    if (hasExited) return;
    // A stopped process does not act on SIGTERM: wake it first.
    if (isPaused) managed.resume();
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(killer);
  };
  const managed: ManagedProcess & { probe?: { run: () => Promise<boolean>; timeoutMs: number } } = {
    name,
    get pid() { return child.pid ?? -1; },
    logFile,
    exited: () => hasExited,
    async stop() {
      running.delete(managed);
      await halt();
      log.end();
    },
    serverPid() {
      // tether.sh runs the command as its only child (besides a short `sleep 1`).
      const tetherPid = child.pid ?? -1;
      const children = readFileSync(`/proc/${tetherPid}/task/${tetherPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      const server = children.find((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'sleep';
        } catch {
          return false;
        }
      });
      if (server === undefined) throw new Error(`${name}: no server process under its tether (pid ${tetherPid})`);
      return server;
    },
    pause() {
      signalServer('SIGSTOP');
      isPaused = true;
    },
    resume() {
      signalServer('SIGCONT');
      isPaused = false;
    },
    paused: () => isPaused,
    async restart() {
      await halt();
      launch();
      running.add(managed);
      if (managed.probe) await pollHealthy(managed, managed.probe.run, managed.probe.timeoutMs);
    },
  };
  running.add(managed);
  return managed;
}

// Last resort for a runner that exits without calling stop(): the tethers see
// the parent gone within a second, this makes it immediate.
process.once('exit', () => {
  for (const p of running) {
    try {
      // A paused server would ignore its tether's SIGTERM.
      if (p.paused()) p.resume();
      process.kill(p.pid, 'SIGTERM');
    } catch { /* already gone */ }
  }
});

/**
 * Ports handed out below the kernel's ephemeral range (ip_local_port_range starts at 32768 by default): a port
 * taken from the ephemeral range and closed again can be given to any outgoing connection before the process
 * it was meant for binds it (an operator died of EADDRINUSE that way in a full run). Below the range only a
 * listener can take it; each is checked free on every address, and none is handed out twice by one process.
 */
const FREE_PORTS = { from: 20_000, to: 32_767 };
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = FREE_PORTS.from + Math.floor(Math.random() * (FREE_PORTS.to - FREE_PORTS.from + 1));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port between ${FREE_PORTS.from} and ${FREE_PORTS.to} after 200 tries`);
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
  // Kept for restart(), which waits for the same probe.
  (proc as { probe?: unknown }).probe = { run: probe, timeoutMs };
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
