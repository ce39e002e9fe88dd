// The branch an app deploys, as Argo CD resolves spec.source.targetRevision:
// `HEAD` or empty is the repository's default branch (Argo CD follows the
// remote's HEAD), a branch name is that branch; a tag or a commit SHA pins the
// app to a commit no pull request can move, so the app is refused before any
// attempt instead of failing late on a PR against something that is not a branch.
// Read once, before the attempt starts; the attempt keeps what was resolved.
import type { RepoRef } from '../fsm/record.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { GitHubPort } from '../ports/github.ts';

export type TargetBranch =
  | { kind: 'branch'; branch: string }
  | { kind: 'refused'; reason: 'TargetNotBranch' | 'RepositoryNotFound'; message: string };

/** Argo CD's own test for a commit SHA (git.IsCommitSHA): 40 hex digits are a commit, never resolved as a ref. */
const COMMIT_SHA = /^[0-9a-f]{40}$/i;

/** `spec.source.targetRevision` as Argo CD reads it for Git: HEAD when empty, `refs/heads/x` is the branch x. */
export function targetRevisionOf(source: { targetRevision?: string }): string {
  const target = source.targetRevision?.trim() ?? '';
  return target === '' ? 'HEAD' : target.replace(/^refs\/heads\//, '');
}

/**
 * The branch the app's history is read on, its rollback PR targets and its merge is checked against; or
 * why there is none. Integration errors propagate (the caller retries): an outage is not a refusal.
 */
export async function resolveTargetBranch(github: Pick<GitHubPort, 'defaultBranch' | 'isBranch'>, repo: RepoRef, source: { repoURL: string; targetRevision?: string }): Promise<TargetBranch> {
  const target = targetRevisionOf(source);
  // A repository the operator cannot see is said as such, once, not retried as if GitHub were down.
  const defaultBranch = () => github.defaultBranch(repo).catch((error: unknown) => {
    if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
    throw error;
  });
  const missing: TargetBranch = {
    kind: 'refused', reason: 'RepositoryNotFound',
    message: `spec.source.repoURL ${source.repoURL}: repository ${repo.owner}/${repo.repo} not found on GitHub (or not readable with the operator's credentials)`,
  };
  if (target === 'HEAD') {
    const branch = await defaultBranch();
    return branch === undefined ? missing : { kind: 'branch', branch };
  }
  const refused = (what: string): TargetBranch => ({
    kind: 'refused', reason: 'TargetNotBranch',
    message: `spec.source.targetRevision ${source.targetRevision} is ${what} of ${repo.owner}/${repo.repo}, not a branch: Argo CD deploys that fixed commit, and a rollback pull request can only target a branch (track a branch, or HEAD for the default one)`,
  });
  if (COMMIT_SHA.test(target)) return refused('a commit SHA');
  if (await github.isBranch(repo, target)) return { kind: 'branch', branch: target };
  // Asked only now: a missing repository answers 404 to the branch too, and "not found" says more than "not a branch".
  return (await defaultBranch()) === undefined ? missing : refused('a tag or a commit');
}
