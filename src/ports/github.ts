// The GitHub calls of SPEC §8, named as the seed names them, plus what the
// rollback PR needs. Implementations map failures onto IntegrationError codes.
import type { CheckRun, CiState, RepoRef, RollbackCommit } from '../fsm/record.ts';

export type { RepoRef, RollbackCommit } from '../fsm/record.ts';

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
  /** Who opened it (login). */
  author: string;
  state: 'open' | 'closed';
  merged: boolean;
  mergeCommitSha?: string;
  mergedBy?: string;
  headSha: string;
  mergeable: boolean | null;
  mergeableState: string;
}

/** A rollback PR the operator opened, or adopted after checking that its head is the operator's rollback commit. */
export interface OpenedPullRequest extends PullRequestInfo {
  rollbackCommit: RollbackCommit;
}

/** Whether a PR's head is the rollback commit the operator would build: and if not, why, for the abort and the humans. */
export type RollbackCommitCheck = { ok: true; commit: RollbackCommit } | { ok: false; why: string };

/** Where a commit came from, to say who moved a PR's head. */
export interface CommitIdentity {
  sha: string;
  author: string;
  message: string;
}

/** The writes createPullRequest sends for a new PR: the tree, the commit, the branch, the PR, its labels. */
export const OPENING_WRITES = 5;

/** Whose turn comes first among attempts waiting to write to GitHub: production, then the one that started first. */
export interface WriteTurn {
  production: boolean;
  /** When the attempt started (ISO 8601). */
  since: string;
}

export interface CiStatus {
  state: CiState | 'none';
  runs: CheckRun[];
}

export interface RollbackPullRequestSpec {
  branch: string;
  base: string;
  /** The app's source set (repository-relative paths, a directory meaning all under it), restored to its trees at `targetSha`. */
  paths: string[];
  targetSha: string;
  title: string;
  body: string;
  labels: string[];
}

/** A file the rollback commit would change: set back to the target's content (added or changed), or deleted. */
export interface ChangedFile {
  path: string;
  change: 'restored' | 'deleted';
}

/** What the rollback commit of `paths` on `branch` to their trees at `targetSha` would hold. */
export interface RollbackPreview {
  /** Files under `paths` the commit would add, change or delete; 0 means the branch already matches the target there. */
  changed: number;
  /** Those files, sorted: the blast radius is read from them. */
  files: ChangedFile[];
  /** The branch head this was measured on. */
  headSha: string;
}

/**
 * Files of a repository at one commit (modules/source-set.ts reads an app's kustomization, Chart.yaml and
 * directory listings through it). A commit never changes, so implementations may keep every answer by SHA.
 */
export interface RepositorySnapshotReader {
  /** The content of the file `path` (repository-relative) at commit `sha`; undefined when no file is there (a directory, or nothing). */
  readFileAt(repo: RepoRef, sha: string, path: string): Promise<string | undefined>;
  /** The files (blobs, submodules) at or under `prefix` at commit `sha`, repository-relative, sorted; '' lists the whole repository. */
  listFilesAt(repo: RepoRef, sha: string, prefix: string): Promise<string[]>;
}

/**
 * What deleteBranch did: deleted it; found it already gone (GitHub deleted it on the merge, or a person did);
 * or kept it, and why (its head is not the operator's commit, an open PR uses it, the repository deletes it).
 */
export type BranchDeletion =
  | { outcome: 'deleted'; sha: string }
  | { outcome: 'gone' }
  | { outcome: 'kept'; why: string };

export interface GitHubPort extends RepositorySnapshotReader {
  /** The login the operator acts as (to tell its own merges from a human's). */
  identity(): Promise<string>;
  /** The repository's default branch (`GET /repos/{owner}/{repo}` `default_branch`): what Argo CD's `HEAD` resolves to. */
  defaultBranch(repo: RepoRef): Promise<string>;
  /** Whether `name` is a branch of the repository (`GET …/branches/{branch}`): false for a tag, a commit SHA or nothing at all. */
  isBranch(repo: RepoRef, name: string): Promise<boolean>;
  /**
   * What identifies the content of `paths` (files at or under each) at commit `sha`: equal digests, equal
   * files. Two deployments whose source sets digest alike deployed the same thing, whatever other commits
   * of the branch lay between them.
   */
  contentDigest(repo: RepoRef, sha: string, paths: string[]): Promise<string>;
  /** Commits touching `path` reachable from `ref` (a branch, or a commit SHA), newest first. */
  readRepositoryContent(repo: RepoRef, path: string, ref: string, limit: number): Promise<CommitInfo[]>;
  getCommitStatus(repo: RepoRef, sha: string): Promise<CiStatus>;
  findPullRequest(repo: RepoRef, branch: string): Promise<PullRequestInfo | undefined>;
  /**
   * Sets aside, in the installation's budget of GitHub writes (GitHub's secondary limits, shared by every
   * attempt), the `writes` that opening the PR of `key` (its branch) takes; fails RATE_LIMITED, sending no
   * request, while its turn has not come (production first, then the attempt that started first). Asked
   * before anything is read for the PR, so an attempt waiting for its turn costs no request; asked again
   * each interval, it keeps its place in the line.
   */
  reserveWrites(ask: { key: string; writes: number; turn: WriteTurn }): Promise<void>;
  /**
   * What createPullRequest would commit for the same path, branch (its base) and
   * target — asked before opening one, so an empty rollback is never opened.
   */
  previewRollback(repo: RepoRef, query: { paths: string[]; branch: string; targetSha: string }): Promise<RollbackPreview>;
  /**
   * Opens the rollback PR: builds the rollback commit on the base's head, points the branch at it, opens the PR.
   * An open PR of the branch is adopted only when checkRollbackCommit accepts its head; otherwise CONFLICT.
   */
  createPullRequest(repo: RepoRef, spec: RollbackPullRequestSpec): Promise<OpenedPullRequest>;
  /**
   * Whether PR `number`'s head is the rollback commit of `spec` (paths and target): opened by the operator's
   * identity, one commit on top of the base (its parent on the base branch), authored by the operator, and
   * whose tree is the parent's with `paths` restored to the target's trees — recomputed, not trusted.
   */
  checkRollbackCommit(repo: RepoRef, number: number, spec: { paths: string[]; targetSha: string }): Promise<RollbackCommitCheck>;
  /** Who made a commit (a moved PR head is named with it). */
  describeCommit(repo: RepoRef, sha: string): Promise<CommitIdentity>;
  /**
   * The PR, and CI on `ciSha` (the operator's rollback commit; the PR's head when not given), read fresh.
   * With `polling` (a PR waiting for its CI; never what a merge is decided on), an open PR whose head is still
   * `ciSha` may come from a list of the repository's open PRs a few seconds old, and CI that was pending from
   * a read up to the configured CI poll interval old.
   */
  getPullRequestStatus(repo: RepoRef, number: number, ciSha?: string, options?: { polling?: boolean }): Promise<{ pr: PullRequestInfo; ci: CiStatus }>;
  /**
   * The status checks a merge into `branch` requires: branch protection's required contexts and the
   * `required_status_checks` rules of the rulesets that apply to it, together.
   */
  requiredChecks(repo: RepoRef, branch: string): Promise<string[]>;
  /**
   * Open PRs into `base` that change a file at or under any of `paths` (only those `openedBy` that login, on a
   * branch starting with `branchPrefix`, when given). Read fresh; with `polling`, from a list of the
   * repository's open PRs a few seconds old, to which the PRs this operator opened since are added.
   */
  listOpenPullRequests(repo: RepoRef, filter: { base: string; paths: string[]; openedBy?: string; branchPrefix?: string }, options?: { polling?: boolean }): Promise<PullRequestInfo[]>;
  mergePullRequest(repo: RepoRef, number: number, options: { sha: string; method: 'squash' | 'merge' | 'rebase' }): Promise<{ sha: string }>;
  /** Adds a comment unless one carrying `marker` is already there. */
  commentPullRequest(repo: RepoRef, number: number, marker: string, body: string): Promise<void>;
  closePullRequest(repo: RepoRef, number: number, comment: string): Promise<void>;
  /**
   * Deletes the operator's rollback branch `branch` once its PR is merged or closed, only while its head is
   * `expectedSha` (the rollback commit) and no open PR uses it; `merged`: left to GitHub when the repository
   * deletes head branches on merge. GitHub's DELETE has no expected SHA: the head is read, compared and
   * deleted in one try of the call (a retry reads it again), so a push can only slip in during that one DELETE.
   */
  deleteBranch(repo: RepoRef, branch: string, expectedSha: string, options: { merged: boolean }): Promise<BranchDeletion>;
}
