// The authoritative record of one rollback attempt, as stored in etcd (SPEC §5)
// and projected onto RollbackAttempt.status (SPEC §3).
import type { ErrorCode } from '../api/errors.ts';
import type { Reason, State } from './table.ts';

export type Environment = 'staging' | 'production';
export type HealthStatus = 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended' | 'Missing' | 'Unknown';
export type CheckResult = 'PASS' | 'FAIL' | 'UNKNOWN';
export type CiState = 'success' | 'failure' | 'pending' | 'error';

export const INVARIANT_IDS = [
  'I1_environment',
  'I2_health_degraded',
  'I3_replica_shortage',
  'I4_persistence',
  'I5_stable_previous',
  'I6_ci_success',
  'I7_no_conflicts',
  'I8_branch_protection',
] as const;
export type InvariantId = (typeof INVARIANT_IDS)[number];

export interface AppRef {
  namespace: string;
  name: string;
}

/** The effective settings of an attempt: the policy's fields over the environment defaults. */
export interface Settings {
  intervalSeconds: number;
  persistenceChecks: number;
  uptimeQuery: string;
  minUptime: number;
  window: string;
  maxCommits: number;
  searchTimeoutSeconds: number;
  ciTimeoutSeconds: number;
  approvalTimeoutSeconds: number;
  mergeMethod: 'squash' | 'merge' | 'rebase';
  approvers: { users: string[]; groups: string[] };
  healthRestorationSeconds: number;
  recoveryTimeoutSeconds: number;
  cooldownSeconds: number;
  dryRun: boolean;
  /**
   * `spec.merge.requiredChecks`: contexts that must pass on the rollback commit besides the base branch's
   * required status checks. Undefined when the policy does not say; `[]` explicitly allows no CI at all.
   */
  requiredChecks?: string[];
}

export interface HealthCheck {
  at: string;
  status: HealthStatus;
  revision?: string;
}

export interface InvariantResult {
  id: InvariantId;
  result: CheckResult;
  detail: string;
  checkedAt: string;
}

export interface Candidate {
  revision: string;
  shortRevision: string;
  /** Uptime over the revision's deployed window; null in CI-only mode. */
  uptime: number | null;
  mode: 'metrics' | 'ci-only';
  evidence: string;
  ciState: CiState | 'unknown';
  /**
   * The commits of the app's path a rollback to it undoes, newest first, as the
   * search read them: the PR body lists them without reading the history again.
   */
  undone?: UndoneCommit[];
}

/** A commit a rollback undoes; `message` is its first line, bounded, to keep the record small. */
export interface UndoneCommit {
  sha: string;
  message: string;
  author: string;
  date: string;
  url: string;
}

/** The rollback commit the operator built: the only commit its PR may carry, the only one it merges (by SHA). */
export interface RollbackCommit {
  sha: string;
  tree: string;
  /** The base branch's head it was built on. */
  parent: string;
}

export interface PullRequestRef {
  number: number;
  url: string;
  branch: string;
  state: 'open' | 'closed' | 'merged';
}

export interface TransitionEntry {
  from: State;
  to: State;
  at: string;
  reason: Reason;
}

/** Where the app's manifests live: kept on the record, so an attempt can finish (close its PR) after its Application is gone. */
export interface SourceRef {
  repoURL: string;
  path: string;
  targetRevision: string;
}

export interface AttemptRecord {
  correlationId: string;
  app: AppRef;
  environment: Environment;
  /** Absent on records written before it was kept; the Application's then stands in. */
  source?: SourceRef;
  policyRef?: { name: string; namespace: string };
  settings: Settings;
  state: State;
  reason: Reason;
  message: string;
  /** When the current state was entered. */
  since: string;
  /** Incremented by every write of the record. */
  version: number;
  createdAt: string;
  degradation: { firstSeenAt: string; checks: number };
  currentRevision?: string;
  candidate?: Candidate;
  pullRequest?: PullRequestRef;
  /** The commit the operator built for its PR; absent on records written before it was kept, until checked. */
  rollbackCommit?: RollbackCommit;
  invariants: InvariantResult[];
  /** A production approval: given for `commitSha`, the rollback commit (absent on records written before it was kept: never counts). */
  approval?: { approvedBy: string; approvedAt: string; commitSha?: string };
  /** The last approval withdrawn before the merge (its annotation removed or changed), said once. */
  approvalWithdrawn?: { approvedBy: string; at: string; detail: string };
  /** The last approval refused, so each distinct refusal is recorded once. */
  approvalRefused?: { username: string; detail: string; at: string };
  /** Why no production approval can be recorded now (the API server does not enforce who may approve). */
  approvalBlocked?: string;
  /** When the PR was asked for a human approval (production, once invariants allow it). */
  approvalRequestedAt?: string;
  merge?: { at: string; commitSha?: string; auto: boolean };
  /** Start of the current run of Healthy checks after the merge. */
  healthySince?: string;
  /**
   * Time the current state was observed (SPEC §4 deadlines): each reconcile that
   * read the fact a deadline is about adds the time since the one before, at most
   * two intervals, so an outage or a leaderless spell never counts towards it.
   */
  observed?: { seconds: number; at: string };
  /** The message says an integration is down and the attempt waits for it (transient, after retries). */
  retrying?: true;
  transitions: TransitionEntry[];
}

export function shortSha(sha: string): string {
  return sha.slice(0, 7);
}

/** etcd and RollbackAttempt naming: `{app}` prefixed `{namespace}_` outside the Argo CD namespace. */
export function appKey(app: AppRef, argocdNamespace: string): string {
  return app.namespace === argocdNamespace ? app.name : `${app.namespace}_${app.name}`;
}

export function attemptName(app: AppRef, correlationId: string): string {
  return `${app.name}-${correlationId.replace(/-/g, '').slice(0, 8)}`;
}

export function branchName(app: AppRef, correlationId: string): string {
  return `ai-operator/rollback/${attemptName(app, correlationId)}`;
}

/** The branch rollback PRs target and the history is read on: the source's targetRevision, `main` for HEAD or none. */
export function baseBranch(source: { targetRevision?: string } | undefined): string {
  const target = source?.targetRevision;
  return target && target !== 'HEAD' ? target : 'main';
}

/** The repository of an app's source on GitHub. */
export interface RepoRef {
  owner: string;
  repo: string;
}

/** owner/repo from an Argo CD repoURL (https, ssh or scp-like). */
export function repoFromUrl(url: string): RepoRef | undefined {
  const match = /[/:]([^/:]+)\/([^/]+?)(?:\.git)?\/?$/.exec(url.trim());
  return match ? { owner: match[1]!, repo: match[2]! } : undefined;
}

/** One Deployment's rollout as the deployment controller reports it in its status. */
export interface DeploymentReplicas {
  name: string;
  /** `spec.replicas`. */
  desired: number;
  /** `status.updatedReplicas`: pods of the current revision (pod template). */
  updated: number;
  /** `status.availableReplicas`, of every revision: old pods count too. */
  available: number;
  /** `status.unavailableReplicas`. */
  unavailable: number;
  /** Its `Progressing` condition has reason `ProgressDeadlineExceeded`. */
  progressDeadlineExceeded: boolean;
  /** Argo CD lists it but the cluster has no such Deployment. */
  absent?: boolean;
}

/** One commit status or check run on a commit. */
export interface CheckRun {
  name: string;
  state: CiState;
}

/** What the candidate search answered (SPEC §6.3). */
export type CandidateOutcome =
  | { kind: 'found'; candidate: Candidate; currentRevision: string }
  | { kind: 'none'; detail: string }
  | { kind: 'timeout'; detail: string }
  | { kind: 'error'; code: ErrorCode; message: string };
