// Which Applications the operator may act on at all, decided before any attempt.
// Its repository must be within GITHUB_ORG (SPEC §12), so a token that reaches
// other organisations' repositories is never used on them; and its shape must be
// one the operator reads right (one source, no hydrator), never half-understood.
import { repoFromUrl } from '../fsm/record.ts';

/** Why no rollback PR may be opened for this source; undefined when it may. Pure. */
export function repositoryRefusal(source: { repoURL: string } | undefined, allowedOwner: string | undefined): string | undefined {
  if (!allowedOwner || !source) return undefined;
  const repo = repoFromUrl(source.repoURL);
  if (!repo) return `spec.source.repoURL ${source.repoURL} is not a GitHub repository URL: no rollback pull request can be opened`;
  if (repo.owner.toLowerCase() !== allowedOwner.toLowerCase()) {
    return `spec.source.repoURL ${source.repoURL} is outside GITHUB_ORG ${allowedOwner}: the operator opens pull requests only on ${allowedOwner}'s repositories`;
  }
  return undefined;
}

export type RefusalReason = 'UnsupportedShape' | 'RepositoryOutsideOrg';

/** Why no attempt may start for this Application; undefined when one may. Pure. */
export function applicationRefusal(app: { source?: { repoURL: string }; unsupported?: string }, allowedOwner: string | undefined): { reason: RefusalReason; message: string } | undefined {
  if (app.unsupported) return { reason: 'UnsupportedShape', message: app.unsupported };
  const outside = repositoryRefusal(app.source, allowedOwner);
  return outside ? { reason: 'RepositoryOutsideOrg', message: outside } : undefined;
}
