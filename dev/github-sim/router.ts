// Routes are named by the OpenAPI operation they implement ("METHOD /template"),
// so the validator can look the operation up and counters and fault rules use
// the names a reader finds in GitHub's documentation.
import type { Views } from './factories.ts';
import type { Principal, World } from './world.ts';

export interface RequestContext {
  world: World;
  views: Views;
  /** The request path, without the query. */
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  principal: Principal;
  /** The login the request acts as (a user, or an app's "<slug>[bot]"). */
  actor: string;
}

export interface RouteResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** `token`: a user or installation token; `app`: a GitHub App's JWT. */
export type AuthKind = 'token' | 'app';

export interface Route {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  template: string;
  auth: AuthKind;
  handle(ctx: RequestContext): Promise<RouteResult>;
}

export const routeKey = (route: Pick<Route, 'method' | 'template'>): string => `${route.method} ${route.template}`;

interface Compiled {
  route: Route;
  names: string[];
  exact: RegExp;
  /** The last parameter may hold slashes (refs like heads/feature/x sent unencoded). */
  greedy: RegExp | undefined;
}

export class Router {
  private readonly compiled: Compiled[];

  constructor(routes: Route[]) {
    this.compiled = routes.map((route) => {
      const names: string[] = [];
      const source = route.template.split('/').map((segment) => {
        const param = /^\{(\w+)\}$/.exec(segment);
        if (!param) return segment.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
        names.push(param[1]!);
        return '([^/]+)';
      }).join('/');
      // An account's or a repository's name never holds a slash: /repos/{owner}/{repo} must not swallow
      // /repos/o/r/<an unknown route> (nor /branches/feature/x, whose own greedy form comes later).
      const endsInParam = route.template.endsWith('}') && !['owner', 'repo', 'username'].includes(names.at(-1)!);
      return {
        route, names, exact: new RegExp(`^${source}$`),
        greedy: endsInParam ? new RegExp(`^${source.replace(/\(\[\^\/\]\+\)$/, '(.+)')}$`) : undefined,
      };
    });
  }

  match(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
    for (const pass of ['exact', 'greedy'] as const) {
      for (const c of this.compiled) {
        if (c.route.method !== method) continue;
        const m = (pass === 'exact' ? c.exact : c.greedy)?.exec(path);
        if (!m) continue;
        const params: Record<string, string> = {};
        c.names.forEach((name, i) => { params[name] = decodeURIComponent(m[i + 1]!); });
        return { route: c.route, params };
      }
    }
    return undefined;
  }
}
