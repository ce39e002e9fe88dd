import { describe, expect, it, vi } from 'vitest';
import { restartDelay, superviseConsumer, type ConsumerRestartReason, type ConsumerSession, type SuperviseOptions } from './consumer-supervisor.ts';

/** A session whose loop the test ends: `die(error)` rejects it, `end()` resolves it; close() ends it too. */
function session() {
  let settle!: (error?: unknown) => void;
  const ended = new Promise<void>((resolve, reject) => {
    settle = (error) => (error === undefined ? resolve() : reject(error));
  });
  const close = vi.fn(async () => settle());
  const s: ConsumerSession = { ended, close };
  return { session: s, die: (error: unknown) => settle(error), end: () => settle(), close };
}

/** A supervisor over scripted opens: each entry is a session, or an error the open throws. */
function harness(script: Array<ReturnType<typeof session> | Error>, options: Partial<SuperviseOptions> = {}) {
  const opened: number[] = [];
  const delays: number[] = [];
  const restarts: ConsumerRestartReason[] = [];
  const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn() };
  let at = 0;
  const open = vi.fn(async () => {
    const next = script[at++];
    opened.push(at);
    if (next === undefined) return new Promise<ConsumerSession>(() => {}); // never opens: the script is over
    if (next instanceof Error) throw next;
    return next.session;
  });
  const start = () => superviseConsumer({
    name: 'ai-operator-wake', open, log, restarted: (reason) => restarts.push(reason),
    reasonOf: (error) => ((error as Error).message === 'consumer deleted' ? 'ConsumerDeleted' : 'Error'),
    backoff: { initialMs: 100, maxMs: 300 },
    sleep: async (ms) => { delays.push(ms); },
    ...options,
  });
  return { start, open, opened, delays, restarts, log };
}

describe('restartDelay', () => {
  it('starts at the initial delay, doubles, and stops at the maximum', () => {
    const backoff = { initialMs: 1000, maxMs: 30_000 };
    expect([1, 2, 3, 4, 5, 6, 7, 100].map((n) => restartDelay(n, backoff))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  });
});

describe('superviseConsumer', () => {
  it('opens the consumer again each time its loop dies, with a doubling backoff up to the maximum, counting and logging why', async () => {
    // Given a consumer whose loop will die three times in a row
    const [s1, s2, s3, s4] = [session(), session(), session(), session()];
    const h = harness([s1, s2, s3, s4]);
    await h.start();
    expect(h.opened).toHaveLength(1);

    // When its consumer is deleted on the server, then two other errors kill the next loops at once
    s1.die(new Error('consumer deleted'));
    await vi.waitFor(() => expect(h.opened).toHaveLength(2));
    s2.die(new Error('boom'));
    await vi.waitFor(() => expect(h.opened).toHaveLength(3));
    s3.die(new Error('boom again'));
    await vi.waitFor(() => expect(h.opened).toHaveLength(4));

    // Then it was opened again after 100, 200 and 300 ms (capped), each restart counted with its reason
    expect(h.delays).toEqual([100, 200, 300]);
    expect(h.restarts).toEqual(['ConsumerDeleted', 'Error', 'Error']);
    // And each death was logged with the reason and the error
    expect(h.log.warn).toHaveBeenNthCalledWith(1, 'Event consumer stopped; opening it again',
      expect.objectContaining({ durable: 'ai-operator-wake', reason: 'ConsumerDeleted', error: 'consumer deleted', retryInMs: 100 }));
    expect(h.log.warn).toHaveBeenNthCalledWith(3, 'Event consumer stopped; opening it again', expect.objectContaining({ reason: 'Error', error: 'boom again', retryInMs: 300 }));
  });

  it('calls a loop that ended by itself LoopEnded, and opens it again', async () => {
    const [s1, s2] = [session(), session()];
    const h = harness([s1, s2]);
    await h.start();
    s1.end();
    await vi.waitFor(() => expect(h.opened).toHaveLength(2));
    expect(h.restarts).toEqual(['LoopEnded']);
  });

  it('starts the backoff over after a loop that ran longer than the longest backoff', async () => {
    // Given a clock the test moves
    let now = 0;
    const [s1, s2, s3, s4] = [session(), session(), session(), session()];
    const h = harness([s1, s2, s3, s4], { now: () => now });
    await h.start();

    // When the first two loops die at once, then the third after running for a while
    s1.die(new Error('boom'));
    await vi.waitFor(() => expect(h.opened).toHaveLength(2));
    s2.die(new Error('boom'));
    await vi.waitFor(() => expect(h.opened).toHaveLength(3));
    now += 300;
    s3.die(new Error('boom'));
    await vi.waitFor(() => expect(h.opened).toHaveLength(4));

    // Then the third restart waits the initial delay again
    expect(h.delays).toEqual([100, 200, 100]);
  });

  it('tries a failed open again, the first one included, and resolves once the first open was tried', async () => {
    // Given NATS unreachable for the first two opens
    const s = session();
    const h = harness([new Error('connect ECONNREFUSED'), new Error('connect ECONNREFUSED'), s]);

    // When the consumer is started: it resolves although the first open failed
    const consumer = await h.start();

    // Then it is opened on the third try, each retry counted as OpenFailed
    await vi.waitFor(() => expect(h.opened).toHaveLength(3));
    expect(h.restarts).toEqual(['OpenFailed', 'OpenFailed']);
    expect(h.delays).toEqual([100, 200]);
    expect(h.log.info).toHaveBeenCalledWith('Event consumer open again', { durable: 'ai-operator-wake', after: 'OpenFailed' });
    await consumer.stop();
    expect(s.close).toHaveBeenCalledOnce();
  });

  it('stops for good, and says why, when opening again cannot help', async () => {
    const s1 = session();
    let closed: string | undefined;
    const h = harness([s1, session()], { hopeless: () => closed });
    await h.start();

    // When the connection is closed for good and the loop ends with it
    closed = 'the NATS connection is closed';
    s1.end();

    // Then nothing is opened again, and an error says why
    await vi.waitFor(() => expect(h.log.error).toHaveBeenCalledOnce());
    expect(h.log.error).toHaveBeenCalledWith('Event consumer stopped for good; the resync still covers every app',
      expect.objectContaining({ reason: 'LoopEnded', why: 'the NATS connection is closed' }));
    expect(h.opened).toHaveLength(1);
    expect(h.restarts).toEqual([]);
  });

  it('stop() closes the open consumer, and a stop during a backoff opens nothing more', async () => {
    // Given a supervisor whose backoff waits until it is stopped
    const s1 = session();
    const sleeping = vi.fn();
    const h = harness([s1, session()], {
      sleep: (_ms, signal) => new Promise<void>((resolve) => {
        sleeping();
        signal.addEventListener('abort', () => resolve(), { once: true });
      }),
    });
    const consumer = await h.start();

    // When the loop dies and the supervisor is stopped while it waits
    s1.die(new Error('boom'));
    await vi.waitFor(() => expect(sleeping).toHaveBeenCalledOnce());
    await consumer.stop();

    // Then it never opened again nor counted a restart
    expect(h.opened).toHaveLength(1);
    expect(h.restarts).toEqual([]);
  });

  it('stop() closes the session that is open', async () => {
    const s1 = session();
    const h = harness([s1]);
    const consumer = await h.start();
    await consumer.stop();
    expect(s1.close).toHaveBeenCalledOnce();
    expect(h.opened).toHaveLength(1);
    expect(h.restarts).toEqual([]);
  });
});
