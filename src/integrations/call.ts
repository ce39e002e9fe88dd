// Every call to an outside system goes through here (SPEC §8): a timeout, up to
// three retries with 1 s / 2 s / 4 s backoff and jitter on transient errors only
// (network, 5xx, 429 — honouring retry-after), then a typed IntegrationError.
// Non-idempotent calls pass `lookBeforeRetry`, so a retry first checks whether
// the first attempt took effect. Duration and errors are measured per call, and
// traced: one span per call (retries included) under the reconcile's span.
import { traceCall, type CallSpan } from '../observability/tracing.ts';
import { IntegrationError, isTransient, type ErrorCode } from '../ports/errors.ts';

export interface CallMetrics {
  observeCall(callName: string, seconds: number, errorCode?: ErrorCode): void;
}

/** What a client error means: its code, and how long the server asked us to wait. */
export interface Classified {
  code: ErrorCode;
  message: string;
  retryAfterMs?: number;
}

export interface CallOptions<T> {
  metrics?: CallMetrics;
  timeoutMs?: number;
  /** Delays before retry 1, 2, 3. */
  backoffMs?: readonly number[];
  classify: (error: unknown) => Classified;
  /** For non-idempotent calls: the effect of an earlier try, if it landed. */
  lookBeforeRetry?: () => Promise<T | undefined>;
  /** An error that is not retried within the call, whatever its code (a request the caller's own budget held back). */
  isFinal?: (error: unknown) => boolean;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export const DEFAULT_BACKOFF_MS = [1000, 2000, 4000] as const;

class CallTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'CallTimeout';
  }
}

function withTimeout<T>(run: (signal: AbortSignal) => Promise<T>, ms: number): Promise<T> {
  const controller = new AbortController();
  // Started before the timer: a run that throws synchronously leaves no armed timeout to reject unhandled.
  const work = run(controller.signal);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new CallTimeout(ms));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

const errorCodeOf = (error: unknown) => (error instanceof IntegrationError ? error.code : undefined);

export function call<T>(name: string, run: (signal: AbortSignal) => Promise<T>, options: CallOptions<T>): Promise<T> {
  return traceCall(name, (span) => tries(name, run, options, span), { codeOf: errorCodeOf });
}

async function tries<T>(name: string, run: (signal: AbortSignal) => Promise<T>, options: CallOptions<T>, span: CallSpan): Promise<T> {
  const backoff = options.backoffMs ?? DEFAULT_BACKOFF_MS;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = options.random ?? Math.random;
  const timeoutMs = options.timeoutMs ?? 15_000;
  for (let attempt = 0; ; attempt++) {
    const started = performance.now();
    try {
      if (attempt > 0 && options.lookBeforeRetry) {
        const landed = await options.lookBeforeRetry();
        if (landed !== undefined) return landed;
      }
      const result = await withTimeout(run, timeoutMs);
      options.metrics?.observeCall(name, (performance.now() - started) / 1000);
      return result;
    } catch (error) {
      const classified: Classified = error instanceof CallTimeout
        ? { code: 'TIMEOUT', message: error.message }
        : error instanceof IntegrationError ? { code: error.code, message: error.message } : options.classify(error);
      options.metrics?.observeCall(name, (performance.now() - started) / 1000, classified.code);
      if (!isTransient(classified.code) || attempt >= backoff.length || options.isFinal?.(error)) {
        throw error instanceof IntegrationError ? error : new IntegrationError(name, classified.code, classified.message, { cause: error });
      }
      // Full jitter on top of the schedule; a server's retry-after wins when longer.
      const delay = Math.max(backoff[attempt]! * (0.5 + random() / 2), classified.retryAfterMs ?? 0);
      span.event('retry', { error_code: classified.code, try: attempt + 1, delay_ms: Math.round(delay) });
      await sleep(delay);
    }
  }
}

/** A non-2xx answer of a plain fetch, carrying what classifyHttpError reads. */
export class HttpStatusError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(system: string, status: number, headers: Headers, message: string) {
    super(message);
    this.name = `${system}HttpError`;
    this.status = status;
    this.headers = Object.fromEntries(headers);
  }
}

/** The usual mapping of an HTTP status onto an error code. */
export function codeForStatus(status: number): ErrorCode {
  if (status === 401 || status === 403) return 'PERMISSION_DENIED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409 || status === 422) return 'CONFLICT';
  if (status === 429) return 'RATE_LIMITED';
  if (status === 408 || status === 504) return 'TIMEOUT';
  if (status >= 500) return 'UNAVAILABLE';
  return 'INVALID_ARGUMENT';
}

/** Classifies fetch/HTTP-client errors that carry a `status` (Octokit, client-node) or a network code. */
export function classifyHttpError(error: unknown): Classified {
  const e = error as { status?: number; code?: number | string; message?: string; response?: { headers?: Record<string, string> }; headers?: Record<string, string>; cause?: { code?: string } };
  const status = typeof e.status === 'number' ? e.status : typeof e.code === 'number' ? e.code : undefined;
  const message = e.message ?? String(error);
  if (status === undefined) {
    // No HTTP answer at all: connection refused, reset, DNS — the server is unavailable.
    return { code: 'UNAVAILABLE', message };
  }
  const headers = e.response?.headers ?? e.headers ?? {};
  const retryAfter = Number(headers['retry-after']);
  // GitHub's secondary rate limit answers 403 with retry-after or a zero remaining quota.
  const rateLimited = status === 429 || (status === 403 && (Number.isFinite(retryAfter) || headers['x-ratelimit-remaining'] === '0'));
  return {
    code: rateLimited ? 'RATE_LIMITED' : codeForStatus(status),
    message: `HTTP ${status}: ${message}`,
    ...(Number.isFinite(retryAfter) ? { retryAfterMs: retryAfter * 1000 } : {}),
  };
}
