// A GitHub REST API simulator for tests and the demo: real bare git repositories
// under `root` (`${root}/${owner}/${repo}.git`), the endpoints the operator uses,
// and every answer checked against GitHub's OpenAPI description. See README.md.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimControl } from './control.ts';
import { githubOpenApi } from './openapi.ts';
import { branchRoutes } from './routes/branches.ts';
import { checkRoutes } from './routes/checks.ts';
import { gitRoutes } from './routes/git.ts';
import { identityRoutes } from './routes/identity.ts';
import { pullRoutes } from './routes/pulls.ts';
import type { SecondaryLimits } from './secondary.ts';
import { SimServer } from './server.ts';
import { World } from './world.ts';

export type { Answers, CorruptRule, FaultRule } from './server.ts';
export { GITHUB_SECONDARY_LIMITS, type SecondaryLimits } from './secondary.ts';
export type { SimControl } from './control.ts';

export interface GitHubSimOptions {
  /** Where the bare repositories live; a fresh temporary directory (removed on stop) when absent. */
  root?: string;
  /** Check every answer against GitHub's OpenAPI description (tests: always). */
  validate: boolean;
  /** With `validate`: answer 500 instead of a response GitHub would not send. */
  strict?: boolean;
  /** Requests per hour per login (GitHub: 5000). */
  rateLimit?: number;
  /** GitHub's secondary limits, enforced per login; none by default (control `setSecondaryLimits` changes them). */
  secondaryLimits?: SecondaryLimits;
  /** The clock the secondary limits' windows run on (a test's fake clock); Date.now by default. */
  clock?: () => number;
  port?: number;
}

export interface GitHubSim {
  /** The API root, e.g. http://127.0.0.1:41234 — use it as GITHUB_API_URL. */
  url: string;
  root: string;
  control: SimControl;
  /** Answers GitHub would not have sent (and simulator errors); a test asserts this is empty. */
  violations(): string[];
  stop(): Promise<void>;
}

export const ALL_ROUTES = [...identityRoutes, ...gitRoutes, ...pullRoutes, ...checkRoutes, ...branchRoutes];

export async function startGitHubSim(options: GitHubSimOptions): Promise<GitHubSim> {
  const temporary = options.root === undefined;
  const root = options.root ?? await mkdtemp(join(tmpdir(), 'github-sim-'));
  const world = new World(root);
  let control: SimControl | undefined;
  const server = new SimServer(world, ALL_ROUTES, {
    ...(options.validate ? { validator: githubOpenApi() } : {}),
    strict: options.strict ?? false,
    rateLimit: options.rateLimit ?? 5000,
    ...(options.secondaryLimits ? { secondaryLimits: options.secondaryLimits } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    control: (method, name, body) => control!.dispatch(method, name, body),
  });
  control = new SimControl(server);
  const url = await server.listen(options.port ?? 0);
  return {
    url, root, control,
    violations: () => [...server.violations],
    async stop() {
      await server.close();
      world.close();
      if (temporary) await rm(root, { recursive: true, force: true });
    },
  };
}
