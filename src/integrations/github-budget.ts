// One GitHub installation's share of GitHub's secondary rate limits ("Rate limits
// for the REST API"), kept by every request the operator sends, whichever attempt
// sends it (issue 23 §3). GitHub documents: no more than 100 requests in flight;
// no more than 900 points a minute per REST endpoint (a GET, HEAD or OPTIONS costs
// 1, any other method 5); no more than 80 content-creating requests a minute and
// 500 an hour. Every POST, PATCH, PUT and DELETE is counted as content-creating
// here (GitHub does not list which are), except an App's installation-token request.
//
// - A request waits for a place in flight and for its endpoint's points; a write
//   also for a place in the minute's and the hour's windows. It waits at most
//   `maxWaitMs` (0 for a poll, which has an answer to fall back on), then is
//   refused (BudgetRefusal): the attempt waits for its next interval, a worker is
//   never held for minutes.
// - Opening a rollback PR takes several writes (tree, commit, branch, PR, labels):
//   they are set aside together by `reserve` (an opening never stops half way for
//   want of a place), in turn: production before staging, then the attempt that
//   started first. An attempt that is not admitted keeps its place in the line for
//   as long as it asks again (each interval); places set aside and not used within
//   `holdMs` are given back.
// - An answer saying a secondary limit was exceeded stops every write of the
//   installation (and every read, when a read was refused) until its retry-after
//   has passed, whichever attempt received it.
// The clock is injected; nothing here sends a request.
import type { WriteTurn } from '../ports/github.ts';

export interface GitHubLimits {
  /** Content-creating requests (POST, PATCH, PUT, DELETE) per minute: GITHUB_WRITES_PER_MINUTE, GitHub's 80. */
  writesPerMinute: number;
  /** Content-creating requests per hour: GITHUB_WRITES_PER_HOUR, GitHub's 500. */
  writesPerHour: number;
  /** Requests in flight at once, reads included: GitHub's 100. */
  maxInFlight: number;
  /** Points per minute per endpoint (`METHOD /route`): GitHub's 900. */
  pointsPerMinute: number;
}

/** GitHub's documented secondary limits (github.com; an Enterprise Server's administrator sets its own). */
export const GITHUB_LIMITS: GitHubLimits = { writesPerMinute: 80, writesPerHour: 500, maxInFlight: 100, pointsPerMinute: 900 };

export type { WriteTurn } from '../ports/github.ts';

/** What the budget says of itself (observability/metrics.ts implements it). */
export interface BudgetMetrics {
  /** How long writes waited for their place: an opening from its first ask to its admission, a single write in the queue. */
  observeGitHubWriteWait(seconds: number): void;
  /** Writes waiting for a place now (openings not yet admitted, with the writes each needs, and single writes queued). */
  setGitHubWritesQueued(writes: number): void;
  /** An answer of GitHub saying a secondary rate limit was exceeded. */
  countGitHubSecondaryRateLimit(): void;
}

/** A request the budget did not let through in time: the attempt tries again at its next interval. */
export class BudgetRefusal extends Error {
  /** When a place is expected (epoch ms); an estimate. */
  readonly retryAt: number;
  constructor(message: string, retryAt: number) {
    super(message);
    this.name = 'BudgetRefusal';
    this.retryAt = retryAt;
  }
}

export interface BudgetOptions {
  limits?: Partial<GitHubLimits>;
  now?: () => number;
  metrics?: BudgetMetrics;
  /** How long places set aside for an opening are kept for it, unused (default 1 min). */
  holdMs?: number;
  /** How long an attempt that stopped asking keeps its place in the line (default 3 min). */
  claimTtlMs?: number;
  /** How much longer than a minute (an hour) a request is counted: GitHub counts it when it arrives (default 2 s). */
  marginMs?: number;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

interface Stamp {
  at: number;
  n: number;
}

/**
 * Weighted timestamps, oldest first, within `spanMs` of now, and their sum: `used` is asked by every
 * request and, while requests wait, by each of them every 100 ms, so it is kept, not summed each time.
 */
class Window {
  private readonly stamps: Stamp[] = [];
  private total = 0;
  private readonly spanMs: number;
  constructor(spanMs: number) {
    this.spanMs = spanMs;
  }

  /** Drops what left the window by `now`. */
  private prune(now: number): void {
    while (this.stamps.length > 0 && this.stamps[0]!.at <= now - this.spanMs) this.total -= this.stamps.shift()!.n;
  }

  used(now: number): number {
    this.prune(now);
    return this.total;
  }

  add(now: number, n: number): Stamp {
    this.total += n;
    const last = this.stamps.at(-1);
    if (last && last.at === now) {
      last.n += n;
      return last;
    }
    const stamp = { at: now, n };
    this.stamps.push(stamp);
    return stamp;
  }

  /** Gives back `n` of what `stamp` counted (places set aside and not used); nothing once it left the window. */
  take(stamp: Stamp, n: number, now: number): void {
    this.prune(now);
    if (this.holds(stamp, now)) this.total -= n;
    stamp.n -= n;
  }

  /** Whether `stamp` is still counted at `now`. */
  holds(stamp: Stamp, now: number): boolean {
    return stamp.at > now - this.spanMs;
  }

  /** When `n` more fit under `limit` (epoch ms; `now` when they fit now). */
  freeAt(now: number, n: number, limit: number): number {
    let excess = this.used(now) + n - limit;
    if (excess <= 0) return now;
    for (const s of this.stamps) {
      excess -= s.n;
      if (excess <= 0) return s.at + this.spanMs;
    }
    return now + this.spanMs;
  }
}

interface Claim {
  key: string;
  writes: number;
  turn: WriteTurn;
  firstAt: number;
  lastAsked: number;
}

interface Hold {
  writes: number;
  remaining: number;
  expiresAt: number;
  minute: Stamp;
  hour: Stamp;
  opening: Stamp;
}

interface Waiter {
  write: boolean;
  route: string;
  reservation: string | undefined;
  queuedAt: number;
  admit: (release: () => void) => void;
  refuse: (error: Error) => void;
}

export interface Admission {
  write: boolean;
  /** `METHOD /route`, the endpoint whose points it spends. */
  route: string;
  /** The opening whose set-aside places this write uses, if any. */
  reservation?: string;
  /** How long it may wait for its place; refused after. */
  maxWaitMs: number;
  signal?: AbortSignal;
}

export class GitHubBudget {
  readonly limits: GitHubLimits;
  private readonly now: () => number;
  private readonly metrics: BudgetMetrics | undefined;
  private readonly holdMs: number;
  private readonly claimTtlMs: number;
  private readonly minute: Window;
  private readonly hour: Window;
  /** Openings admitted: each sends one write to each of its endpoints (trees, commits, refs, pulls, labels). */
  private readonly openings: Window;
  private readonly marginMs: number;
  private readonly points = new Map<string, Window>();
  private readonly claims = new Map<string, Claim>();
  private readonly holds = new Map<string, Hold>();
  private readonly waiters: Waiter[] = [];
  private inFlight = 0;
  private writesPausedUntil = 0;
  private readsPausedUntil = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: BudgetOptions = {}) {
    this.limits = { ...GITHUB_LIMITS, ...options.limits };
    this.now = options.now ?? Date.now;
    this.metrics = options.metrics;
    this.holdMs = options.holdMs ?? MINUTE;
    this.claimTtlMs = options.claimTtlMs ?? 3 * MINUTE;
    // A request counted here when it leaves reaches GitHub a little later: its minute there ends a little later too.
    this.marginMs = options.marginMs ?? 2000;
    this.minute = new Window(MINUTE + this.marginMs);
    this.hour = new Window(HOUR + this.marginMs);
    this.openings = new Window(MINUTE + this.marginMs);
  }

  /** Writes the minute's and the hour's windows still allow now. */
  private writesFree(now: number): number {
    return Math.min(this.limits.writesPerMinute - this.minute.used(now), this.limits.writesPerHour - this.hour.used(now));
  }

  private pointsOf(route: string): Window {
    let window = this.points.get(route);
    if (!window) this.points.set(route, window = new Window(MINUTE + this.marginMs));
    return window;
  }

  /** Claims of attempts that stopped asking, and places set aside but not used in time (given back). */
  private expire(now: number): void {
    for (const [key, claim] of this.claims) if (claim.lastAsked <= now - this.claimTtlMs) this.claims.delete(key);
    for (const [key, hold] of this.holds) {
      if (hold.expiresAt > now) continue;
      this.minute.take(hold.minute, hold.remaining, now);
      this.hour.take(hold.hour, hold.remaining, now);
      if (hold.remaining === hold.writes) this.openings.take(hold.opening, 1, now);
      this.holds.delete(key);
    }
  }

  private queued(): number {
    let n = 0;
    for (const c of this.claims.values()) n += c.writes;
    for (const w of this.waiters) if (w.write && !this.holds.has(w.reservation ?? '')) n++;
    return n;
  }

  private said(): string {
    return `${this.limits.writesPerMinute} per minute, ${this.limits.writesPerHour} per hour`;
  }

  /** Whether places are set aside for this opening now. */
  holding(key: string): boolean {
    this.expire(this.now());
    return this.holds.has(key);
  }

  /**
   * Sets `writes` places aside for the opening `key` (its PR's branch), when its turn has come and the
   * windows allow them; else keeps its place in the line and throws BudgetRefusal. Asking again while
   * places are set aside keeps them for another `holdMs`.
   */
  reserve(key: string, writes: number, turn: WriteTurn): void {
    const now = this.now();
    this.expire(now);
    const held = this.holds.get(key);
    if (held) {
      held.expiresAt = now + this.holdMs;
      return;
    }
    const known = this.claims.get(key);
    // Asking again never loses the place: the earliest start and production, once said, stand.
    const kept = known ? { production: known.turn.production || turn.production, since: Date.parse(known.turn.since) <= Date.parse(turn.since) ? known.turn.since : turn.since } : turn;
    const claim: Claim = { key, writes, turn: kept, firstAt: known?.firstAt ?? now, lastAsked: now };
    this.claims.set(key, claim);
    try {
      if (this.writesPausedUntil > now) {
        throw new BudgetRefusal(`GitHub answered that a secondary rate limit was exceeded: no write is sent until ${new Date(this.writesPausedUntil).toISOString()}`, this.writesPausedUntil);
      }
      const ordered = [...this.claims.values()].sort(byTurn);
      let ahead = 0;
      for (const c of ordered) {
        if (c === claim) break;
        ahead += c.writes;
      }
      const waitingWrites = this.waiters.filter((w) => w.write && !this.holds.has(w.reservation ?? '')).length;
      const need = waitingWrites + ahead + writes;
      // An opening writes once to each of its endpoints, 5 points each: no more openings a minute than an endpoint's points allow.
      const openingsAhead = ordered.indexOf(claim);
      const openingsFree = Math.floor(this.limits.pointsPerMinute / 5) - this.openings.used(now);
      if (need <= this.writesFree(now) && openingsAhead < openingsFree) {
        this.claims.delete(key);
        this.holds.set(key, {
          writes, remaining: writes, expiresAt: now + this.holdMs,
          minute: this.minute.add(now, writes), hour: this.hour.add(now, writes), opening: this.openings.add(now, 1),
        });
        this.metrics?.observeGitHubWriteWait((now - claim.firstAt) / 1000);
        return;
      }
      const retryAt = Math.max(this.minute.freeAt(now, need, this.limits.writesPerMinute), this.hour.freeAt(now, need, this.limits.writesPerHour));
      throw new BudgetRefusal(`GitHub's write budget of this installation (${this.said()}) is spent by earlier pull requests and writes: this one opens when its turn comes (production first, then the earliest attempt)`, retryAt);
    } finally {
      this.metrics?.setGitHubWritesQueued(this.queued());
    }
  }

  /**
   * Waits for a place for one request (in flight, its endpoint's points, and for a write without places set
   * aside, the windows'), up to `maxWaitMs`; resolves with the function to call once it is answered.
   */
  admit(request: Admission): Promise<() => void> {
    const now = this.now();
    this.expire(now);
    return new Promise<() => void>((resolve, reject) => {
      let timeout: NodeJS.Timeout | undefined;
      const onAbort = () => done(() => reject(request.signal!.reason));
      const done = (then: () => void) => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        clearTimeout(timeout);
        request.signal?.removeEventListener('abort', onAbort);
        then();
        this.metrics?.setGitHubWritesQueued(this.queued());
      };
      const waiter: Waiter = {
        write: request.write, route: request.route, reservation: request.reservation, queuedAt: now,
        admit: (release) => done(() => resolve(release)),
        refuse: (error) => done(() => reject(error)),
      };
      if (request.signal?.aborted) {
        reject(request.signal.reason);
        return;
      }
      if (this.tryAdmit(waiter, now)) return;
      if (request.maxWaitMs <= 0) {
        reject(this.refusal(waiter, now));
        return;
      }
      this.waiters.push(waiter);
      this.metrics?.setGitHubWritesQueued(this.queued());
      request.signal?.addEventListener('abort', onAbort, { once: true });
      timeout = setTimeout(() => waiter.refuse(this.refusal(waiter, this.now())), request.maxWaitMs);
      this.schedule();
    });
  }

  /**
   * Why `w` cannot go now, and when a place is expected (undefined: it can go); and the places set aside it may
   * use. Said as data: a waiter is asked every 100 ms, an Error (and its stack) is made only for a refusal.
   */
  private blocker(w: Waiter, now: number): { blocked: { why: string; retryAt: number } | undefined; hold: Hold | undefined } {
    const paused = w.write ? this.writesPausedUntil : this.readsPausedUntil;
    // Places set aside still count in the windows; set aside so long ago that they left them, they are no place at all.
    const held = w.write && w.reservation !== undefined ? this.holds.get(w.reservation) : undefined;
    const hold = held && this.minute.holds(held.minute, now) ? held : undefined;
    const blocked = ((): { why: string; retryAt: number } | undefined => {
      if (paused > now) return { why: `GitHub answered that a secondary rate limit was exceeded: no ${w.write ? 'write' : 'request'} is sent until ${new Date(paused).toISOString()}`, retryAt: paused };
      if (this.inFlight >= this.limits.maxInFlight) return { why: `${this.limits.maxInFlight} requests to GitHub are in flight already`, retryAt: now + 1000 };
      const points = this.pointsOf(w.route);
      const cost = w.write ? 5 : 1;
      if (points.used(now) + cost > this.limits.pointsPerMinute) {
        return { why: `${w.route} spent its ${this.limits.pointsPerMinute} points of the minute`, retryAt: points.freeAt(now, cost, this.limits.pointsPerMinute) };
      }
      if (!w.write || hold || this.writesFree(now) >= 1) return undefined;
      const retryAt = Math.max(this.minute.freeAt(now, 1, this.limits.writesPerMinute), this.hour.freeAt(now, 1, this.limits.writesPerHour));
      return { why: `GitHub's write budget of this installation (${this.said()}) is spent`, retryAt };
    })();
    return { blocked, hold };
  }

  private refusal(w: Waiter, now: number): BudgetRefusal {
    const blocked = this.blocker(w, now).blocked ?? { why: 'no place for this request to GitHub in time', retryAt: now + 1000 };
    return new BudgetRefusal(blocked.why, blocked.retryAt);
  }

  /** Admits `w` if everything it needs is free now. */
  private tryAdmit(w: Waiter, now: number): boolean {
    const { blocked, hold } = this.blocker(w, now);
    if (blocked) return false;
    const cost = w.write ? 5 : 1;
    const points = this.pointsOf(w.route);
    points.add(now, cost);
    if (hold) {
      // Counted from now on, when it leaves, as GitHub counts it (not from when its place was set aside).
      this.minute.take(hold.minute, 1, now);
      this.hour.take(hold.hour, 1, now);
      this.minute.add(now, 1);
      this.hour.add(now, 1);
      if (--hold.remaining <= 0) this.holds.delete(w.reservation!);
    } else if (w.write) {
      this.minute.add(now, 1);
      this.hour.add(now, 1);
      if (now > w.queuedAt) this.metrics?.observeGitHubWriteWait((now - w.queuedAt) / 1000);
    }
    this.inFlight++;
    let released = false;
    w.admit(() => {
      if (released) return;
      released = true;
      this.inFlight--;
      this.pump();
    });
    return true;
  }

  private pump(): void {
    const now = this.now();
    for (const w of [...this.waiters]) this.tryAdmit(w, now);
    this.schedule();
  }

  /** While requests wait on windows or a pause, look again shortly (a place in flight wakes them at once). */
  private schedule(): void {
    if (this.waiters.length === 0 || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, 100);
    this.timer.unref?.();
  }

  /** GitHub answered that a secondary limit was exceeded: writes (and reads, after a read) wait out its retry-after. */
  secondaryLimit(write: boolean, retryAfterMs: number): void {
    const until = this.now() + Math.max(1000, retryAfterMs);
    this.writesPausedUntil = Math.max(this.writesPausedUntil, until);
    if (!write) this.readsPausedUntil = Math.max(this.readsPausedUntil, until);
    this.metrics?.countGitHubSecondaryRateLimit();
  }

  /** What the budget holds now (tests, and the log line of a refusal). */
  snapshot(): { inFlight: number; writesLastMinute: number; writesLastHour: number; claims: string[]; holds: Record<string, number>; waiting: number } {
    const now = this.now();
    this.expire(now);
    return {
      inFlight: this.inFlight, writesLastMinute: this.minute.used(now), writesLastHour: this.hour.used(now),
      claims: [...this.claims.values()].sort(byTurn).map((c) => c.key),
      holds: Object.fromEntries([...this.holds].map(([k, h]) => [k, h.remaining])), waiting: this.waiters.length,
    };
  }
}

/** Production first, then the attempt that started first, then the first to ask. */
function byTurn(a: Claim, b: Claim): number {
  if (a.turn.production !== b.turn.production) return a.turn.production ? -1 : 1;
  const since = Date.parse(a.turn.since) - Date.parse(b.turn.since);
  if (since !== 0 && Number.isFinite(since)) return since;
  return a.firstAt - b.firstAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}
