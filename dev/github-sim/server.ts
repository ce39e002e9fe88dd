// The HTTP side of the simulator. Every API request goes through one pipeline:
// route → count → authenticate → secondary limits (when asked) → injected fault
// or latency → rate limit → handler → ETag / 304 → (test-only corruption) →
// OpenAPI check → answer (counted by status).
// Requests under /_sim/ are the control API and skip all of that.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, ARCHIVED_MESSAGE, DOCS_URL } from './api-error.ts';
import { actorOf, authenticate } from './auth.ts';
import { Views } from './factories.ts';
import type { OpenApiValidator } from './openapi.ts';
import { malformed, type CorruptRule, type RawBody } from './malformed.ts';
import { Router, routeKey, type Route, type RouteResult } from './router.ts';
import { SECONDARY_LIMIT_MESSAGE, SecondaryLimiter, type SecondaryLimits } from './secondary.ts';
import type { Principal, World } from './world.ts';

/** The next `times` requests to `route` ("METHOD /template") fail or slow down. */
export interface FaultRule {
  route: string;
  times?: number;
  /** Answer this status instead (5xx, 403, 422, 429, ...). */
  status?: number;
  /** With a 2xx status: answer this body without running the request — a stale read (GitHub's lists lag). */
  body?: unknown;
  message?: string;
  retryAfterSeconds?: number;
  /** Delay the answer; with `afterEffect`, after the request took effect. */
  latencyMs?: number;
  /** The request takes effect, then its answer is lost: a crash after the write. */
  afterEffect?: boolean;
  /**
   * An outage window: the rule holds for every matching request until this time
   * (epoch ms), however many come (`times` is ignored). `route` may be `*`.
   */
  until?: number;
  /** No HTTP answer: `reset` drops the connection at once, `hang` holds it until the window ends, then drops it. */
  connection?: 'reset' | 'hang';
}

/** Thrown by a request whose connection is to be dropped without an answer. */
class DroppedConnection extends Error {}

export type { CorruptRule } from './malformed.ts';

export interface ServerOptions {
  validator?: OpenApiValidator;
  /** Answer 500 (with the violation as message) instead of a response GitHub would not send. */
  strict: boolean;
  rateLimit: number;
  /** GitHub's secondary limits, enforced per login (none by default). */
  secondaryLimits?: SecondaryLimits;
  /** The clock of the secondary limits' windows (a test's fake clock); Date.now by default. */
  clock?: () => number;
  control: (method: string, name: string, body: unknown) => Promise<unknown>;
}

/** Every API answer the simulator sent, by status; the 304s and the secondary-rate-limit refusals among them. */
export interface Answers {
  byStatus: Record<string, number>;
  notModified: number;
  secondaryRateLimited: number;
}

interface Quota {
  used: number;
  resetAt: number;
}

const loginOf = (principal: Principal): string => (principal.kind === 'app' ? `app:${principal.appId}` : principal.login);

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export class SimServer {
  readonly world: World;
  readonly faults: Array<FaultRule & { remaining: number }> = [];
  readonly corruptions: Array<CorruptRule & { remaining: number }> = [];
  readonly counters = new Map<string, number>();
  readonly violations: string[] = [];
  readonly secondary: SecondaryLimiter;
  answers: Answers = { byStatus: {}, notModified: 0, secondaryRateLimited: 0 };
  private readonly quotas = new Map<string, Quota>();
  private readonly router: Router;
  private readonly options: ServerOptions;
  private server: Server | undefined;
  views: Views | undefined;

  constructor(world: World, routes: Route[], options: ServerOptions) {
    this.world = world;
    this.router = new Router(routes);
    this.options = options;
    this.secondary = new SecondaryLimiter(options.secondaryLimits ?? {}, options.clock);
    if (options.validator) {
      // A route that GitHub does not have would make every check meaningless.
      for (const route of routes) {
        if (!options.validator.hasOperation(route.method, route.template)) throw new Error(`simulator route ${routeKey(route)} is not in GitHub's API`);
      }
    }
  }

  async listen(port = 0): Promise<string> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        this.violations.push(`simulator error: ${error instanceof Error ? error.stack : String(error)}`);
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.views = new Views(this.world, url);
    return url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  }

  /** What is left of a login's hourly quota. */
  quota(login: string): { limit: number; remaining: number; used: number; reset: number } {
    const now = Date.now();
    let quota = this.quotas.get(login);
    if (!quota || quota.resetAt <= now) this.quotas.set(login, quota = { used: 0, resetAt: now + 3600_000 });
    return { limit: this.options.rateLimit, remaining: Math.max(this.options.rateLimit - quota.used, 0), used: quota.used, reset: Math.ceil(quota.resetAt / 1000) };
  }

  setUsed(login: string, used: number): void {
    this.quota(login);
    this.quotas.get(login)!.used = used;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    if (url.pathname.startsWith('/_sim/')) return this.control(method, url.pathname.slice('/_sim/'.length), raw, res);

    const match = this.router.match(method, url.pathname);
    if (!match) {
      this.countAnswer(404, undefined);
      return this.send(res, { status: 404, body: { message: 'Not Found', documentation_url: DOCS_URL } });
    }
    const key = routeKey(match.route);
    this.counters.set(key, (this.counters.get(key) ?? 0) + 1);

    let principal: Principal | undefined;
    let result: RouteResult;
    let release: (() => void) | undefined;
    try {
      principal = authenticate(this.world, req.headers.authorization, match.route.auth);
      const admitted = this.secondary.enabled ? this.secondary.admit(loginOf(principal), key) : undefined;
      if (admitted && !admitted.ok) {
        throw new ApiError(403, SECONDARY_LIMIT_MESSAGE, { headers: { 'retry-after': String(admitted.retryAfterSeconds) } });
      }
      release = admitted?.release;
      result = await this.respond(url, raw, match.route, match.params, principal);
    } catch (error) {
      if (error instanceof DroppedConnection) {
        release?.();
        res.destroy();
        return;
      }
      result = this.errorResult(error);
    } finally {
      // Answered (or about to be): no longer in flight.
      release?.();
    }
    const login = principal ? loginOf(principal) : undefined;
    this.finish(res, { method, template: match.route.template, key, login, result, ifNoneMatch: req.headers['if-none-match'] });
  }

  private async respond(url: URL, raw: string, route: Route, params: Record<string, string>, principal: Principal): Promise<RouteResult> {
    const fault = this.take(this.faults, routeKey(route));
    if (fault?.connection === 'hang' && fault.until !== undefined) await sleep(Math.max(0, fault.until - Date.now()));
    if (fault?.connection && !fault.afterEffect) throw new DroppedConnection();
    if (fault?.latencyMs && !fault.afterEffect) await sleep(fault.latencyMs);
    if (fault?.status !== undefined && fault.status < 400) return { status: fault.status, body: fault.body };
    if (fault?.status !== undefined && !fault.afterEffect) throw this.faultError(fault);
    const login = principal.kind === 'app' ? `app:${principal.appId}` : principal.login;
    if (this.quota(login).remaining === 0) {
      throw new ApiError(403, `API rate limit exceeded for ${login}.`, { headers: { 'x-ratelimit-remaining': '0' } });
    }
    // An archived repository is read-only: GitHub refuses every write to it with this 403 (comments and closes included).
    const archived = route.method !== 'GET' && params.owner && params.repo ? this.world.findRepo(params.owner, params.repo)?.archived : false;
    if (archived) throw new ApiError(403, ARCHIVED_MESSAGE);
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch (error) {
        throw new ApiError(400, `Problems parsing JSON (${error instanceof Error ? error.message : String(error)})`);
      }
    }
    const result = await route.handle({
      world: this.world, views: this.views!, path: url.pathname, params, query: url.searchParams, body, principal, actor: actorOf(this.world, principal),
    });
    // The write has landed; the client is still waiting (a test can kill it now).
    if (fault?.latencyMs && fault.afterEffect) await sleep(fault.latencyMs);
    if (fault?.connection) throw new DroppedConnection();
    if (fault?.status !== undefined) throw this.faultError(fault);
    return result;
  }

  private faultError(fault: FaultRule): ApiError {
    const headers: Record<string, string> = fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {};
    const status = fault.status!;
    const message = fault.message ?? (status === 429 || (status === 403 && fault.retryAfterSeconds !== undefined)
      ? 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.'
      : status === 403 ? 'Resource not accessible by integration' : status >= 500 ? 'Server Error' : 'Validation Failed');
    return new ApiError(status, message, { headers });
  }

  private errorResult(error: unknown): RouteResult {
    if (error instanceof ApiError) return { status: error.status, body: error.body(), headers: error.headers };
    // Not an answer GitHub gives on purpose: a simulator bug, which must fail the test.
    this.violations.push(`simulator error: ${error instanceof Error ? error.stack : String(error)}`);
    return { status: 500, body: { message: 'Server Error', documentation_url: DOCS_URL } };
  }

  private take<T extends { route: string; remaining: number; until?: number }>(rules: T[], key: string): T | undefined {
    const now = Date.now();
    // A window that has ended is gone.
    for (const ended of rules.filter((r) => r.until !== undefined && r.until <= now)) rules.splice(rules.indexOf(ended), 1);
    const rule = rules.find((r) => (r.route === key || r.route === '*') && r.remaining > 0);
    if (!rule) return undefined;
    if (rule.until !== undefined) return rule;
    rule.remaining--;
    if (rule.remaining === 0) rules.splice(rules.indexOf(rule), 1);
    return rule;
  }

  private finish(res: ServerResponse, r: { method: string; template: string; key: string; login: string | undefined; result: RouteResult; ifNoneMatch: string | undefined }): void {
    let { result } = r;
    const headers: Record<string, string> = { ...result.headers };
    if (r.method === 'GET' && result.status === 200) {
      headers.etag = `W/"${createHash('sha256').update(JSON.stringify(result.body)).digest('hex').slice(0, 40)}"`;
      // A conditional request whose answer has not changed: 304, and it costs no quota.
      if (r.ifNoneMatch === headers.etag) result = { status: 304 };
    }
    const corruption = this.take(this.corruptions, r.key);
    let raw: RawBody | undefined;
    if (corruption && result.body !== undefined) {
      const made = malformed(result.body, corruption);
      if (made.raw) raw = made.raw;
      else result = { ...result, body: made.body };
    }
    // Text is no answer of GitHub's API at all: a violation without a schema to check it against.
    if (raw) this.violations.push(`${r.method} ${r.template} → ${result.status}: ${raw.why}`);
    else if (this.options.validator) {
      const problems = this.options.validator.check({ method: r.method, template: r.template, status: result.status, body: result.body });
      if (problems.length > 0) {
        this.violations.push(...problems);
        if (this.options.strict) result = { status: 500, body: { message: `OpenAPI violation: ${problems.join('; ')}`, documentation_url: DOCS_URL } };
      }
    }
    this.countAnswer(result.status, result.body);
    if (r.login) {
      const forced = headers['x-ratelimit-remaining'];
      // Every answer costs one request of the quota, except a 304 (GitHub's rule for conditional requests).
      if (result.status !== 304 && forced === undefined) this.setUsed(r.login, this.quota(r.login).used + 1);
      const q = this.quota(r.login);
      Object.assign(headers, {
        'x-ratelimit-limit': String(q.limit), 'x-ratelimit-remaining': forced ?? String(q.remaining),
        'x-ratelimit-used': String(q.used), 'x-ratelimit-reset': String(q.reset), 'x-ratelimit-resource': 'core',
      });
    }
    this.send(res, { ...result, headers }, raw);
  }

  private countAnswer(status: number, body: unknown): void {
    const a = this.answers;
    a.byStatus[String(status)] = (a.byStatus[String(status)] ?? 0) + 1;
    if (status === 304) a.notModified++;
    const message = (body as { message?: unknown } | undefined)?.message;
    if ((status === 403 || status === 429) && typeof message === 'string' && message.includes('secondary rate limit')) a.secondaryRateLimited++;
  }

  private send(res: ServerResponse, result: RouteResult, raw?: RawBody): void {
    const headers: Record<string, string> = { 'x-github-media-type': 'github.v3; format=json', 'x-github-request-id': createHash('sha1').update(String(Math.random())).digest('hex').slice(0, 16).toUpperCase(), ...result.headers };
    if (raw) {
      res.writeHead(result.status, { ...headers, 'content-type': raw.contentType }).end(raw.text);
      return;
    }
    if (result.body === undefined) {
      res.writeHead(result.status, headers).end();
      return;
    }
    res.writeHead(result.status, { ...headers, 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(result.body));
  }

  private async control(method: string, name: string, raw: string, res: ServerResponse): Promise<void> {
    try {
      const result = await this.options.control(method, name, raw.length > 0 ? JSON.parse(raw) : undefined);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result ?? null));
    } catch (error) {
      const status = error instanceof ApiError ? error.status : 400;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: error instanceof Error ? error.message : String(error) }));
    }
  }
}
