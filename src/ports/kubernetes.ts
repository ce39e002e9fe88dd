// Read-only cluster facts for I3 and the PR body (SPEC §8), and the
// RollbackAttempt objects through which humans see and steer attempts.
import type { AppRef, AttemptRecord, DeploymentReplicas, RevisionPods } from '../fsm/record.ts';
import type { ApplicationView } from './argocd.ts';

export interface PodSummary {
  name: string;
  phase: string;
  ready: boolean;
  restarts: number;
}

export interface ClusterPort {
  getDeploymentStatus(app: ApplicationView): Promise<DeploymentReplicas[]>;
  listPods(app: ApplicationView): Promise<PodSummary[]>;
  /**
   * The pods of the current revision of each Deployment and StatefulSet Argo CD's tracking gives the app
   * (the new ReplicaSet by pod-template-hash, the StatefulSet's updateRevision), never an older revision's:
   * what modules/pod-signals.ts judges (issue 21). From a watch cache of the namespaces the app deploys to;
   * an IntegrationError while that cache cannot be listed.
   */
  currentRevisionPods(app: ApplicationView): Promise<RevisionPods[]>;
}

/** What a human asked for on a RollbackAttempt, by annotation. */
export interface HumanRequests {
  approve?: string;
  /** When this process's watch first saw the approve annotation's current value appear; unknown when it never did. */
  approveWrittenAt?: string;
  /** The RollbackAttempt's creationTimestamp (set by the API server). */
  objectCreatedAt?: string;
  reset?: boolean;
  abort?: string;
}

export interface AttemptObjectsPort {
  /**
   * Creates the RollbackAttempt if missing and writes its status from the record. `final`: the attempt no
   * longer holds its app (ended, or released), so this is its last projection and nothing of it is kept.
   */
  project(record: AttemptRecord, options?: { final?: boolean }): Promise<void>;
  requests(record: AttemptRecord): Promise<HumanRequests>;
  /** Removes the approve annotation (one the API server's check does not stand behind). */
  removeApproval(record: AttemptRecord): Promise<void>;
  /** The RollbackAttempt object's uid once it exists, for the Events about it; undefined when unknown. */
  uidOf?(record: AttemptRecord): string | undefined;
  /**
   * Sets the `Stalled` condition: the operator stopped retrying this attempt (a
   * TerminalError) until a human repairs it. The next projection clears it.
   */
  markStalled(target: { app: AppRef; correlationId: string }, reason: string, message: string): Promise<void>;
}

/** A RollbackAttempt object whose attempt has ended, as the watch cache shows it (the cleanup's input). */
export interface EndedAttemptObject {
  namespace: string;
  name: string;
  uid: string;
  /** Changes with every write to the object, its status's included. */
  resourceVersion: string;
  correlationId: string;
  /** When its attempt ended (the `Active` condition's lastTransitionTime, when False). */
  endedAt: string;
  /** Whether this installation created it (its store label is this installation's); unlabelled objects are undefined. */
  ours: boolean | undefined;
  /** What the operator wrote about its rollback branch (OPERATOR_ANNOTATIONS.branch), if anything. */
  branch?: string;
  /**
   * The attempt's PR as its status last showed it (status is written by the operator alone), with the rollback
   * commit: what the branch cleanup goes by when the etcd record has already expired.
   */
  pullRequest?: { number: number; url: string; branch: string; state: 'open' | 'closed' | 'merged'; rollbackCommit?: string };
  /** Whether the status's transitions say a person closed the PR (PullRequestClosed). */
  closedByPerson: boolean;
}

/** What the cleanup of ended attempts (src/reconcilers/attempt-cleanup.ts) does to RollbackAttempt objects. */
export interface AttemptObjectCleanupPort {
  /** Objects whose `Active` condition is False, from the watch cache (no request). */
  endedObjects(): EndedAttemptObject[];
  /** Writes what became of the branch, and (`label`) labels the object as this installation's: its record is in this store. */
  noteBranch(object: Pick<EndedAttemptObject, 'namespace' | 'name' | 'uid'>, outcome: string, options: { label: boolean }): Promise<void>;
  /** Deletes the object (precondition: its uid), once its record expired; gone already is done. */
  deleteObject(object: Pick<EndedAttemptObject, 'namespace' | 'name' | 'uid'>): Promise<void>;
}

/** The object a Kubernetes Event is about (events.k8s.io/v1 `regarding` / `related`). */
export interface EventObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  /** Argo CD lists an Application's Events by name, namespace and uid: without it they stay out of its UI. */
  uid?: string;
}

export interface KubeEvent {
  regarding: EventObjectRef;
  type: 'Normal' | 'Warning';
  /** Why, in CamelCase (`NothingToRollBack`); at most 128 characters. */
  reason: string;
  /** What the operator did or refused (`OpenPullRequest`); at most 128 characters. */
  action: string;
  /** For humans; cut to the API's 1 kB. */
  note: string;
  related?: EventObjectRef;
}

/**
 * Kubernetes Events on the objects humans look at (SPEC §13). Best effort by
 * design: emit() returns at once and never throws, so an Event storm or an API
 * server that refuses Events can never slow or fail a reconcile.
 */
export interface EventRecorderPort {
  emit(event: KubeEvent): void;
  /** Resolves once every Event emitted so far was written or given up on (shutdown, tests). */
  flush(): Promise<void>;
}

/**
 * Whether the API server enforces who may approve (SPEC §3): the shipped
 * ValidatingAdmissionPolicy and its binding are installed, in Deny mode. While
 * they are not, no production approval may be recorded (fail closed).
 */
export interface ApprovalEnforcement {
  enforced: boolean;
  /**
   * Since when it has been enforced without a break (RFC 3339): kept in etcd with the uid and generation
   * of the policy, the binding and the namespace, so a restart or an unreadable moment does not reset it.
   */
  since?: string;
  /** Why it is not enforced, for the attempt's status, the PR and the log. */
  problem?: string;
  /** Not read yet, or unreadable now: not a gap (nothing recorded, nothing removed meanwhile). */
  unknown?: true;
}

export interface ApprovalEnforcementPort {
  /**
   * Whether approvals are enforced for RollbackAttempts in `namespace`: the policy and binding in Deny mode,
   * and their selectors cover that namespace. Never throws (a failed read is `unknown`).
   */
  forNamespace(namespace: string): Promise<ApprovalEnforcement>;
}

/** Where the last confirmation of enforcement is kept across restarts (etcd). */
export interface EnforcementMemoryPort {
  load(): Promise<EnforcementConfirmation | undefined>;
  /** Undefined forgets it (a gap in enforcement). */
  save(confirmation: EnforcementConfirmation | undefined): Promise<void>;
}

/** The objects as they were when enforcement was first confirmed, and since when it held. */
export interface EnforcementConfirmation {
  policy: { uid: string; generation: number };
  binding: { uid: string; generation: number };
  since: string;
  /** Per namespace: the Namespace object as it was (labels decide coverage) and since when it was covered. */
  namespaces: Record<string, { uid: string; resourceVersion: string; since: string }>;
}

/** Who presented a bearer token, as the API server's TokenReview says. */
export interface Caller {
  username: string;
  groups: string[];
  uid?: string;
  /** Authenticator-specific facts (for example a token's scopes), passed on to the SubjectAccessReview. */
  extra?: Record<string, string[]>;
}

/** A RollbackAttempt object, as a SubjectAccessReview names it. */
export interface AttemptObjectRef {
  namespace: string;
  name: string;
}

/** RollbackAttempts a SubjectAccessReview asks about: one object, every object of a namespace, or of every namespace. */
export interface AttemptsRef {
  /** Absent: every namespace (a cluster-wide question). */
  namespace?: string;
  /** Absent: every RollbackAttempt of the namespace. */
  name?: string;
}

/**
 * Who is calling the operator's HTTP endpoints, and what they may do, asked of
 * the API server (TokenReview, SubjectAccessReview) so the cluster's own RBAC
 * decides (SPEC §11). Failures to ask are IntegrationErrors, never a yes.
 */
export interface CallerAuthPort {
  /** The token's user, or undefined when the API server does not authenticate it (or only as anonymous). */
  authenticate(token: string): Promise<Caller | undefined>;
  /** Whether the caller may `update` that RollbackAttempt, every one of a namespace (no name), or of every namespace (neither). */
  mayUpdate(caller: Caller, attempts: AttemptsRef): Promise<boolean>;
}
