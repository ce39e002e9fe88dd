// The GitHub calls of SPEC §8, named as the seed names them, plus what the
// rollback PR needs. Implementations map failures onto IntegrationError codes.
import type { CheckRun, CiState, RepoRef } from '../fsm/record.ts';

export type { RepoRef } from '../fsm/record.ts';

export interface CommitInfo {
  sha: string;
  message: string;
  author: string;
  date: string;
  url: string;
}

export interface PullRequestInfo {
  number: number;
  url: string;
  branch: string;
  base: string;
  title: string;
  state: 'open' | 'closed';
  merged: boolean;
  mergeCommitSha?: string;
  mergedBy?: string;
  headSha: string;
  mergeable: boolean | null;
  mergeableState: string;
}

export interface CiStatus {
  state: CiState | 'none';
  runs: CheckRun[];
}

export interface RollbackPullRequestSpec {
  branch: string;
  base: string;
  /** The app's path in the repository, restored to its tree at `targetSha`. */
  path: string;
  targetSha: string;
  title: string;
  body: string;
  labels: string[];
}

/** What the rollback commit of `path` on `branch` to its tree at `targetSha` would hold. */
export interface RollbackPreview {
  /** Files under `path` the commit would add, change or delete; 0 means the branch already matches the target there. */
  changed: number;
  /** The branch head this was measured on. */
  headSha: string;
}

export interface GitHubPort {
  /** The login the operator acts as (to tell its own merges from a human's). */
  identity(): Promise<string>;
  /** Commits touching `path` on `branch`, newest first. */
  readRepositoryContent(repo: RepoRef, path: string, branch: string, limit: number): Promise<CommitInfo[]>;
  getCommitStatus(repo: RepoRef, sha: string): Promise<CiStatus>;
  findPullRequest(repo: RepoRef, branch: string): Promise<PullRequestInfo | undefined>;
  /**
   * What createPullRequest would commit for the same path, branch (its base) and
   * target — asked before opening one, so an empty rollback is never opened.
   */
  previewRollback(repo: RepoRef, query: { path: string; branch: string; targetSha: string }): Promise<RollbackPreview>;
  createPullRequest(repo: RepoRef, spec: RollbackPullRequestSpec): Promise<PullRequestInfo>;
  getPullRequestStatus(repo: RepoRef, number: number): Promise<{ pr: PullRequestInfo; ci: CiStatus }>;
  listOpenPullRequests(repo: RepoRef, filter: { base: string; path: string }): Promise<PullRequestInfo[]>;
  mergePullRequest(repo: RepoRef, number: number, options: { sha: string; method: 'squash' | 'merge' | 'rebase' }): Promise<{ sha: string }>;
  /** Adds a comment unless one carrying `marker` is already there. */
  commentPullRequest(repo: RepoRef, number: number, marker: string, body: string): Promise<void>;
  closePullRequest(repo: RepoRef, number: number, comment: string): Promise<void>;
}
