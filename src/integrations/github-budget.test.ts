// The installation's budget of GitHub requests on a fake clock: windows, turns,
// places set aside and given back, requests in flight, points per endpoint, and
// the pause after a secondary-rate-limit answer.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BudgetRefusal, GitHubBudget, type BudgetMetrics } from './github-budget.ts';

const T0 = Date.parse('2026-12-01T10:00:00Z');
const staging = (minutes: number) => ({ production: false, since: new Date(T0 - minutes * 60_000).toISOString() });
const production = (minutes: number) => ({ production: true, since: new Date(T0 - minutes * 60_000).toISOString() });

class RecordingMetrics implements BudgetMetrics {
  waits: number[] = [];
  queued = 0;
  secondary = 0;
  observeGitHubWriteWait(seconds: number): void { this.waits.push(seconds); }
  setGitHubWritesQueued(writes: number): void { this.queued = writes; }
  countGitHubSecondaryRateLimit(): void { this.secondary++; }
}

describe('GitHubBudget', () => {
  let metrics: RecordingMetrics;
  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
    metrics = new RecordingMetrics();
  });
  afterEach(() => { vi.useRealTimers(); });
  // No margin unless a test asks: the windows are then exactly a minute and an hour.
  const budget = (limits: ConstructorParameters<typeof GitHubBudget>[0] = {}) => new GitHubBudget({ metrics, marginMs: 0, ...limits });
  const write = (b: GitHubBudget, route = 'PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge', extra: { reservation?: string; maxWaitMs?: number } = {}) =>
    b.admit({ write: true, route, maxWaitMs: extra.maxWaitMs ?? 0, ...(extra.reservation ? { reservation: extra.reservation } : {}) });
  const read = (b: GitHubBudget, route = 'GET /repos/{owner}/{repo}/pulls', maxWaitMs = 0) => b.admit({ write: false, route, maxWaitMs });

  it('lets 80 writes through in a minute, refuses the 81st until the first leaves the window, and never counts reads', async () => {
    const b = budget();
    for (let i = 0; i < 80; i++) (await write(b, `POST /r${i % 10}`))();
    await expect(write(b)).rejects.toThrow(BudgetRefusal);
    (await read(b))();
    vi.setSystemTime(T0 + 60_001);
    (await write(b))();
    expect(b.snapshot().writesLastMinute).toBe(1);
  });

  it('holds the hour too: 500 writes, then none until the oldest is an hour old', async () => {
    const b = budget();
    for (let minute = 0; minute < 7; minute++) {
      vi.setSystemTime(T0 + minute * 61_000);
      for (let i = 0; i < (minute < 6 ? 80 : 20); i++) (await write(b, `POST /r${i % 20}`))();
    }
    expect(b.snapshot().writesLastHour).toBe(500);
    vi.setSystemTime(T0 + 30 * 60_000);
    const refused = await write(b).catch((e: BudgetRefusal) => e);
    expect(refused).toBeInstanceOf(BudgetRefusal);
    // The first 80 leave the window at T0 + 1 h.
    expect((refused as BudgetRefusal).retryAt).toBe(T0 + 3600_000);
    vi.setSystemTime(T0 + 3600_001);
    (await write(b))();
  });

  it('a write may wait for its place, up to its maxWaitMs; the wait is measured', async () => {
    const b = budget({ limits: { writesPerMinute: 1 } });
    (await write(b))();
    vi.setSystemTime(T0 + 59_000);
    const waiting = write(b, 'POST /x', { maxWaitMs: 5000 });
    await vi.advanceTimersByTimeAsync(1500);
    (await waiting)();
    expect(metrics.waits.at(-1)).toBeCloseTo(1.1, 0);
    const late = write(b, 'POST /x', { maxWaitMs: 2000 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2100);
    expect(await late).toBeInstanceOf(BudgetRefusal);
  });

  it('sets aside an opening\'s writes together, by turn: production first, then the earliest attempt', async () => {
    const b = budget({ limits: { writesPerMinute: 10 } });
    // Two staging openings ask; both fit (5 + 5).
    b.reserve('staging-old', 5, staging(10));
    b.reserve('staging-new', 5, staging(1));
    expect(b.snapshot().holds).toEqual({ 'staging-old': 5, 'staging-new': 5 });
    // The window is full: three more ask, in an order their turns do not follow.
    vi.setSystemTime(T0 + 10_000);
    expect(() => b.reserve('staging-a', 5, staging(5))).toThrow(BudgetRefusal);
    expect(() => b.reserve('staging-b', 5, staging(8))).toThrow(/turn comes/);
    expect(() => b.reserve('prod', 5, production(0))).toThrow(BudgetRefusal);
    expect(b.snapshot().claims).toEqual(['prod', 'staging-b', 'staging-a']);
    expect(metrics.queued).toBe(15);
    // The window frees (the first ten leave it): staging-a asks first, but prod and staging-b come before it.
    vi.setSystemTime(T0 + 60_001);
    expect(() => b.reserve('staging-a', 5, staging(5))).toThrow(BudgetRefusal);
    b.reserve('prod', 5, production(0));
    b.reserve('staging-b', 5, staging(8));
    expect(() => b.reserve('staging-a', 5, staging(5))).toThrow(BudgetRefusal);
    expect(metrics.waits).toEqual([0, 0, 50.001, 50.001]);
  });

  it('spends the places set aside on the opening\'s writes, and gives back those not used in time', async () => {
    const b = budget({ limits: { writesPerMinute: 6 }, holdMs: 30_000 });
    b.reserve('open-1', 5, staging(1));
    for (const route of ['POST /trees', 'POST /commits', 'POST /refs']) (await write(b, route, { reservation: 'open-1' }))();
    expect(b.snapshot()).toMatchObject({ writesLastMinute: 5, holds: { 'open-1': 2 } });
    // One place is left beside the held ones: a merge goes; the next single write does not.
    (await write(b))();
    await expect(write(b)).rejects.toThrow(BudgetRefusal);
    // Asking again while it holds them keeps them, and costs nothing more.
    b.reserve('open-1', 5, staging(1));
    expect(b.snapshot().writesLastMinute).toBe(6);
    // Unused past holdMs: the two places come back.
    vi.setSystemTime(T0 + 31_000);
    expect(b.holding('open-1')).toBe(false);
    expect(b.snapshot().writesLastMinute).toBe(4);
    (await write(b))();
  });

  it('gives back places set aside that already left the windows without counting them twice: the hour is never below what it holds', async () => {
    // Held longer than the minute lasts: by the time they are given back the minute no longer counts them.
    const b = budget({ limits: { writesPerMinute: 10, writesPerHour: 20 }, holdMs: 90_000 });
    b.reserve('open-1', 5, staging(1));
    (await write(b, 'POST /trees', { reservation: 'open-1' }))();
    expect(b.snapshot()).toMatchObject({ writesLastMinute: 5, writesLastHour: 5 });
    vi.setSystemTime(T0 + 61_000);
    expect(b.snapshot()).toMatchObject({ writesLastMinute: 0, writesLastHour: 5, holds: { 'open-1': 4 } });
    vi.setSystemTime(T0 + 91_000);
    expect(b.holding('open-1')).toBe(false);
    // The four unused places leave the hour; the one write sent stays in it. The minute stays at 0, not -4.
    expect(b.snapshot()).toMatchObject({ writesLastMinute: 0, writesLastHour: 1 });
    for (let i = 0; i < 10; i++) (await write(b))();
    await expect(write(b)).rejects.toThrow(BudgetRefusal);
  });

  it('admits no more openings a minute than an endpoint\'s points allow (each writes 5 points to each of its endpoints)', () => {
    const b = budget({ limits: { writesPerMinute: 1000, writesPerHour: 10_000, pointsPerMinute: 900 } });
    for (let i = 0; i < 180; i++) b.reserve(`open-${i}`, 5, staging(1));
    expect(() => b.reserve('open-180', 5, staging(1))).toThrow(BudgetRefusal);
    expect(b.snapshot().writesLastMinute).toBe(900);
    vi.setSystemTime(T0 + 60_001);
    b.reserve('open-180', 5, staging(1));
  });

  it('counts an opening\'s write when it leaves, not when its place was set aside, and a little past the minute', async () => {
    const b = budget({ limits: { writesPerMinute: 5 }, marginMs: 2000 });
    b.reserve('open', 5, staging(1));
    vi.setSystemTime(T0 + 30_000);
    for (const route of ['POST /trees', 'POST /commits', 'POST /refs', 'POST /pulls', 'POST /labels']) (await write(b, route, { reservation: 'open' }))();
    // Sent at T0 + 30 s: GitHub counts them until T0 + 90 s, and they are counted here until T0 + 92 s.
    vi.setSystemTime(T0 + 91_000);
    await expect(write(b)).rejects.toThrow(BudgetRefusal);
    vi.setSystemTime(T0 + 92_001);
    (await write(b))();
  });

  it('keeps an attempt\'s place when it asks again later, saying it started later', () => {
    const b = budget({ limits: { writesPerMinute: 5 } });
    b.reserve('first', 5, staging(0));
    expect(() => b.reserve('waiting', 5, staging(10))).toThrow(BudgetRefusal);
    expect(() => b.reserve('newer', 5, staging(5))).toThrow(BudgetRefusal);
    // createPullRequest asks for an opening the attempt did not set aside with the time it asks: no later in the line.
    expect(() => b.reserve('waiting', 5, staging(-1))).toThrow(BudgetRefusal);
    expect(b.snapshot().claims).toEqual(['waiting', 'newer']);
  });

  it('keeps a claim only while its attempt asks again', () => {
    const b = budget({ limits: { writesPerMinute: 5 }, claimTtlMs: 60_000 });
    b.reserve('first', 5, staging(1));
    expect(() => b.reserve('gone', 5, production(1))).toThrow(BudgetRefusal);
    vi.setSystemTime(T0 + 61_000);
    // The production attempt ended (its claim was not renewed): staging goes.
    b.reserve('next', 5, staging(0));
    expect(b.snapshot().claims).toEqual([]);
  });

  it('lets no more than maxInFlight requests out at once; a waiting one goes when one is answered', async () => {
    const b = budget({ limits: { maxInFlight: 2 } });
    const first = await read(b);
    await read(b);
    await expect(read(b)).rejects.toThrow(/2 requests to GitHub are in flight/);
    const third = read(b, 'GET /repos/{owner}/{repo}/pulls', 1000);
    first();
    (await third)();
    expect(b.snapshot().inFlight).toBe(1);
  });

  it('spends an endpoint\'s points: 1 for a read, 5 for a write, per METHOD /route', async () => {
    const b = budget({ limits: { pointsPerMinute: 10 } });
    (await write(b, 'POST /a'))();
    (await write(b, 'POST /a'))();
    await expect(write(b, 'POST /a')).rejects.toThrow(/POST \/a spent its 10 points/);
    for (let i = 0; i < 10; i++) (await read(b, 'GET /a'))();
    await expect(read(b, 'GET /a')).rejects.toThrow(BudgetRefusal);
    (await read(b, 'GET /b'))();
  });

  it('stops every write after a secondary-rate-limit answer until its retry-after has passed; a refused read stops reads too', async () => {
    const b = budget();
    b.secondaryLimit(true, 30_000);
    expect(metrics.secondary).toBe(1);
    await expect(write(b)).rejects.toThrow(/no write is sent until 2026-12-01T10:00:30/);
    expect(() => b.reserve('open', 5, production(1))).toThrow(/secondary rate limit/);
    (await read(b))();
    const waiting = write(b, 'POST /x', { maxWaitMs: 40_000 });
    await vi.advanceTimersByTimeAsync(30_100);
    (await waiting)();
    b.secondaryLimit(false, 5000);
    await expect(read(b)).rejects.toThrow(/no request is sent/);
    vi.setSystemTime(T0 + 36_000);
    (await read(b))();
  });

  it('gives up a wait when the request is aborted', async () => {
    const b = budget({ limits: { maxInFlight: 1 } });
    await read(b);
    const controller = new AbortController();
    const waiting = b.admit({ write: false, route: 'GET /x', maxWaitMs: 10_000, signal: controller.signal }).catch((e: unknown) => e);
    controller.abort(new Error('call timed out'));
    expect(await waiting).toMatchObject({ message: 'call timed out' });
    expect(b.snapshot().waiting).toBe(0);
  });
});
