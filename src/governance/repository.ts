// Which repositories the operator may write to (SPEC §12, GITHUB_ORG): an
// Application whose source lies elsewhere is refused before any attempt, so a
// token that reaches other organisations' repositories is never used on them.
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
