// /readyz as a kubelet probe sees it: an answer within the probe's timeout, whatever
// a dependency does. The operator runs against a PRIVATE etcd (and, for NATS, a
// private nats-server) so that pausing or stopping it leaves the shared stack,
// which other test files use at the same time, alone.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startEtcd } from '../../dev/stack/etcd.ts';
import { startNats } from '../../dev/stack/nats.ts';
import type { ManagedProcess } from '../../dev/stack/process.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

/** A kubelet's probe: a 2 s timeout, like `timeoutSeconds: 2`. */
const PROBE_TIMEOUT_MS = 2000;

async function readyz(port: number): Promise<{ status: number; body: string; ms: number }> {
  const started = Date.now();
  const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  return { status: response.status, body: await response.text(), ms: Date.now() - started };
}

/** The real server process under the stack's tether (spawnManaged runs `tether.sh parent command…`). */
function serverPid(managed: ManagedProcess, command: string): number {
  const children = readFileSync(`/proc/${managed.pid}/task/${managed.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
  const pid = children.find((c) => readFileSync(`/proc/${c}/comm`, 'utf8').trim() === command);
  if (pid === undefined) throw new Error(`no ${command} process under ${managed.name} (pid ${managed.pid})`);
  return pid;
}

function privateDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ai-operator-${name}-`));
  stoppers.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('readiness answers within a probe timeout', () => {
  it('while etcd is paused: 503 naming etcd within 2 s, again and again, then 200 by itself once etcd resumes', async () => {
    // Given an operator whose etcd is its own, the rest on the shared stack
    const etcd = await startEtcd(privateDir('readiness-etcd'), 'readiness-etcd');
    stoppers.push(() => etcd.process.stop());
    const s = await givenRollbackScenario(stack, 'readiness', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator({ ETCD_ENDPOINTS: etcd.endpoint });
    await eventually('operator ready', async () => (await readyz(operator.httpPort).catch(() => undefined))?.status === 200, 60_000, 250)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });

    // When etcd stops answering (paused, its connections held open)
    const pid = serverPid(etcd.process, 'etcd');
    process.kill(pid, 'SIGSTOP');
    let paused = true;
    // Resume before any stop: a stopped process does not act on SIGTERM.
    stoppers.push(() => { if (paused) process.kill(pid, 'SIGCONT'); });

    // Then every probe gets a 503 that names etcd, in time, for as long as it is paused
    const answers = [];
    for (let i = 0; i < 5; i++) {
      answers.push(await readyz(operator.httpPort));
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.body).toContain('etcd: no answer within 1000 ms');
      expect(answer.ms).toBeLessThan(PROBE_TIMEOUT_MS);
    }

    // And when etcd resumes, readiness comes back without a restart
    process.kill(pid, 'SIGCONT');
    paused = false;
    const back = await eventually('ready again', async () => {
      const answer = await readyz(operator.httpPort);
      return answer.status === 200 ? answer : undefined;
    }, 30_000, 250);
    expect(back.body).toBe('ok\n');
    expect(operator.child.exitCode).toBeNull();
  }, 180_000);

  it('when NATS goes away: 503 naming NATS within 2 s', async () => {
    // Given an operator whose NATS is its own, the rest on the shared stack
    const nats = await startNats(privateDir('readiness-nats'));
    let natsRunning = true;
    stoppers.push(() => (natsRunning ? nats.process.stop() : undefined));
    const s = await givenRollbackScenario(stack, 'readiness-nats', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator({ NATS_URL: nats.url });
    await eventually('operator ready', async () => (await readyz(operator.httpPort).catch(() => undefined))?.status === 200, 60_000, 250)
      .catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });

    // When the NATS server stops
    await nats.process.stop();
    natsRunning = false;

    // Then readiness says so, in time
    const answer = await eventually('NATS reported', async () => {
      const a = await readyz(operator.httpPort);
      return a.status === 503 && a.body.includes('NATS: ') ? a : undefined;
    }, 10_000, 250).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(answer.body).toMatch(/^NATS: (disconnected from .*, reconnecting|connection closed)$/m);
    expect(answer.ms).toBeLessThan(PROBE_TIMEOUT_MS);
  }, 180_000);
});
