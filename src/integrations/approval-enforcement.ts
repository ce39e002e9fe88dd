// Whether the API server enforces who may approve (SPEC §3): the shipped
// ValidatingAdmissionPolicy (config/admission/approval-policy.yaml) and its
// binding exist, in Deny mode, matching every create and update of a
// RollbackAttempt. Read at start-up and then periodically; any doubt — an object
// missing, weakened, or unreadable — counts as not enforced, because the
// operator then records no production approval (fail closed).
import {
  AdmissionregistrationV1Api,
  type KubeConfig,
  type V1MatchResources,
  type V1NamedRuleWithOperations,
  type V1ValidatingAdmissionPolicy,
  type V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import { GROUP, PLURALS, VERSION } from '../api/group.ts';
import type { Logger } from '../observability/log.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { ApprovalEnforcement, ApprovalEnforcementPort } from '../ports/kubernetes.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';

export const DEFAULT_APPROVAL_POLICY_NAME = 'ai-operator-approvals';
export const DEFAULT_APPROVAL_POLICY_BINDING_NAME = 'ai-operator-approvals';
export const DEFAULT_CHECK_INTERVAL_MS = 30_000;

const RESOURCE = PLURALS.attempt;
const OPERATIONS = ['CREATE', 'UPDATE'] as const;

export interface EnforcementNames {
  policyName: string;
  bindingName: string;
}

export type EnforcementVerdict = { enforced: true } | { enforced: false; problem: string };

const anyOf = (values: string[] | undefined, wanted: string) => (values ?? []).some((v) => v === '*' || v === wanted);

/** Whether one rule selects every RollbackAttempt for `operation` (a rule limited to some names selects only those). */
function ruleCovers(rule: V1NamedRuleWithOperations, operation: string): boolean {
  return anyOf(rule.apiGroups, GROUP) && anyOf(rule.apiVersions, VERSION)
    && (rule.resources ?? []).some((r) => r === '*' || r === '*/*' || r === RESOURCE)
    && anyOf(rule.operations, operation)
    && (rule.resourceNames ?? []).length === 0
    && (rule.scope === undefined || rule.scope === '*' || rule.scope === 'Namespaced');
}

/** Whether an exclude rule takes any RollbackAttempt out for `operation` (names or not). */
function ruleTouches(rule: V1NamedRuleWithOperations, operation: string): boolean {
  return anyOf(rule.apiGroups, GROUP) && anyOf(rule.apiVersions, VERSION)
    && (rule.resources ?? []).some((r) => r === '*' || r === '*/*' || r === RESOURCE)
    && anyOf(rule.operations, operation)
    && (rule.scope === undefined || rule.scope === '*' || rule.scope === 'Namespaced');
}

const selects = (selector: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] } | undefined) =>
  Object.keys(selector?.matchLabels ?? {}).length > 0 || (selector?.matchExpressions ?? []).length > 0;

/**
 * What in `match` leaves some create or update of a RollbackAttempt unchecked,
 * or undefined. `rulesRequired`: the policy must list rules; a binding without
 * any takes the policy's.
 */
function matchGap(match: V1MatchResources | undefined, rulesRequired: boolean): string | undefined {
  // Whoever may patch an attempt may change its labels: first out of the selector, then approve.
  if (selects(match?.objectSelector)) return 'has an objectSelector, which anyone who may patch a RollbackAttempt\'s labels can step out of';
  const rules = match?.resourceRules ?? [];
  for (const operation of OPERATIONS) {
    if ((rulesRequired || rules.length > 0) && !rules.some((r) => ruleCovers(r, operation))) {
      return `does not match ${operation} of ${RESOURCE}.${GROUP}`;
    }
    if ((match?.excludeResourceRules ?? []).some((r) => ruleTouches(r, operation))) {
      return `excludes ${operation} of ${RESOURCE}.${GROUP}`;
    }
  }
  return undefined;
}

/** Pure: whether these objects, as read, enforce approvals; else the first thing missing, for humans. */
export function evaluateEnforcement(
  policy: V1ValidatingAdmissionPolicy | undefined,
  binding: V1ValidatingAdmissionPolicyBinding | undefined,
  names: EnforcementNames,
): EnforcementVerdict {
  const p = `ValidatingAdmissionPolicy ${names.policyName}`;
  const b = `ValidatingAdmissionPolicyBinding ${names.bindingName}`;
  if (!policy) return { enforced: false, problem: `${p} not found` };
  if (!binding) return { enforced: false, problem: `${b} not found` };
  if (binding.spec?.policyName !== names.policyName) {
    return { enforced: false, problem: `${b} binds ${binding.spec?.policyName ? `policy ${binding.spec.policyName}` : 'no policy'}, not ${names.policyName}` };
  }
  const actions = binding.spec.validationActions ?? [];
  if (!actions.includes('Deny')) return { enforced: false, problem: `${b} validationActions [${actions.join(', ')}] lacks Deny` };
  if (policy.spec?.failurePolicy === 'Ignore') {
    return { enforced: false, problem: `${p} has failurePolicy Ignore: a request whose check cannot be evaluated would be admitted` };
  }
  if ((policy.spec?.validations ?? []).length === 0) return { enforced: false, problem: `${p} has no validations` };
  const policyGap = matchGap(policy.spec?.matchConstraints, true);
  if (policyGap) return { enforced: false, problem: `${p} matchConstraints ${policyGap}` };
  const bindingGap = matchGap(binding.spec.matchResources, false);
  if (bindingGap) return { enforced: false, problem: `${b} matchResources ${bindingGap}` };
  return { enforced: true };
}

/** The two reads the check needs, as AdmissionregistrationV1Api has them. */
export type AdmissionReader = Pick<AdmissionregistrationV1Api, 'readValidatingAdmissionPolicy' | 'readValidatingAdmissionPolicyBinding'>;

export interface ApprovalEnforcementOptions {
  log: Logger;
  metrics?: CallMetrics & { setApprovalEnforced(enforced: boolean): void };
  policyName?: string;
  bindingName?: string;
  intervalMs?: number;
  now?: () => Date;
  timeoutMs?: number;
  backoffMs?: readonly number[];
}

/** The Kubernetes Status message of a failed call, not the client's multi-line dump of body and headers. */
function shortReason(error: IntegrationError): string {
  const body = (error.cause as { body?: unknown } | undefined)?.body;
  try {
    const status = typeof body === 'string' ? JSON.parse(body) as { message?: unknown } : body as { message?: unknown } | undefined;
    if (typeof status?.message === 'string' && status.message !== '') return `${error.code}: ${status.message}`;
  } catch {
    // Not JSON (a proxy's HTML page, say): the first line of the error says enough.
  }
  const cause = error.cause instanceof Error ? error.cause.message : error.message;
  return `${error.code}: ${cause.split('\n')[0]}`;
}

export class ApprovalEnforcementCheck implements ApprovalEnforcementPort {
  readonly names: EnforcementNames;
  readonly #api: AdmissionReader;
  readonly #options: ApprovalEnforcementOptions;
  readonly #now: () => Date;
  readonly #intervalMs: number;
  #state: ApprovalEnforcement = { enforced: false, problem: 'not checked yet' };
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ApprovalEnforcement> | undefined;
  #stopped = false;

  static fromKubeConfig(kubeConfig: KubeConfig, options: ApprovalEnforcementOptions): ApprovalEnforcementCheck {
    return new ApprovalEnforcementCheck(kubeConfig.makeApiClient(AdmissionregistrationV1Api), options);
  }

  constructor(api: AdmissionReader, options: ApprovalEnforcementOptions) {
    this.#api = api;
    this.#options = options;
    this.#now = options.now ?? (() => new Date());
    this.#intervalMs = options.intervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
    this.names = {
      policyName: options.policyName ?? DEFAULT_APPROVAL_POLICY_NAME,
      bindingName: options.bindingName ?? DEFAULT_APPROVAL_POLICY_BINDING_NAME,
    };
    options.metrics?.setApprovalEnforced(false);
  }

  current(): ApprovalEnforcement {
    return this.#state;
  }

  /** Checks now and then every interval; resolves after the first check. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.check();
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** Reads both objects once and updates the state; a check already under way is joined, not repeated. */
  check(): Promise<ApprovalEnforcement> {
    this.#running ??= this.#checkOnce().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    // The next check is timed from the end of this one: a slow API server never stacks checks.
    this.#timer = setTimeout(() => void this.check().finally(() => this.#schedule()), this.#intervalMs);
    this.#timer.unref();
  }

  async #checkOnce(): Promise<ApprovalEnforcement> {
    let verdict: EnforcementVerdict;
    try {
      const [policy, binding] = await Promise.all([
        this.#read('readValidatingAdmissionPolicy', () => this.#api.readValidatingAdmissionPolicy({ name: this.names.policyName })),
        this.#read('readValidatingAdmissionPolicyBinding', () => this.#api.readValidatingAdmissionPolicyBinding({ name: this.names.bindingName })),
      ]);
      verdict = evaluateEnforcement(policy, binding, this.names);
    } catch (error) {
      // call() turns every failed read into an IntegrationError; anything else is a bug here, and still not enforcement.
      if (!(error instanceof IntegrationError)) {
        verdict = { enforced: false, problem: `could not check approval enforcement: ${String(error)}` };
      } else {
        const what = error.call === 'readValidatingAdmissionPolicy'
          ? `ValidatingAdmissionPolicy ${this.names.policyName}` : `ValidatingAdmissionPolicyBinding ${this.names.bindingName}`;
        verdict = { enforced: false, problem: `could not read ${what} (${shortReason(error)})` };
      }
    }
    this.#record(verdict);
    return this.#state;
  }

  async #read<T>(name: string, run: () => Promise<T>): Promise<T | undefined> {
    try {
      return await call(name, run, { classify: classifyHttpError, metrics: this.#options.metrics, timeoutMs: this.#options.timeoutMs ?? 5000, backoffMs: this.#options.backoffMs });
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  #record(verdict: EnforcementVerdict): void {
    const before = this.#state;
    if (verdict.enforced) {
      this.#state = { enforced: true, since: before.enforced ? before.since : this.#now().toISOString() };
    } else {
      this.#state = { enforced: false, problem: verdict.problem };
    }
    this.#options.metrics?.setApprovalEnforced(verdict.enforced);
    const fields = { policy: this.names.policyName, binding: this.names.bindingName };
    if (verdict.enforced && !before.enforced) {
      this.#options.log.info('Confirmed approvals are enforced by the API server', fields);
    } else if (!verdict.enforced && (before.enforced || before.problem !== verdict.problem)) {
      this.#options.log.warn('Approvals are not enforced by the API server; no production approval will be recorded', { ...fields, problem: verdict.problem });
    }
  }
}
