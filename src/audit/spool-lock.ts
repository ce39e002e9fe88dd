// One process per audit spool. The spool is one hash chain: two processes
// appending to it interleave their records and break it, and two shippers move
// one checkpoint over each other. A replica's spool is its own (the chart gives
// each pod its own volume), so a second holder is a misconfiguration, refused
// at start-up with the holder named instead of corrupting the chain.
//
// The lock is a file in the spool, written whole and linked into place (link
// fails if it exists), rewritten every few seconds while held. A holder on this
// host is checked by its pid and, on Linux, that pid's start time (a pid reused
// by another process is not the holder); one on another host (a volume shared between
// nodes) is live while its heartbeat moves, and is taken over once it has not
// moved for the stale period. Comparing heartbeats, not clocks, keeps two hosts'
// clock skew out of it.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const LOCK_FILE = 'spool.lock';

export interface LockHolder {
  /** Names one holding: a process's own, never reused. */
  owner: string;
  host: string;
  pid: number;
  /** When the process started, where the system says (Linux: /proc/{pid}/stat, in clock ticks since boot). */
  start?: string;
  /** Counts the holder's rewrites: a moving count is a live holder. */
  beat: number;
}

export class SpoolInUseError extends Error {
  constructor(dir: string, holder: LockHolder, why: string) {
    super(`the audit spool ${dir} (AUDIT_FALLBACK_DIR) is held by another operator process, pid ${holder.pid} on ${holder.host} (${why}): each replica needs a spool of its own; if no such process runs, delete ${join(dir, LOCK_FILE)}`);
    this.name = 'SpoolInUseError';
  }
}

/** What to do about a lock someone holds, seen from this process. Pure. */
export function lockVerdict(held: Pick<LockHolder, 'host' | 'pid' | 'start'>, me: { host: string; pid: number }, alive: (holder: Pick<LockHolder, 'pid' | 'start'>) => boolean): 'take' | 'refuse' | 'watch' {
  if (held.host !== me.host) return 'watch';
  // Our own pid in a lock we have not written: an earlier run of this process (a container restarted in place).
  return held.pid === me.pid || !alive(held) ? 'take' : 'refuse';
}

export interface SpoolLockOptions {
  /** How often the holder rewrites the lock. */
  heartbeatMs?: number;
  /** How long another host's heartbeat must stand still before its lock is taken over. */
  staleMs?: number;
  /** Called if the lock is found taken by someone else while held: this process must stop writing. */
  onLost?: (holder: LockHolder) => void;
  host?: string;
  pid?: number;
  alive?: (holder: Pick<LockHolder, 'pid' | 'start'>) => boolean;
}

/** The process's start time, field 22 of /proc/{pid}/stat (after the command's closing parenthesis), where there is one. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function isAlive(holder: Pick<LockHolder, 'pid' | 'start'>): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    // EPERM: it exists, as another user's.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const start = holder.start === undefined ? undefined : processStart(holder.pid);
  return start === undefined || start === holder.start;
}

async function readHolder(path: string): Promise<LockHolder | undefined> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as LockHolder;
    if (typeof parsed.owner === 'string' && typeof parsed.host === 'string' && Number.isSafeInteger(parsed.pid) && Number.isSafeInteger(parsed.beat)) return parsed;
  } catch {
    // fall through: not a lock this code wrote
  }
  throw new Error(`${path}: not an audit spool lock; delete it if no operator process uses this spool`);
}

export class SpoolLock {
  readonly #path: string;
  readonly #me: LockHolder;
  readonly #timer: NodeJS.Timeout;
  readonly #onLost: SpoolLockOptions['onLost'];
  #released = false;

  /** Takes the spool's lock, waiting out a holder on another host that may have died; throws SpoolInUseError if one lives. */
  static async acquire(dir: string, options: SpoolLockOptions = {}): Promise<SpoolLock> {
    const path = join(dir, LOCK_FILE);
    const pid = options.pid ?? process.pid;
    const start = processStart(pid);
    const me: LockHolder = { owner: randomUUID(), host: options.host ?? hostname(), pid, ...(start !== undefined && { start }), beat: 0 };
    const staleMs = options.staleMs ?? 15_000;
    const heartbeatMs = options.heartbeatMs ?? 5_000;
    for (;;) {
      if (await SpoolLock.#create(path, me)) break;
      const held = await readHolder(path);
      if (held === undefined) continue;
      const verdict = lockVerdict(held, me, options.alive ?? isAlive);
      if (verdict === 'refuse') throw new SpoolInUseError(dir, held, 'it is running on this host');
      if (verdict === 'watch') {
        const later = await new Promise<LockHolder | undefined>((resolve, reject) => setTimeout(() => readHolder(path).then(resolve, reject), staleMs));
        // Gone, or another took it meanwhile: look again.
        if (later?.owner !== held.owner) continue;
        if (later.beat !== held.beat) throw new SpoolInUseError(dir, held, `its heartbeat moved within ${staleMs / 1000} s`);
        // It stood still: take it over.
      }
      await SpoolLock.#replace(path, me);
      break;
    }
    return new SpoolLock(path, me, heartbeatMs, options.onLost);
  }

  /** Writes the lock whole beside, then links it into place: false if a lock is there. */
  static async #create(path: string, me: LockHolder): Promise<boolean> {
    const tmp = `${path}.${me.owner}`;
    await writeFile(tmp, JSON.stringify(me));
    try {
      await link(tmp, path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  static async #replace(path: string, me: LockHolder): Promise<void> {
    const tmp = `${path}.${me.owner}`;
    await writeFile(tmp, JSON.stringify(me));
    await rename(tmp, path);
  }

  private constructor(path: string, me: LockHolder, heartbeatMs: number, onLost: SpoolLockOptions['onLost']) {
    this.#path = path;
    this.#me = me;
    this.#onLost = onLost;
    this.#timer = setInterval(() => void this.#beat(), heartbeatMs);
    this.#timer.unref();
  }

  /** Rewrites the lock while it is ours; tells onLost, once, if someone else's is there. */
  async #beat(): Promise<void> {
    if (this.#released) return;
    try {
      const held = await readHolder(this.#path);
      if (held && held.owner !== this.#me.owner) {
        this.#released = true;
        clearInterval(this.#timer);
        this.#onLost?.(held);
        return;
      }
      this.#me.beat++;
      await SpoolLock.#replace(this.#path, this.#me);
    } catch {
      // A read or write that failed (a full or unmounted volume) is tried at the next beat; the spool's own
      // fsync'd writes are what report the volume.
    }
  }

  /** Lets go of the lock, if it is still ours. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    const held = await readHolder(this.#path).catch(() => undefined);
    if (held?.owner === this.#me.owner) await rm(this.#path, { force: true });
  }
}
