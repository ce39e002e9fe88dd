// Which Applications the operator may act on at all, decided before any attempt.
// Its repository must be within GITHUB_ORG (SPEC §12), so a token that reaches
// other organisations' repositories is never used on them; and its shape must be
// one the operator reads right (one source, no hydrator), never half-understood.
import { repoFromUrl } from '../fsm/record.ts';

/** The host of a Git URL: https://h/…, ssh://git@h:22/…, git://h:9418/…, or scp-like git@h:owner/repo. */
export function gitHost(url: string): string | undefined {
  const trimmed = url.trim();
  const scp = /^[^/@:]+@([^/:]+):(?!\/)/.exec(trimmed);
  if (scp) return scp[1]!.toLowerCase();
  try {
    return new URL(trimmed).hostname.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The hosts whose repositories are the GitHub the operator talks to: github.com,
 * and GITHUB_API_URL's own host (GitHub Enterprise Server, or a simulator) —
 * `api.github.com` is github.com's API, not a host repositories live on.
 */
export function githubHosts(apiUrl: string | undefined): string[] {
  const api = apiUrl ? gitHost(apiUrl) : undefined;
  return ['github.com', ...(api && api !== 'api.github.com' ? [api] : [])];
}

/** Why no rollback PR may be opened for this source; undefined when it may. Pure. */
export function repositoryRefusal(source: { repoURL: string } | undefined, allowedOwner: string | undefined, hosts: readonly string[] = githubHosts(undefined)): string | undefined {
  if (!allowedOwner || !source) return undefined;
  const repo = repoFromUrl(source.repoURL);
  const host = gitHost(source.repoURL);
  if (!repo || !host || !hosts.includes(host)) {
    return `spec.source.repoURL ${source.repoURL} is not a GitHub repository URL (${host ? `host ${host}` : 'no host'}; the operator's GitHub is ${hosts.join(' or ')}): no rollback pull request can be opened`;
  }
  if (repo.owner.toLowerCase() !== allowedOwner.toLowerCase()) {
    return `spec.source.repoURL ${source.repoURL} is outside GITHUB_ORG ${allowedOwner}: the operator opens pull requests only on ${allowedOwner}'s repositories`;
  }
  return undefined;
}

/**
 * Why an app gets no attempt. The first two are judged from the Application alone; the last two from GitHub,
 * when the operator resolves the app's branch (modules/target-branch.ts).
 */
export type RefusalReason = 'UnsupportedShape' | 'RepositoryOutsideOrg' | 'TargetNotBranch' | 'RepositoryNotFound';

/** Why no attempt may start for this Application; undefined when one may. Pure. */
export function applicationRefusal(app: { source?: { repoURL: string }; unsupported?: string }, allowedOwner: string | undefined, hosts?: readonly string[]): { reason: RefusalReason; message: string } | undefined {
  if (app.unsupported) return { reason: 'UnsupportedShape', message: app.unsupported };
  const outside = repositoryRefusal(app.source, allowedOwner, hosts);
  return outside ? { reason: 'RepositoryOutsideOrg', message: outside } : undefined;
}
