// Operator processes for e2e tests (dev/fakes/operator-process.ts), each test
// isolated by its own etcd prefix, JetStream stream and subject prefix.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../../dev/stack/process.ts';
import type { StackEndpoints } from '../../../dev/stack/index.ts';

const entry = fileURLToPath(new URL('../../../dev/fakes/operator-process.ts', import.meta.url));

export interface TestEnvironment {
  prefix: string;
  stream: string;
  subjectPrefix: string;
  dir: string;
  env: Record<string, string>;
}

/**
 * What every operator process a test starts inherits from the runner: its PATH, and Node's compile cache when the
 * Makefile set one (NODE_COMPILE_CACHE): a run starts some 600 operators, and the cache saves each about a third of
 * the CPU it spends loading its modules.
 */
export function inheritedEnv(): Record<string, string> {
  const { PATH = '', NODE_COMPILE_CACHE } = process.env;
  return { PATH, ...(NODE_COMPILE_CACHE ? { NODE_COMPILE_CACHE } : {}) };
}

export function testEnvironment(stack: StackEndpoints, name: string, extra: Record<string, string> = {}): TestEnvironment {
  const id = `${name}-${Math.random().toString(36).slice(2, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), `ai-operator-${name}-`));
  const stream = `T_${id.replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}`;
  const subjectPrefix = `t-${id}`;
  return {
    prefix: `/t/${id}`, stream, subjectPrefix, dir,
    env: {
      ...inheritedEnv(), HOME: process.env.HOME ?? '/root',
      KUBECONFIG: stack.kubeconfig, ETCD_ENDPOINTS: stack.etcd, NATS_URL: stack.nats, ELASTICSEARCH_URL: stack.elasticsearch,
      ETCD_PREFIX: `/t/${id}`, AI_OPERATOR_STREAM: stream, AI_OPERATOR_SUBJECT_PREFIX: subjectPrefix,
      GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token', AUDIT_FALLBACK_DIR: join(dir, 'audit'),
      POLL_INTERVAL_SEC: '1', DEGRADATION_PERSISTENCE_CHECKS: '3', HEALTH_RESTORATION_DURATION: '3', RECOVERY_TIMEOUT: '60',
      ROLLBACK_COOLDOWN: '0', CI_WAIT_TIMEOUT: '120', MERGE_APPROVAL_TIMEOUT: '120', LEADER_ELECTION: 'true', LOG_LEVEL: 'INFO',
      RESYNC_INTERVAL_MS: '1000', ...extra,
    },
  };
}

export class OperatorProcess {
  readonly id: string;
  private child?: ChildProcess;
  private exited?: Promise<number | null>;
  private readonly env: TestEnvironment;

  constructor(env: TestEnvironment, id: string) {
    this.env = env;
    this.id = id;
  }

  async start(): Promise<void> {
    const port = await freePort();
    const log = createWriteStream(join(this.env.dir, `${this.id}.log`), { flags: 'a' });
    this.child = spawn(process.execPath, [entry], { env: { ...this.env.env, OPERATOR_ID: this.id, HTTP_PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.pipe(log);
    this.child.stderr!.pipe(log);
    this.exited = new Promise((resolve) => this.child!.once('exit', (code) => resolve(code)));
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }

  get logFile(): string {
    return join(this.env.dir, `${this.id}.log`);
  }
}

export async function eventually<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}
