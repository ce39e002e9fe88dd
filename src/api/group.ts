// The names the operator is known by on the Kubernetes API (SPEC §3): its CRD
// group and version, the kinds and plurals, and the annotation and label keys
// humans and tools write. Every other file spells them through these; nothing
// here imports from src.

export const GROUP = 'ai-operator.io';
export const VERSION = 'v1alpha1';
/** `apiVersion` of the operator's objects. */
export const API_VERSION = `${GROUP}/${VERSION}`;

export const KINDS = { attempt: 'RollbackAttempt', policy: 'RollbackPolicy' } as const;
export const PLURALS = { attempt: 'rollbackattempts', policy: 'rollbackpolicies' } as const;

/** What a human asks for on a RollbackAttempt. */
export const ANNOTATIONS = {
  approve: `${GROUP}/approve`,
  reset: `${GROUP}/reset`,
  abort: `${GROUP}/abort`,
} as const;

/** What the operator writes on a RollbackAttempt for people to read. */
export const OPERATOR_ANNOTATIONS = {
  /** What became of the attempt's rollback branch once it ended: `deleted`, `gone`, or `kept: <why>`. */
  branch: `${GROUP}/branch`,
} as const;

export const LABELS = {
  /**
   * On a RollbackAttempt: the Application it rolls back (fsm/record.ts labelValue: a name over
   * 63 characters is shortened and ended by a digest), and that app's environment.
   */
  application: `${GROUP}/application`,
  environment: `${GROUP}/environment`,
  /**
   * On a RollbackAttempt: the installation's etcd store (a digest of ETCD_PREFIX) that holds its record. Only
   * the installation whose store it names deletes it after its record expired.
   */
  store: `${GROUP}/store`,
  /** On an Application: `true` opts it in with the environment defaults when no RollbackPolicy selects it. */
  optIn: 'ai-operator.enabled',
  /** On a claim Lease: the installation that holds it (`kubectl delete leases -l ai-operator.io/installation=team-a` frees them). */
  installation: `${GROUP}/installation`,
} as const;

/** On a claim Lease: the Application it claims (a Lease's name may have had to shorten it). */
export const CLAIM_ANNOTATION = `${GROUP}/application`;

/** `reportingController` of the Kubernetes Events the operator writes. */
export const REPORTING_CONTROLLER = `${GROUP}/operator`;
