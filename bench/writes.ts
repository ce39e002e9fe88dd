// The harness's own writes to kube-apiserver, made as a real client makes them:
// at most `concurrency` at once (a pool of workers, never one promise per app),
// each retried on what a client retries — a dropped connection, 429 (after its
// retry-after), 5xx, and a 409 conflict of a status patch — with capped
// exponential backoff, and a final error naming the app and the step.
// A create answered 409 AlreadyExists is done: an earlier try that lost its
// answer to a dropped connection had made it.

export type WriteKind = 'create' | 'patch';

export interface RetryPolicy {
  /** Tries in all, the first included. */
  tries: number;
  /** The first backoff; each retry doubles it, up to capMs. */
  baseMs: number;
  capMs: number;
  /** The longest retry-after honoured as given (a longer one waits this long). */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { tries: 10, baseMs: 250, capMs: 10_000, maxRetryAfterMs: 30_000 };

export type Verdict =
  | { kind: 'done' }
  | { kind: 'retry'; reason: string; afterMs?: number }
  | { kind: 'fail'; reason: string };

/** Node's and undici's codes of a connection that failed or was dropped under a request. */
const CONNECTION_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_SESSION_ERROR', 'ERR_HTTP2_STREAM_CANCEL', 'ERR_HTTP2_INVALID_SESSION',
]);
const CONNECTION_MESSAGES = /fetch failed|other side closed|socket hang up|ECONNRESET|closed before|GOAWAY/i;

/** The HTTP status of an answer the client turned into an error (@kubernetes/client-node's ApiException), if any. */
function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' && code >= 100 && code < 600 ? code : undefined;
}

function headerOf(error: unknown, name: string): string | undefined {
  const headers = (error as { headers?: unknown } | null)?.headers;
  if (!headers || typeof headers !== 'object') return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const entry = Object.entries(headers as Record<string, unknown>).find(([key]) => key.toLowerCase() === name);
  return entry === undefined ? undefined : String(entry[1]);
}

/** The error and its causes, outermost first (undici wraps the socket's error in `cause`). */
function chain(error: unknown): unknown[] {
  const errors: unknown[] = [];
  for (let e = error; e !== undefined && e !== null && errors.length < 8; e = (e as { cause?: unknown }).cause) errors.push(e);
  return errors;
}

/** retry-after in ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** What a client does with a failed write of this kind. */
export function verdict(error: unknown, kind: WriteKind): Verdict {
  const status = statusOf(error);
  if (status === 409) {
    if (kind === 'create') return { kind: 'done' };
    return { kind: 'retry', reason: '409 conflict' };
  }
  if (status === 429) {
    const after = retryAfterMs(headerOf(error, 'retry-after'));
    return after === undefined ? { kind: 'retry', reason: '429' } : { kind: 'retry', reason: '429', afterMs: after };
  }
  if (status !== undefined && status >= 500) {
    const after = retryAfterMs(headerOf(error, 'retry-after'));
    return after === undefined ? { kind: 'retry', reason: String(status) } : { kind: 'retry', reason: String(status), afterMs: after };
  }
  if (status !== undefined) return { kind: 'fail', reason: `HTTP ${status}` };
  for (const e of chain(error)) {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && CONNECTION_CODES.has(code)) return { kind: 'retry', reason: code };
  }
  for (const e of chain(error)) {
    const message = e instanceof Error ? e.message : String(e);
    if (CONNECTION_MESSAGES.test(message)) return { kind: 'retry', reason: message.match(CONNECTION_MESSAGES)![0].toLowerCase() };
  }
  return { kind: 'fail', reason: 'not retryable' };
}

/** The wait before retry number `retry` (1 for the first): capped exponential, with jitter in its upper half, or retry-after. */
export function backoffMs(retry: number, policy: RetryPolicy, afterMs?: number, random = Math.random): number {
  if (afterMs !== undefined) return Math.min(afterMs, policy.maxRetryAfterMs);
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** A message of one error, with its causes ("fetch failed ← other side closed"). */
export function describe(error: unknown): string {
  return chain(error).map((e) => {
    const status = statusOf(e);
    const message = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    return status === undefined ? message : `HTTP ${status}: ${message.slice(0, 200)}`;
  }).join(' ← ');
}

/** Retries by reason, and writes given up on: what a phase of the harness met. */
export class WriteStats {
  readonly retries = new Map<string, number>();
  writes = 0;

  record(reason: string): void {
    this.retries.set(reason, (this.retries.get(reason) ?? 0) + 1);
  }

  /** "3 retries (429 × 2, other side closed × 1)" or "no retries". */
  summary(): string {
    const total = [...this.retries.values()].reduce((a, b) => a + b, 0);
    if (total === 0) return `${this.writes} writes, no retries`;
    return `${this.writes} writes, ${total} retried (${[...this.retries].sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${reason} × ${n}`).join(', ')})`;
  }
}

export class WriteFailed extends Error {}

export interface WriteOptions {
  policy?: RetryPolicy;
  stats?: WriteStats;
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One write (`step` of `app`), tried until it lands, a verdict fails it, or the tries run out. */
export async function write<T>(app: string, step: string, kind: WriteKind, call: () => Promise<T>, options: WriteOptions = {}): Promise<T | undefined> {
  const policy = options.policy ?? DEFAULT_RETRY;
  const sleep = options.sleep ?? realSleep;
  if (options.stats) options.stats.writes++;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const v = verdict(error, kind);
      if (v.kind === 'done') return undefined;
      if (v.kind === 'fail') throw new WriteFailed(`${step} of ${app} failed (${v.reason}): ${describe(error)}`, { cause: error });
      if (attempt >= policy.tries) throw new WriteFailed(`${step} of ${app} failed after ${attempt} tries (last: ${v.reason}): ${describe(error)}`, { cause: error });
      options.stats?.record(v.reason);
      await sleep(backoffMs(attempt, policy, v.afterMs));
    }
  }
}

/**
 * Runs `task(i, worker)` for i in [0, count) on `concurrency` workers, each
 * taking the next index when it is done with one. The first failure stops the
 * hand-out; the tasks in flight finish, then it is thrown.
 */
export async function pool(count: number, concurrency: number, task: (i: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (id: number) => {
    while (failure === undefined && next < count) {
      const i = next++;
      try {
        await task(i, id);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, (_, id) => worker(id)));
  if (failure) throw failure.error;
}
