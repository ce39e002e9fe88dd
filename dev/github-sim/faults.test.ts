// Outage windows of the simulator: every request of the window fails the chosen
// way (an answer, a reset, a hang), and the first one after it is served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitHubSim, type GitHubSim } from './index.ts';

describe('GitHub simulator outage windows', () => {
  let sim: GitHubSim;
  let token: string;
  beforeAll(async () => {
    sim = await startGitHubSim({ validate: true });
    ({ token } = sim.control.addUser({ login: 'bot' }));
  });
  afterAll(async () => {
    expect(sim.violations()).toEqual([]);
    await sim.stop();
  });
  const user = () => fetch(`${sim.url}/user`, { headers: { authorization: `token ${token}` }, signal: AbortSignal.timeout(5000) });

  it('answers the status to every request of any route until the window ends, then serves again', async () => {
    sim.control.fail({ route: '*', status: 503, until: Date.now() + 400 });
    const during = await Promise.all([user(), user(), user()]);
    expect(during.map((r) => r.status)).toEqual([503, 503, 503]);
    await new Promise((r) => setTimeout(r, 500));
    expect((await user()).status).toBe(200);
  });

  it('drops the connection without an answer (reset)', async () => {
    sim.control.fail({ route: 'GET /user', connection: 'reset', until: Date.now() + 300 });
    await expect(user()).rejects.toThrow(/fetch failed/);
    await new Promise((r) => setTimeout(r, 400));
    expect((await user()).status).toBe(200);
  });

  it('holds the connection until the window ends, then drops it (hang)', async () => {
    const started = Date.now();
    sim.control.fail({ route: 'GET /user', connection: 'hang', until: started + 600 });
    await expect(user()).rejects.toThrow(/fetch failed/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    expect((await user()).status).toBe(200);
  });
});

describe('GitHub simulator: an archived repository', () => {
  it('serves reads and answers every write 403 "Repository was archived so is read-only.", as GitHub does', async () => {
    const sim = await startGitHubSim({ validate: true });
    try {
      const { token } = sim.control.addUser({ login: 'bot' });
      await sim.control.createRepo({ owner: 'acme', repo: 'gitops', files: { 'a.txt': 'a\n' } });
      await sim.control.createBranch({ owner: 'acme', repo: 'gitops', branch: 'topic', from: 'main' });
      await sim.control.push({ owner: 'acme', repo: 'gitops', branch: 'topic', files: { 'a.txt': 'b\n' }, message: 'b' });
      const api = (method: string, path: string, body?: unknown) => fetch(`${sim.url}/repos/acme/gitops${path}`, {
        method, headers: { authorization: `token ${token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}),
      });
      const opened = await (await api('POST', '/pulls', { title: 't', head: 'topic', base: 'main' })).json() as { number: number };
      sim.control.archiveRepo({ owner: 'acme', repo: 'gitops' });
      expect(((await (await api('GET', '')).json()) as { archived: boolean }).archived).toBe(true);
      expect((await api('GET', `/pulls/${opened.number}`)).status).toBe(200);
      for (const [method, path, body] of [['PATCH', `/pulls/${opened.number}`, { state: 'closed' }], ['POST', `/issues/${opened.number}/comments`, { body: 'x' }]] as const) {
        const answer = await api(method, path, body);
        expect(answer.status, `${method} ${path}`).toBe(403);
        expect(((await answer.json()) as { message: string }).message).toBe('Repository was archived so is read-only.');
      }
      expect(sim.control.pulls({ owner: 'acme', repo: 'gitops' })[0]?.state).toBe('open');
      expect(sim.violations()).toEqual([]);
    } finally {
      await sim.stop();
    }
  });
});
