// Keeps an event consumer running. A consumer's loop can die under it: its
// durable consumer deleted on the server, the stream gone after a server lost
// its state, an error from the client. Left alone, the operator would go on
// without wake-ups and say so once. The supervisor opens it again after a
// backoff, logs why, and counts each restart by reason; the resync still covers
// every app meanwhile, so a restart is never urgent, only never forgotten.
import type { Logger } from '../observability/log.ts';

type EventLog = Pick<Logger, 'info' | 'warn' | 'error'>;

export { CONSUMER_RESTART_REASONS, type ConsumerRestartReason } from '../api/metrics.ts';
import type { ConsumerRestartReason } from '../api/metrics.ts';

/** One open consumer: its loop, and how to close it. */
export interface ConsumerSession {
  /** Settles when the loop ends: resolves when it ended without an error (or was closed), rejects with why it died. */
  readonly ended: Promise<void>;
  close(): Promise<void>;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_RESTART_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000 };

export interface SuperviseOptions {
  /** The durable consumer's name, for the log. */
  name: string;
  open: () => Promise<ConsumerSession>;
  /** What a loop's death is called; an open that failed is always OpenFailed. */
  reasonOf: (error: unknown) => ConsumerRestartReason;
  /** Called each time the consumer is opened again. */
  restarted: (reason: ConsumerRestartReason) => void;
  log: EventLog;
  backoff?: Backoff;
  /** Why opening again cannot help now (the connection is closed for good), or undefined. */
  hopeless?: () => string | undefined;
  /** Milliseconds, to tell a loop that ran a while (the backoff starts over) from one that died at once. */
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface SupervisedConsumer {
  stop(): Promise<void>;
}

/**
 * The delay before the `failures`-th restart in a row: initialMs, doubling, at
 * most maxMs. Pure.
 */
export function restartDelay(failures: number, backoff: Backoff): number {
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
}

/**
 * Opens the consumer and keeps it open until stop(). Resolves once the first
 * open was tried: if it failed, it is tried again like a loop that died, so a
 * caller never has to retry it itself (a leader elected while NATS is down gets
 * its consumer when NATS is back).
 */
export async function superviseConsumer(options: SuperviseOptions): Promise<SupervisedConsumer> {
  const backoff = options.backoff ?? DEFAULT_RESTART_BACKOFF;
  const now = options.now ?? (() => performance.now());
  const sleep = options.sleep ?? delay;
  const stopping = new AbortController();
  let current: ConsumerSession | undefined;
  let firstTried!: () => void;
  const first = new Promise<void>((resolve) => { firstTried = resolve; });

  const run = async () => {
    let failures = 0;
    let death: { reason: ConsumerRestartReason; error: string } | undefined;
    while (!stopping.signal.aborted) {
      if (death) {
        const why = options.hopeless?.();
        if (why) {
          options.log.error('Event consumer stopped for good; the resync still covers every app', { durable: options.name, reason: death.reason, error: death.error, why });
          return;
        }
        const retryInMs = restartDelay(failures, backoff);
        options.log.warn('Event consumer stopped; opening it again', { durable: options.name, reason: death.reason, error: death.error, failures, retryInMs });
        await sleep(retryInMs, stopping.signal);
        if (stopping.signal.aborted) return;
        options.restarted(death.reason);
      }
      let session: ConsumerSession;
      try {
        session = await options.open();
      } catch (error) {
        failures++;
        death = { reason: 'OpenFailed', error: messageOf(error) };
        firstTried();
        continue;
      }
      if (death) options.log.info('Event consumer open again', { durable: options.name, after: death.reason });
      firstTried();
      if (stopping.signal.aborted) {
        await session.close();
        return;
      }
      current = session;
      const openedAt = now();
      try {
        await session.ended;
        death = { reason: 'LoopEnded', error: 'the message iterator ended' };
      } catch (error) {
        death = { reason: options.reasonOf(error), error: messageOf(error) };
      }
      current = undefined;
      // A loop that ran for longer than the longest backoff was healthy: the next restart is quick again.
      failures = now() - openedAt >= backoff.maxMs ? 1 : failures + 1;
    }
  };
  const running = run().catch((error: unknown) => {
    options.log.error('Event consumer supervisor failed', { durable: options.name, error: messageOf(error) });
  }).finally(() => firstTried());
  await first;
  return {
    stop: async () => {
      stopping.abort();
      await current?.close();
      await running;
    },
  };
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref?.();
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
