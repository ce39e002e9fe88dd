// Which Applications are monitored and with what settings: a RollbackPolicy's
// fields over the operator's environment defaults (SPEC §3, §12). Pure: the
// defaults are handed in (src/config.ts builds them from the environment).
import { LABELS } from '../api/group.ts';
import type { AppRef, Environment, Settings } from '../fsm/record.ts';

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
}

/**
 * What applies where a RollbackPolicy is silent, or when none selects the app:
 * every setting but the approvers (nobody unless a policy names them), and the
 * MONITORED_APPS list.
 */
export type Defaults = Omit<Settings, 'approvers'> & { monitoredApps: string[] };

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}

export interface RollbackPolicySpec {
  selector?: LabelSelector;
  applications?: string[];
  environment?: Environment;
  detection?: { intervalSeconds?: number; persistenceChecks?: number };
  candidate?: { uptimeQuery?: string; minUptime?: number; window?: string; maxCommits?: number; searchTimeoutSeconds?: number };
  merge?: { ciTimeoutSeconds?: number; approvalTimeoutSeconds?: number; method?: Settings['mergeMethod']; approvers?: { users?: string[]; groups?: string[] }; requiredChecks?: string[] };
  healthRestorationSeconds?: number;
  recoveryTimeoutSeconds?: number;
  cooldownSeconds?: number;
  dryRun?: boolean;
  suspend?: boolean;
}

export interface RollbackPolicy {
  name: string;
  namespace: string;
  spec: RollbackPolicySpec;
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
    dryRun: (spec.dryRun ?? false) || defaults.dryRun,
    // Absent means "not said" (judged by the branch's required checks); [] says "no CI is fine".
    ...(spec.merge?.requiredChecks !== undefined ? { requiredChecks: [...spec.merge.requiredChecks] } : {}),
  };
}

/** The app's environment: the policy's, else its `environment` label; anything unknown is production. */
export function environmentOf(app: LabelledApp, policy?: RollbackPolicy): Environment {
  return policy?.spec.environment ?? (app.labels.environment === 'staging' ? 'staging' : 'production');
}

/**
 * Whether and how an app is monitored. The first policy of its namespace (by name) that
 * names or selects it wins; otherwise the opt-in label or MONITORED_APPS with the
 * environment defaults.
 */
export function monitoringFor(app: LabelledApp, policies: RollbackPolicy[], defaults: Defaults): MonitoredApp | undefined {
  // Like other namespaced policies (NetworkPolicy, PodDisruptionBudget), a
  // RollbackPolicy governs the Applications of its own namespace.
  const sorted = policies.filter((p) => p.namespace === app.ref.namespace).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const policy = sorted.find((p) => (p.spec.applications ?? []).includes(app.ref.name) || matchesSelector(app.labels, p.spec.selector ?? { matchLabels: { [LABELS.optIn]: 'true' } }));
  if (policy) {
    return { settings: settingsFrom(defaults, policy.spec), environment: environmentOf(app, policy), policyRef: { name: policy.name, namespace: policy.namespace }, suspended: policy.spec.suspend ?? false };
  }
  if (app.labels[LABELS.optIn] === 'true' || defaults.monitoredApps.includes(app.ref.name)) {
    return { settings: settingsFrom(defaults), environment: environmentOf(app), suspended: false };
  }
  return undefined;
}
