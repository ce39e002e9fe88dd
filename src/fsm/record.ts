// The authoritative record of one rollback attempt, as stored in etcd (SPEC §5)
// and projected onto RollbackAttempt.status (SPEC §3).
import { createHash } from 'node:crypto';
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
  /**
   * How many attempts may start for one app within an hour; the next degradation holds the app in Abort
   * (AttemptLimitReached) until a human resets it. 0: no bound. Absent on records written before it existed.
   */
  maxAttemptsPerHour?: number;
  dryRun: boolean;
  /**
   * `spec.merge.requiredChecks`: contexts that must pass on the rollback commit besides the base branch's
   * required status checks. Undefined when the policy does not say; `[]` explicitly allows no CI at all.
   */
  requiredChecks?: string[];
  /**
   * `spec.detection.podSignals`: whether a Progressing app whose current revision's pods fail early
   * (modules/pod-signals.ts) counts as a degradation. Absent on records written before it existed: off.
   */
  podSignals?: PodSignalSettings;
}

/** When the pods of a revision fail early (SPEC §7 I2; modules/pod-signals.ts). */
export interface PodSignalSettings {
  enabled: boolean;
  /** A container in CrashLoopBackOff with at least this many restarts, or OOMKilled this many times, fails. */
  minRestarts: number;
  /** A container waiting in an image-pull or configuration error at least this long fails. */
  waitingSeconds: number;
}

export interface HealthCheck {
  at: string;
  /** Argo CD's health at the check. */
  status: HealthStatus;
  revision?: string;
  /**
   * Argo CD said Progressing, and the current revision's pods failed early: the signal (`CrashLoopBackOff`,
   * `ImagePullBackOff`, …). Such a check counts towards persistence as a Degraded one does.
   */
  signal?: string;
}

// ---- The pods of a revision (read by the cluster port, judged by modules/pod-signals.ts) ----

/** One container's status, as the kubelet reports it (init containers included, flagged). */
export interface ContainerFacts {
  name: string;
  init?: true;
  ready: boolean;
  restartCount: number;
  /** `state.waiting`. */
  waiting?: { reason: string; message?: string };
  /** `state.terminated`. */
  terminated?: { reason?: string; exitCode?: number; finishedAt?: string };
  /** `lastState.terminated`: Kubernetes keeps the last termination only. */
  lastTerminated?: { reason?: string; exitCode?: number; finishedAt?: string };
}

export interface PodFacts {
  name: string;
  /** Its Ready condition is True. */
  ready: boolean;
  /** `status.startTime` (the kubelet took it), else its creationTimestamp. */
  startedAt?: string;
  containers: ContainerFacts[];
}

/** The current revision of one workload of the app, and its pods (never an older revision's). */
export interface RevisionPods {
  kind: 'Deployment' | 'StatefulSet';
  namespace: string;
  name: string;
  /** The new ReplicaSet's pod-template-hash, or the StatefulSet's updateRevision. */
  revision: string;
  pods: PodFacts[];
}

/** One container that failed early: what the PR body and I2 name. */
export interface PodEvidence {
  /** `Deployment/web`. */
  workload: string;
  pod: string;
  container: string;
  /** `CrashLoopBackOff`, `OOMKilled`, `ImagePullBackOff`, … */
  reason: string;
  restarts: number;
  /** How long it has waited in that reason, for a waiting reason. */
  waitingSeconds?: number;
}

/** The current revision fails early: the signal (the first container's reason), a one-line detail, the evidence. */
export interface FailsEarly {
  signal: string;
  detail: string;
  pods: PodEvidence[];
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
   * The commits of the app's source set a rollback to it undoes, newest first, as the
   * search read them: the PR body lists them without reading the history again.
   */
  undone?: UndoneCommit[];
  /**
   * The source set the rollback restores to its trees at `revision`: the app's at the deployed revision and
   * at the candidate's, together (repository-relative; a directory means all under it). Absent on records
   * written before it was kept: the source's path then stands in (restoredPaths).
   */
  paths?: string[];
  /** The deployment (`status.history[].id`) whose source the rollback restores. */
  deploymentId?: number;
}

/** Another Application the rollback changes what it deploys (issue 18 §4): named in the PR and the status. */
export interface AffectedApp {
  namespace: string;
  name: string;
  /** Its governing policy's (or labels') environment; `ungoverned` when no policy or opt-in governs it. */
  environment: Environment | 'ungoverned';
  /** The paths of its source set the rollback changes. */
  paths: string[];
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
  /** The Application's metadata.uid when the attempt started (absent on older records): one created again has another. */
  appUid?: string;
  environment: Environment;
  /** Absent on records written before it was kept; the Application's then stands in. */
  source?: SourceRef;
  /**
   * The branch the app deploys, resolved when the attempt started (HEAD: the repository's default branch):
   * the history is read on it, the PR targets it, the merge is checked against it. Absent on records
   * written before it was kept: `baseBranch` of the source then stands in.
   */
  branch?: string;
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
  /**
   * `signal`: what started the attempt when it was not Argo CD's Degraded — the current revision's pods
   * failing early while Argo CD said Progressing, with the evidence at the check that confirmed it.
   */
  degradation: { firstSeenAt: string; checks: number; signal?: FailsEarly };
  currentRevision?: string;
  /**
   * The last commit that changed the app's source set at or before the deployed revision: what the
   * rollback rolls back from (never chosen again). Absent on records written before it was kept: the
   * deployed revision then stands in.
   */
  rolledBackFrom?: string;
  candidate?: Candidate;
  /**
   * The other Applications whose source sets the rollback commit changes, read before the PR opened (absent
   * on records written before it was kept). Any not staging makes the merge wait for an approver.
   */
  affected?: AffectedApp[];
  /** Another attempt's rollback PR that restores files of this app's set: this attempt waits for it, opening none. */
  waitingFor?: { number: number; title: string };
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

/**
 * The longest attempt name: the branch `ai-operator/rollback/<name>` must fit the
 * 255 characters RollbackAttempt.status.pullRequest.branch (and a git ref
 * component) allows; the object name's own limit is 253.
 */
export const MAX_ATTEMPT_NAME = 255 - 'ai-operator/rollback/'.length;

/** Where the operator's rollback branches live. */
export const ROLLBACK_BRANCH_PREFIX = 'ai-operator/rollback/';
/** A label value's limit (Kubernetes validation: 63 characters). */
export const MAX_LABEL_VALUE = 63;

/** 10 hex digits of the text's SHA-256: the part of a shortened name that keeps two long names apart. */
function digestOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 10);
}

/**
 * `text` cut to `max` characters and ended by a digest of the whole text, so the
 * result is deterministic, within the limit, and different for two long texts
 * that share a prefix. The cut part loses trailing `-` and `.`: a DNS name and a
 * label value must end (each of its dot-separated parts too) with a letter or digit.
 */
function shortened(text: string, max: number): string {
  const digest = digestOf(text);
  return `${text.slice(0, max - digest.length - 1).replace(/[^a-z0-9]+$/i, '')}-${digest}`;
}

/**
 * A label value for a name (an Application's, up to 253 characters): the name
 * itself when it fits the 63 characters a label value may have, else its first
 * characters and a digest of it. The full name stays in the object's spec.
 */
export function labelValue(name: string): string {
  return name.length <= MAX_LABEL_VALUE ? name : shortened(name, MAX_LABEL_VALUE);
}

/**
 * The RollbackAttempt's name, also the rollback branch's last part:
 * `<app>-<8 hex of correlationId>`, or, for an app name too long for that (an
 * ApplicationSet makes them), its first characters and a digest of it before the 8 hex.
 */
export function attemptName(app: AppRef, correlationId: string): string {
  const suffix = correlationId.replace(/-/g, '').slice(0, 8);
  const room = MAX_ATTEMPT_NAME - suffix.length - 1;
  return `${app.name.length <= room ? app.name : shortened(app.name, room)}-${suffix}`;
}

export function branchName(app: AppRef, correlationId: string): string {
  return `${ROLLBACK_BRANCH_PREFIX}${attemptName(app, correlationId)}`;
}

/**
 * The branch of a record written before the resolved branch was kept: the source's targetRevision, `main`
 * for HEAD or none (what every attempt assumed then). New attempts resolve it (modules/target-branch.ts).
 */
export function baseBranch(source: { targetRevision?: string } | undefined): string {
  const target = source?.targetRevision;
  return target && target !== 'HEAD' ? target : 'main';
}

/** The branch an attempt works on: the one resolved when it started, or, on an older record, `baseBranch`. */
export function attemptBranch(record: Pick<AttemptRecord, 'branch' | 'source'>, fallback?: { targetRevision?: string }): string {
  return record.branch ?? baseBranch(record.source ?? fallback);
}

/** Whether `path` lies at or under the repository path `prefix` ('' or '.' is the root): `apps/web-canary/x` is not under `apps/web`. */
export function isUnder(prefix: string, path: string): boolean {
  const root = prefix === '' || prefix === '.';
  // No `${prefix}/` built: the blast radius asks this of every app of a repository, per rollback of a burst.
  return root || path === prefix || (path.length > prefix.length && path.charCodeAt(prefix.length) === 0x2f && path.startsWith(prefix));
}

/**
 * The items of a list sorted by path (code-unit order) at or under `prefix`, by binary search: the blast
 * radius asks this of every Application of a repository. `apps/web-canary` sorts between `apps/web` and
 * `apps/web/…`, so the exact path and the directory's range are looked up apart.
 */
export function itemsUnder<T>(sorted: readonly T[], prefix: string, pathOf: (item: T) => string): T[] {
  if (prefix === '' || prefix === '.') return [...sorted];
  const lowerBound = (key: string) => {
    let [lo, hi] = [0, sorted.length];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pathOf(sorted[mid]!) < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const out: T[] = [];
  const exact = sorted[lowerBound(prefix)];
  if (exact !== undefined && pathOf(exact) === prefix) out.push(exact);
  const dir = `${prefix}/`;
  for (let i = lowerBound(dir); i < sorted.length && pathOf(sorted[i]!).startsWith(dir); i++) out.push(sorted[i]!);
  return out;
}

/** The paths an attempt's rollback restores: its candidate's source set, or, on an older record, the source's path. */
export function restoredPaths(record: Pick<AttemptRecord, 'candidate' | 'source'>, fallback?: { path?: string }): string[] {
  return record.candidate?.paths ?? [(record.source ?? fallback)?.path ?? '.'];
}

/**
 * Why a staging attempt may not merge on its own: its rollback changes what an app that is not staging deploys.
 * Undefined when it may (production needs its approver anyway).
 */
export function affectsBeyondStaging(record: Pick<AttemptRecord, 'affected'>): string | undefined {
  const beyond = (record.affected ?? []).filter((a) => a.environment !== 'staging');
  if (beyond.length === 0) return undefined;
  return `also changes ${beyond.map((a) => `${a.name} (${a.environment}): ${a.paths.join(', ')}`).join('; ')}`;
}

/**
 * What a staging attempt held back for its blast radius adds when its policy names no approvers: the
 * RollbackAttempt's approvers are fixed when it is created (the admission policy reads them there), so
 * nobody may approve it — a human merges the PR on GitHub, or the staging policy names approvers.
 */
export function noApproversNote(record: Pick<AttemptRecord, 'environment' | 'settings'>): string | undefined {
  const { users, groups } = record.settings.approvers;
  return record.environment === 'staging' && users.length === 0 && groups.length === 0
    ? 'the staging policy names no merge.approvers, so nobody may approve it here: a human merges the pull request on GitHub (ai-operator follows that merge), or the policy names approvers'
    : undefined;
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
}

/** One commit status or check run on a commit. */
export interface CheckRun {
  name: string;
  state: CiState;
}

/** What the candidate search answered (SPEC §6.3). */
export type CandidateOutcome =
  | { kind: 'found'; candidate: Candidate; currentRevision: string; rolledBackFrom?: string }
  | { kind: 'none'; detail: string }
  | { kind: 'timeout'; detail: string }
  | { kind: 'error'; code: ErrorCode; message: string };
