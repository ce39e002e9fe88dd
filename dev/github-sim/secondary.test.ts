// GitHub's secondary rate limits in the simulator: off by default; when asked, a
// request over a limit is refused 403 with retry-after and GitHub's message (an
// answer GitHub's OpenAPI description accepts), and every answer is counted by
// status (`answers`).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGitHubSim, type GitHubSim } from './index.ts';
import { GITHUB_SECONDARY_LIMITS, SecondaryLimiter } from './secondary.ts';

describe('SecondaryLimiter', () => {
  let now = 1_000_000;
  const clock = () => now;

  it('refuses the 81st content-creating request of a minute until the first leaves the window, and counts no refused one', () => {
    const limiter = new SecondaryLimiter({ contentPerMinute: 80 }, clock);
    for (let i = 0; i < 80; i++) {
      const a = limiter.admit('bot', 'POST /repos/{owner}/{repo}/git/trees');
      expect(a.ok).toBe(true);
      if (a.ok) a.release();
      now += 100;
    }
    const refused = limiter.admit('bot', 'POST /repos/{owner}/{repo}/pulls');
    expect(refused).toEqual({ ok: false, retryAfterSeconds: 52, limit: 'content per minute' });
    // Reads are not content; another login has its own windows.
    expect(limiter.admit('bot', 'GET /repos/{owner}/{repo}/pulls').ok).toBe(true);
    expect(limiter.admit('alice', 'POST /repos/{owner}/{repo}/pulls').ok).toBe(true);
    now += 52_000;
    expect(limiter.admit('bot', 'POST /repos/{owner}/{repo}/pulls').ok).toBe(true);
    expect(limiter.admit('bot', 'POST /repos/{owner}/{repo}/pulls').ok).toBe(false);
  });

  it('holds content per hour, points per endpoint (5 for a write) and requests in flight', () => {
    const hourly = new SecondaryLimiter({ contentPerHour: 2 }, clock);
    expect([1, 2, 3].map(() => hourly.admit('bot', 'DELETE /x').ok)).toEqual([true, true, false]);
    now += 3_599_000;
    expect(hourly.admit('bot', 'PUT /x')).toMatchObject({ ok: false, retryAfterSeconds: 1 });
    now += 1000;
    expect(hourly.admit('bot', 'PUT /x').ok).toBe(true);

    const points = new SecondaryLimiter({ pointsPerMinute: 11 }, clock);
    expect(points.admit('bot', 'POST /a').ok).toBe(true);
    expect(points.admit('bot', 'POST /a').ok).toBe(true);
    expect(points.admit('bot', 'POST /a')).toMatchObject({ ok: false, limit: 'points per minute' });
    // An endpoint is a method and a route: its reads have their own window, a point each.
    expect(Array.from({ length: 12 }, () => points.admit('bot', 'GET /a').ok).filter(Boolean)).toHaveLength(11);
    expect(points.admit('bot', 'GET /b').ok).toBe(true);

    const flight = new SecondaryLimiter({ concurrency: 2 }, clock);
    const first = flight.admit('bot', 'GET /a');
    expect(flight.admit('bot', 'GET /a').ok).toBe(true);
    expect(flight.admit('bot', 'GET /a')).toMatchObject({ ok: false, limit: 'concurrency' });
    if (first.ok) first.release();
    expect(flight.admit('bot', 'GET /a').ok).toBe(true);
  });

  it('is off without limits', () => {
    expect(new SecondaryLimiter().enabled).toBe(false);
    expect(new SecondaryLimiter(GITHUB_SECONDARY_LIMITS).enabled).toBe(true);
  });
});

describe('the simulator with secondary limits', () => {
  let sim: GitHubSim;
  let token: string;
  const repo = { owner: 'acme', repo: 'limits' };
  beforeAll(async () => {
    sim = await startGitHubSim({ validate: true });
    ({ token } = sim.control.addUser({ login: 'bot' }));
    await sim.control.createRepo({ ...repo, files: { 'a.txt': 'a\n' } });
  });
  beforeEach(() => {
    sim.control.setSecondaryLimits({});
    sim.control.resetAnswers();
  });
  afterAll(async () => {
    expect(sim.violations()).toEqual([]);
    await sim.stop();
  });
  const api = (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) => fetch(`${sim.url}${path}`, {
    method: init.method ?? 'GET', headers: { authorization: `token ${token}`, 'content-type': 'application/json', ...init.headers },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}), signal: AbortSignal.timeout(5000),
  });
  const blob = (i: number) => api(`/repos/${repo.owner}/${repo.repo}/git/trees`, { method: 'POST', body: { tree: [{ path: `f${i}.txt`, mode: '100644', type: 'blob', content: `file ${i}\n` }] } });

  it('counts every answer by status, 304s apart, and refuses nothing by default', async () => {
    const first = await api(`/repos/${repo.owner}/${repo.repo}`);
    const again = await api(`/repos/${repo.owner}/${repo.repo}`, { headers: { 'if-none-match': first.headers.get('etag')! } });
    const missing = await api(`/repos/${repo.owner}/nope`);
    expect([first.status, again.status, missing.status]).toEqual([200, 304, 404]);
    expect(sim.control.answers()).toEqual({ byStatus: { 200: 1, 304: 1, 404: 1 }, notModified: 1, secondaryRateLimited: 0 });
    sim.control.resetAnswers();
    expect(sim.control.answers()).toEqual({ byStatus: {}, notModified: 0, secondaryRateLimited: 0 });
  });

  it('answers a content-creating request over the limit 403 with retry-after and GitHub\'s message, counted', async () => {
    sim.control.setSecondaryLimits({ contentPerMinute: 2 });
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await blob(i));
    expect(answers.map((r) => r.status)).toEqual([201, 201, 403]);
    const refused = answers[2]!;
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
    expect(((await refused.json()) as { message: string }).message).toMatch(/^You have exceeded a secondary rate limit/);
    // Reads go on.
    expect((await api(`/repos/${repo.owner}/${repo.repo}`)).status).toBe(200);
    expect(sim.control.answers()).toEqual({ byStatus: { 201: 2, 403: 1, 200: 1 }, notModified: 0, secondaryRateLimited: 1 });
  });

  it('refuses requests past the concurrency limit while others are in flight', async () => {
    sim.control.setSecondaryLimits({ concurrency: 2 });
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}', latencyMs: 300, times: 3 });
    const statuses = await Promise.all([0, 1, 2].map(async (i) => {
      await new Promise((r) => setTimeout(r, i * 50));
      return (await api(`/repos/${repo.owner}/${repo.repo}`)).status;
    }));
    expect(statuses).toEqual([200, 200, 403]);
    sim.control.clearFaults();
    expect(sim.control.answers().secondaryRateLimited).toBe(1);
  });

  it('sets GitHub\'s documented numbers with `github: true`', () => {
    expect(sim.control.setSecondaryLimits({ github: true, contentPerHour: 5000 })).toEqual({ ...GITHUB_SECONDARY_LIMITS, contentPerHour: 5000 });
  });

  it('takes the limits as flags of its process (dev/github-sim/main.ts)', async () => {
    const child = spawn(process.execPath, [new URL('./main.ts', import.meta.url).pathname, '--no-validate', '--user', 'bot:tok', '--secondary-content-per-minute', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));
      const { url } = JSON.parse(line) as { url: string };
      const control = async (method: string, arg: unknown) => (await fetch(`${url}/_sim/${method}`, { method: 'POST', body: JSON.stringify(arg) })).json();
      await control('createRepo', { owner: 'acme', repo: 'flags' });
      const post = () => fetch(`${url}/repos/acme/flags/git/trees`, { method: 'POST', headers: { authorization: 'token tok' }, body: JSON.stringify({ tree: [{ path: 'x', mode: '100644', type: 'blob', content: 'x' }] }) });
      expect([(await post()).status, (await post()).status]).toEqual([201, 403]);
      expect(await control('answers', {})).toEqual({ byStatus: { 201: 1, 403: 1 }, notModified: 0, secondaryRateLimited: 1 });
    } finally {
      child.kill('SIGTERM');
    }
  });
});
