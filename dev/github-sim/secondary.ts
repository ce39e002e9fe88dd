// GitHub's secondary rate limits ("Rate limits for the REST API"), enforced per
// login when asked (off by default, so tests keep their speed): no more than
// `concurrency` requests in flight, `pointsPerMinute` points per minute per REST
// endpoint (a GET, HEAD or OPTIONS costs 1 point, any other method 5), and no more
// than `contentPerMinute` / `contentPerHour` content-creating requests (every
// POST, PATCH, PUT and DELETE here). A request over a limit is refused with 403,
// `retry-after` (the seconds until the window lets it through) and GitHub's
// message, and does not count against the windows. Time is injected: pure.

export interface SecondaryLimits {
  /** Content-creating requests per minute (GitHub: 80). */
  contentPerMinute?: number;
  /** Content-creating requests per hour (GitHub: 500). */
  contentPerHour?: number;
  /** Points per minute per endpoint (`METHOD /template`; GitHub: 900). */
  pointsPerMinute?: number;
  /** Requests in flight at once (GitHub: 100). */
  concurrency?: number;
}

/** GitHub's documented numbers. */
export const GITHUB_SECONDARY_LIMITS: Required<SecondaryLimits> = { contentPerMinute: 80, contentPerHour: 500, pointsPerMinute: 900, concurrency: 100 };

export const SECONDARY_LIMIT_MESSAGE = 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.';

const MINUTE = 60_000;
const HOUR = 3_600_000;

/** Timestamps (ms) with a weight, oldest first. */
class Window {
  private readonly entries: Array<{ at: number; n: number }> = [];
  private readonly spanMs: number;
  constructor(spanMs: number) {
    this.spanMs = spanMs;
  }

  private prune(now: number): void {
    while (this.entries.length > 0 && this.entries[0]!.at <= now - this.spanMs) this.entries.shift();
  }

  used(now: number): number {
    this.prune(now);
    return this.entries.reduce((a, e) => a + e.n, 0);
  }

  add(now: number, n: number): void {
    this.entries.push({ at: now, n });
  }

  /** Ms from `now` until `n` more fit under `limit`. */
  waitFor(now: number, n: number, limit: number): number {
    let excess = this.used(now) + n - limit;
    if (excess <= 0) return 0;
    for (const e of this.entries) {
      excess -= e.n;
      if (excess <= 0) return e.at + this.spanMs - now;
    }
    return this.spanMs;
  }
}

interface LoginState {
  inFlight: number;
  contentMinute: Window;
  contentHour: Window;
  points: Map<string, Window>;
}

export type Admission = { ok: true; release: () => void } | { ok: false; retryAfterSeconds: number; limit: string };

export class SecondaryLimiter {
  limits: SecondaryLimits;
  private readonly logins = new Map<string, LoginState>();
  private readonly now: () => number;

  constructor(limits: SecondaryLimits = {}, now: () => number = Date.now) {
    this.limits = limits;
    this.now = now;
  }

  get enabled(): boolean {
    return Object.values(this.limits).some((v) => v !== undefined);
  }

  private state(login: string): LoginState {
    let s = this.logins.get(login);
    if (!s) this.logins.set(login, s = { inFlight: 0, contentMinute: new Window(MINUTE), contentHour: new Window(HOUR), points: new Map() });
    return s;
  }

  /** Whether a request of `login` to `route` ("METHOD /template") may run now; if so, call `release` when it is answered. */
  admit(login: string, route: string): Admission {
    const now = this.now();
    const s = this.state(login);
    const method = route.slice(0, route.indexOf(' '));
    const content = !['GET', 'HEAD', 'OPTIONS'].includes(method);
    const points = content ? 5 : 1;
    const { concurrency, pointsPerMinute, contentPerMinute, contentPerHour } = this.limits;
    const refuse = (ms: number, limit: string): Admission => ({ ok: false, retryAfterSeconds: Math.max(1, Math.ceil(ms / 1000)), limit });
    if (concurrency !== undefined && s.inFlight >= concurrency) return refuse(1000, 'concurrency');
    let window = s.points.get(route);
    if (!window) s.points.set(route, window = new Window(MINUTE));
    if (pointsPerMinute !== undefined && window.used(now) + points > pointsPerMinute) return refuse(window.waitFor(now, points, pointsPerMinute), 'points per minute');
    if (content && contentPerMinute !== undefined && s.contentMinute.used(now) + 1 > contentPerMinute) return refuse(s.contentMinute.waitFor(now, 1, contentPerMinute), 'content per minute');
    if (content && contentPerHour !== undefined && s.contentHour.used(now) + 1 > contentPerHour) return refuse(s.contentHour.waitFor(now, 1, contentPerHour), 'content per hour');
    window.add(now, points);
    if (content) {
      s.contentMinute.add(now, 1);
      s.contentHour.add(now, 1);
    }
    s.inFlight++;
    let released = false;
    return { ok: true, release: () => { if (!released) { released = true; s.inFlight--; } } };
  }

  /** Forgets every window (the limits stay). */
  reset(): void {
    this.logins.clear();
  }
}
