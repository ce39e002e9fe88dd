// Which Applications are monitored and with what settings: a RollbackPolicy's
// fields over the operator's environment defaults (SPEC §3, §12). Pure: the
// defaults are handed in (src/config.ts builds them from the environment).
import { LABELS } from '../api/group.ts';
import type { AppRef, Environment, PodSignalSettings, Settings } from '../fsm/record.ts';

/** What monitoring is decided on: an Application's name and labels (an ApplicationView has both). */
export interface LabelledApp {
  ref: AppRef;
  labels: Record<string, string>;
}

/** How an Application is monitored: undefined when no label, list or policy selects it. */
export interface MonitoredApp {
  settings: Settings;
  environment: Environment;
  policyRef?: { name: string; namespace: string };
  suspended: boolean;
  /**
   * Selected by more than one RollbackPolicy: which decides is ambiguous, so no
   * attempt starts until a human makes only one select it (SPEC §3). Says which.
   */
  conflict?: PolicyConflict;
}

/** The policies of the app's namespace that all select it, by name. */
export interface PolicyConflict {
  policies: string[];
  /** For the Event and the log: names the app and the policies. */
  message: string;
}

/**
 * What applies where a RollbackPolicy is silent, or when none selects the app:
 * every setting but the approvers (nobody unless a policy names them), and the
 * MONITORED_APPS list.
 */
export type Defaults = Omit<Settings, 'approvers'> & { monitoredApps: string[] };

/**
 * `spec.detection.podSignals` where a policy is silent (the CRD's schema defaults, crds/): a Progressing
 * app's current revision fails early on 3 restarts in CrashLoopBackOff (or 3 OOM kills), or 60 s in an
 * image-pull or configuration error (modules/pod-signals.ts).
 */
export const DEFAULT_POD_SIGNALS: PodSignalSettings = { enabled: true, minRestarts: 3, waitingSeconds: 60 };

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}

export interface RollbackPolicySpec {
  selector?: LabelSelector;
  applications?: string[];
  environment?: Environment;
  detection?: { intervalSeconds?: number; persistenceChecks?: number; podSignals?: Partial<PodSignalSettings> };
  candidate?: { uptimeQuery?: string; minUptime?: number; window?: string; maxCommits?: number; searchTimeoutSeconds?: number };
  merge?: { ciTimeoutSeconds?: number; approvalTimeoutSeconds?: number; method?: Settings['mergeMethod']; approvers?: { users?: string[]; groups?: string[] }; requiredChecks?: string[] };
  healthRestorationSeconds?: number;
  recoveryTimeoutSeconds?: number;
  cooldownSeconds?: number;
  maxAttemptsPerHour?: number;
  dryRun?: boolean;
  suspend?: boolean;
  /** The installation that acts on the Applications this policy governs (policy/installation.ts); absent: the first to claim it. */
  installation?: string;
}

export interface RollbackPolicy {
  name: string;
  namespace: string;
  spec: RollbackPolicySpec;
  /** status.installation: the installation that claimed the policy, when spec.installation names none. */
  claimedBy?: string;
}

export function matchesSelector(labels: Record<string, string>, selector: LabelSelector): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  return byLabels && (selector.matchExpressions ?? []).every((e) => {
    const value = labels[e.key];
    switch (e.operator) {
      case 'In': return value !== undefined && (e.values ?? []).includes(value);
      case 'NotIn': return value === undefined || !(e.values ?? []).includes(value);
      case 'Exists': return value !== undefined;
      case 'DoesNotExist': return value === undefined;
    }
  });
}

export function settingsFrom(defaults: Defaults, spec: RollbackPolicySpec = {}): Settings {
  return {
    intervalSeconds: spec.detection?.intervalSeconds ?? defaults.intervalSeconds,
    persistenceChecks: spec.detection?.persistenceChecks ?? defaults.persistenceChecks,
    uptimeQuery: spec.candidate?.uptimeQuery ?? defaults.uptimeQuery,
    minUptime: spec.candidate?.minUptime ?? defaults.minUptime,
    window: spec.candidate?.window ?? defaults.window,
    maxCommits: spec.candidate?.maxCommits ?? defaults.maxCommits,
    searchTimeoutSeconds: spec.candidate?.searchTimeoutSeconds ?? defaults.searchTimeoutSeconds,
    ciTimeoutSeconds: spec.merge?.ciTimeoutSeconds ?? defaults.ciTimeoutSeconds,
    approvalTimeoutSeconds: spec.merge?.approvalTimeoutSeconds ?? defaults.approvalTimeoutSeconds,
    mergeMethod: spec.merge?.method ?? defaults.mergeMethod,
    approvers: { users: spec.merge?.approvers?.users ?? [], groups: spec.merge?.approvers?.groups ?? [] },
    healthRestorationSeconds: spec.healthRestorationSeconds ?? defaults.healthRestorationSeconds,
    recoveryTimeoutSeconds: spec.recoveryTimeoutSeconds ?? defaults.recoveryTimeoutSeconds,
    cooldownSeconds: spec.cooldownSeconds ?? defaults.cooldownSeconds,
    maxAttemptsPerHour: spec.maxAttemptsPerHour ?? defaults.maxAttemptsPerHour,
    dryRun: (spec.dryRun ?? false) || defaults.dryRun,
    podSignals: { ...(defaults.podSignals ?? DEFAULT_POD_SIGNALS), ...definedOnly(spec.detection?.podSignals) },
    // Absent means "not said" (judged by the branch's required checks); [] says "no CI is fine".
    ...(spec.merge?.requiredChecks !== undefined ? { requiredChecks: [...spec.merge.requiredChecks] } : {}),
  };
}

/** The fields a partial object sets (a YAML `null` or an absent field leaves the default). */
function definedOnly<T extends object>(partial: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(partial ?? {}).filter(([, v]) => v !== undefined && v !== null)) as Partial<T>;
}

/** The app's environment: the policy's, else its `environment` label; anything unknown is production. */
export function environmentOf(app: LabelledApp, policy?: RollbackPolicy): Environment {
  return policy?.spec.environment ?? (app.labels.environment === 'staging' ? 'staging' : 'production');
}

/** What a policy with neither `selector` nor `applications` selects: the opt-in label. */
export const DEFAULT_SELECTOR: LabelSelector = { matchLabels: { [LABELS.optIn]: 'true' } };

/**
 * Whether a policy governs the app, by its own namespace (like NetworkPolicy or
 * PodDisruptionBudget): named in `applications`, or matched by `selector`. The
 * default selector applies only when neither is set, so a policy that names
 * applications governs only those (SPEC §3); an empty list is as good as unset,
 * as most tools that write YAML drop it.
 */
export function selects(policy: RollbackPolicy, app: LabelledApp): boolean {
  if (policy.namespace !== app.ref.namespace) return false;
  const { selector, applications = [] } = policy.spec;
  if (applications.includes(app.ref.name)) return true;
  if (selector) return matchesSelector(app.labels, selector);
  return applications.length === 0 && matchesSelector(app.labels, DEFAULT_SELECTOR);
}

/** The policies that select the app, by name. */
export function selectingPolicies(app: LabelledApp, policies: RollbackPolicy[]): RollbackPolicy[] {
  return policies.filter((p) => selects(p, app)).sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Whether and how an app is monitored: by the one policy of its namespace that
 * names or selects it; otherwise by the opt-in label or MONITORED_APPS with the
 * environment defaults. Two or more policies selecting it is a conflict, not a
 * precedence: adding a policy must never quietly change who decides an app's
 * merge (a `canary` staging policy with the default selector would otherwise
 * make production apps auto-merged). A conflicted app is monitored, so its
 * Degraded health is said (an Event, no attempt); its environment is production
 * when any of the policies says so, so a staging attempt in flight stops before
 * a merge as it does when a policy makes its app production.
 */
export function monitoringFor(app: LabelledApp, policies: RollbackPolicy[], defaults: Defaults): MonitoredApp | undefined {
  const selecting = selectingPolicies(app, policies);
  if (selecting.length > 1) {
    const names = selecting.map((p) => p.name);
    const environment = selecting.some((p) => environmentOf(app, p) === 'production') ? 'production' : 'staging';
    return {
      settings: settingsFrom(defaults), environment, suspended: false,
      conflict: {
        policies: names,
        message: `Application ${app.ref.name} is selected by ${names.length} RollbackPolicies in ${app.ref.namespace} (${names.join(', ')}): no rollback is attempted until only one selects it`,
      },
    };
  }
  const policy = selecting[0];
  if (policy) {
    return { settings: settingsFrom(defaults, policy.spec), environment: environmentOf(app, policy), policyRef: { name: policy.name, namespace: policy.namespace }, suspended: policy.spec.suspend ?? false };
  }
  if (app.labels[LABELS.optIn] === 'true' || defaults.monitoredApps.includes(app.ref.name)) {
    return { settings: settingsFrom(defaults), environment: environmentOf(app), suspended: false };
  }
  return undefined;
}
