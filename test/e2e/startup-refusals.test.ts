// What the real operator (src/main.ts) refuses to start on, on the real stack: an audit spool another live
// operator holds (two writers would interleave one hash chain), and an HTTP port another process holds. Each
// is one line naming the setting and a non-zero exit, and the operator already running goes on untouched.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { LOCK_FILE } from '../../src/audit/spool-lock.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type OperatorHandle, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

/** The exit code of an operator that stops by itself, and what it wrote. */
async function exitOf(operator: OperatorHandle): Promise<{ code: number | null; lines: string[] }> {
  const code = operator.child.exitCode ?? await new Promise<number | null>((resolve) => operator.child.once('exit', resolve));
  return { code, lines: readFileSync(operator.log, 'utf8').trim().split('\n') };
}

describe('the operator refuses to start', () => {
  it('on a spool another live operator holds, and on an HTTP port another process holds: one line each, exit 2, the running one untouched', async () => {
    // Given an operator running, its spool locked by it
    const s = await givenRollbackScenario(stack, 'startup-refusals', { environment: 'staging', startOperator: false }, stoppers);
    const running = await s.startOperator();
    await eventually('the operator serving HTTP', async () => (await fetch(`http://127.0.0.1:${running.httpPort}/healthz`).catch(() => undefined))?.ok);
    const spool = join(s.dir, 'audit');
    expect(JSON.parse(readFileSync(join(spool, LOCK_FILE), 'utf8'))).toMatchObject({ pid: running.child.pid });

    // When a second operator is pointed at the same spool
    const second = await exitOf(await s.startOperator());
    // Then it stops at start-up with one line that names the spool and the holder
    expect(second.code).toBe(2);
    expect(second.lines).toHaveLength(1);
    expect(second.lines[0]).toContain(`the audit spool ${spool} (AUDIT_FALLBACK_DIR) is held by another operator process, pid ${running.child.pid}`);

    // When a third, on its own spool, is given the port the first serves on
    const third = await exitOf(await s.startOperator({ AUDIT_FALLBACK_DIR: join(s.dir, 'audit-third'), HTTP_PORT: String(running.httpPort) }));
    // Then it stops with one line naming HTTP_PORT, after its log's start-up lines
    expect(third.code).toBe(2);
    const notJson = third.lines.filter((line) => !line.startsWith('{'));
    expect(notJson).toEqual([`HTTP_PORT ${running.httpPort}: cannot listen: listen EADDRINUSE: address already in use 0.0.0.0:${running.httpPort}`]);

    // And the first goes on: alive, still the spool's holder, and it carries a rollback through
    expect(running.child.exitCode).toBeNull();
    expect(JSON.parse(readFileSync(join(spool, LOCK_FILE), 'utf8'))).toMatchObject({ pid: running.child.pid });
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    await s.inState('RollbackComplete', 90_000);
    expect(existsSync(join(s.dir, 'audit-third', LOCK_FILE)), 'the third left its lock; a restart on this host takes it over').toBe(true);
  }, 180_000);
});
