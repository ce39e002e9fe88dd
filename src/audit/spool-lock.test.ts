// The spool's lock on a real directory: one live holder, a dead or stood-still one taken over, a lost one told;
// and the operator itself refusing a spool another live process holds, with one line and a non-zero exit.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { LOCK_FILE, SpoolInUseError, SpoolLock, lockVerdict, processStart, type LockHolder } from './spool-lock.ts';

const spool = () => mkdtempSync(join(tmpdir(), 'ai-operator-spool-lock-'));
const holderIn = (dir: string) => JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as LockHolder;
const writeHolder = (dir: string, holder: LockHolder) => writeFileSync(join(dir, LOCK_FILE), JSON.stringify(holder));
/** A pid no process has any more: a child that has exited. */
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

describe('lockVerdict', () => {
  const me = { host: 'node-a', pid: 40 };
  it('refuses a live holder on this host, takes a dead one or an earlier run of this pid, watches one on another host', () => {
    expect(lockVerdict({ host: 'node-a', pid: 41 }, me, () => true)).toBe('refuse');
    expect(lockVerdict({ host: 'node-a', pid: 41 }, me, () => false)).toBe('take');
    expect(lockVerdict({ host: 'node-a', pid: 40 }, me, () => true)).toBe('take');
    expect(lockVerdict({ host: 'node-b', pid: 41 }, me, () => true)).toBe('watch');
    expect(lockVerdict({ host: 'node-b', pid: 40 }, me, () => false)).toBe('watch');
  });
});

describe('SpoolLock', () => {
  it('is held by one live process: a second is refused with the holder named, and gets it once the first lets go', async () => {
    const dir = spool();
    const first = await SpoolLock.acquire(dir);
    expect(holderIn(dir)).toMatchObject({ host: hostname(), pid: process.pid });
    const refused = await SpoolLock.acquire(dir, { pid: process.pid + 1 }).then(() => undefined, (error: unknown) => error);
    expect(refused).toBeInstanceOf(SpoolInUseError);
    expect((refused as Error).message).toContain(`the audit spool ${dir} (AUDIT_FALLBACK_DIR) is held by another operator process, pid ${process.pid} on ${hostname()}`);
    await first.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    const second = await SpoolLock.acquire(dir, { pid: process.pid + 1 });
    expect(holderIn(dir).pid).toBe(process.pid + 1);
    await second.release();
  });

  it('takes over the lock of a process that has died on this host, and of an earlier run with its own pid', async () => {
    const dir = spool();
    writeHolder(dir, { owner: 'gone', host: hostname(), pid: deadPid(), beat: 7 });
    const taken = await SpoolLock.acquire(dir);
    expect(holderIn(dir)).toMatchObject({ host: hostname(), pid: process.pid, beat: 0 });
    expect(holderIn(dir).owner).not.toBe('gone');
    await taken.release();
    writeHolder(dir, { owner: 'earlier-run', host: hostname(), pid: process.pid, beat: 3 });
    const again = await SpoolLock.acquire(dir);
    expect(holderIn(dir).owner).not.toBe('earlier-run');
    await again.release();
  });

  it('on this host, tells the holder from another process that got its pid by the start time', async () => {
    const dir = spool();
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
    try {
      const start = processStart(other.pid!);
      expect(start).toMatch(/^\d+$/);
      writeHolder(dir, { owner: 'live', host: hostname(), pid: other.pid!, start, beat: 1 });
      await expect(SpoolLock.acquire(dir)).rejects.toThrow(SpoolInUseError);
      writeHolder(dir, { owner: 'pid-reused', host: hostname(), pid: other.pid!, start: String(Number(start) - 1), beat: 1 });
      const taken = await SpoolLock.acquire(dir);
      expect(holderIn(dir)).toMatchObject({ pid: process.pid, start: processStart(process.pid) });
      await taken.release();
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('on another host: refused while its heartbeat moves, taken over once it stood still for the stale period', async () => {
    const dir = spool();
    const live = await SpoolLock.acquire(dir, { host: 'node-a', heartbeatMs: 20 });
    const refused = await SpoolLock.acquire(dir, { host: 'node-b', staleMs: 200 }).then(() => undefined, (error: unknown) => error);
    expect((refused as Error).message).toContain('its heartbeat moved within 0.2 s');
    await live.release();

    writeHolder(dir, { owner: 'crashed-node', host: 'node-a', pid: process.pid, beat: 12 });
    const started = Date.now();
    const taken = await SpoolLock.acquire(dir, { host: 'node-b', staleMs: 200 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(holderIn(dir)).toMatchObject({ host: 'node-b' });
    await taken.release();
  });

  it('beats while held, tells onLost once when another took it, and then neither rewrites nor removes the other\'s lock', async () => {
    const dir = spool();
    const lost: LockHolder[] = [];
    const lock = await SpoolLock.acquire(dir, { heartbeatMs: 20, onLost: (holder) => lost.push(holder) });
    await new Promise((r) => setTimeout(r, 120));
    expect(holderIn(dir).beat).toBeGreaterThan(0);
    const other: LockHolder = { owner: 'other', host: 'node-z', pid: 1, beat: 0 };
    writeHolder(dir, other);
    await new Promise((r) => setTimeout(r, 120));
    expect(lost).toEqual([other]);
    expect(holderIn(dir)).toEqual(other);
    await lock.release();
    expect(holderIn(dir)).toEqual(other);
  });

  it('names a lock file it did not write instead of taking or parsing past it', async () => {
    const dir = spool();
    writeFileSync(join(dir, LOCK_FILE), 'hello');
    await expect(SpoolLock.acquire(dir)).rejects.toThrow(`${join(dir, LOCK_FILE)}: not an audit spool lock`);
  });
});

describe('the operator on a spool another live process holds', () => {
  it('stops at start-up with one line naming AUDIT_FALLBACK_DIR and the holder, and a non-zero exit', async () => {
    const dir = spool();
    const held = await SpoolLock.acquire(dir);
    const main = fileURLToPath(new URL('../main.ts', import.meta.url));
    const failure = await promisify(execFile)(process.execPath, [main], {
      // Killed before the test's own timeout: an operator left running would take the spool once this process let go.
      env: { PATH: process.env.PATH, GITHUB_ORG: 'acme', GITHUB_TOKEN: 'ghp_secret123', AUDIT_FALLBACK_DIR: dir, LOG_LEVEL: 'ERROR' }, timeout: 20_000, killSignal: 'SIGKILL',
    }).then(() => undefined, (error: { code: number; stderr: string }) => error);
    await held.release();
    expect(failure?.code).toBe(2);
    const lines = failure!.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`the audit spool ${dir} (AUDIT_FALLBACK_DIR) is held by another operator process, pid ${process.pid} on ${hostname()}`);
  }, 40_000);
});
