// Which Applications are monitored and with what settings: a RollbackPolicy's
// fields over the operator's environment defaults (SPEC §3, §12).
import type { Config } from '../config.ts';
import type { Environment, Settings } from '../fsm/record.ts';
import { DEFAULT_UPTIME_QUERY } from '../modules/candidate-resolver.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { MonitoredApp } from '../reconcilers/application.ts';

export const OPT_IN_LABEL = 'ai-operator.enabled';

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
  merge?: { ciTimeoutSeconds?: number; approvalTimeoutSeconds?: number; method?: Settings['mergeMethod']; approvers?: { users?: string[]; groups?: string[] } };
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

export type Defaults = Pick<Config, 'pollIntervalSec' | 'degradationPersistenceChecks' | 'candidateSearchTimeoutSec' | 'ciWaitTimeoutSec' |
  'mergeApprovalTimeoutSec' | 'healthRestorationSec' | 'recoveryTimeoutSec' | 'cooldownSec' | 'dryRun' | 'monitoredApps'>;

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
    intervalSeconds: spec.detection?.intervalSeconds ?? defaults.pollIntervalSec,
    persistenceChecks: spec.detection?.persistenceChecks ?? defaults.degradationPersistenceChecks,
    uptimeQuery: spec.candidate?.uptimeQuery ?? DEFAULT_UPTIME_QUERY,
    minUptime: spec.candidate?.minUptime ?? 0.99,
    window: spec.candidate?.window ?? '24h',
    maxCommits: spec.candidate?.maxCommits ?? 50,
    searchTimeoutSeconds: spec.candidate?.searchTimeoutSeconds ?? defaults.candidateSearchTimeoutSec,
    ciTimeoutSeconds: spec.merge?.ciTimeoutSeconds ?? defaults.ciWaitTimeoutSec,
    approvalTimeoutSeconds: spec.merge?.approvalTimeoutSeconds ?? defaults.mergeApprovalTimeoutSec,
    mergeMethod: spec.merge?.method ?? 'squash',
    approvers: { users: spec.merge?.approvers?.users ?? [], groups: spec.merge?.approvers?.groups ?? [] },
    healthRestorationSeconds: spec.healthRestorationSeconds ?? defaults.healthRestorationSec,
    recoveryTimeoutSeconds: spec.recoveryTimeoutSeconds ?? defaults.recoveryTimeoutSec,
    cooldownSeconds: spec.cooldownSeconds ?? defaults.cooldownSec,
    dryRun: (spec.dryRun ?? false) || defaults.dryRun,
  };
}

/** The app's environment: the policy's, else its `environment` label; anything unknown is production. */
export function environmentOf(app: ApplicationView, policy?: RollbackPolicy): Environment {
  return policy?.spec.environment ?? (app.labels.environment === 'staging' ? 'staging' : 'production');
}

/**
 * Whether and how an app is monitored. The first policy of its namespace (by name) that
 * names or selects it wins; otherwise the opt-in label or MONITORED_APPS with the
 * environment defaults.
 */
export function monitoringFor(app: ApplicationView, policies: RollbackPolicy[], defaults: Defaults): MonitoredApp | undefined {
  // Like other namespaced policies (NetworkPolicy, PodDisruptionBudget), a
  // RollbackPolicy governs the Applications of its own namespace.
  const sorted = policies.filter((p) => p.namespace === app.ref.namespace).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const policy = sorted.find((p) => (p.spec.applications ?? []).includes(app.ref.name) || matchesSelector(app.labels, p.spec.selector ?? { matchLabels: { [OPT_IN_LABEL]: 'true' } }));
  if (policy) {
    return { settings: settingsFrom(defaults, policy.spec), environment: environmentOf(app, policy), policyRef: { name: policy.name, namespace: policy.namespace }, suspended: policy.spec.suspend ?? false };
  }
  if (app.labels[OPT_IN_LABEL] === 'true' || defaults.monitoredApps.includes(app.ref.name)) {
    return { settings: settingsFrom(defaults), environment: environmentOf(app), suspended: false };
  }
  return undefined;
}
