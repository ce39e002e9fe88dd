// Whether the API server enforces who may approve (SPEC §3): the shipped
// ValidatingAdmissionPolicy (config/admission/approval-policy.yaml) and its
// binding exist, in Deny mode, matching every create and update of a
// RollbackAttempt in the attempt's namespace. Read at start-up and then
// periodically. A gap — an object missing or weakened, the namespace outside a
// selector — is not enforced: no production approval is recorded, and an
// annotation written meanwhile is taken away (fail closed). A read that fails is
// not a gap but `unknown`: nothing is recorded until the next read, nothing is
// taken away. When enforcement began is kept in etcd with the uid and
// generation of both objects (and the namespace's uid and resourceVersion): while
// they are unchanged, their objects cannot have been missing or weaker in
// between, so a restart or a blip keeps it.
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1LabelSelector,
  type V1MatchResources,
  type V1NamedRuleWithOperations,
  type V1ValidatingAdmissionPolicy,
  type V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import { GROUP, PLURALS, VERSION } from '../api/group.ts';
import type { Logger } from '../observability/log.ts';
import { matchesSelector, type LabelSelector } from '../policy/settings.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { ApprovalEnforcement, ApprovalEnforcementPort, EnforcementConfirmation, EnforcementMemoryPort } from '../ports/kubernetes.ts';
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

/** A label selector as written in a policy, for a message: `{matchLabels: {team: a}}`. */
function shownSelector(selector: V1LabelSelector): string {
  return JSON.stringify(selector).replace(/"/g, '').slice(0, 200);
}

/**
 * Whether both objects' selectors admit RollbackAttempts of a namespace with these labels: undefined when
 * they do, else what leaves it out. A `matchConditions` the operator cannot evaluate counts as a gap.
 */
export function namespaceGap(
  policy: V1ValidatingAdmissionPolicy,
  binding: V1ValidatingAdmissionPolicyBinding,
  namespace: { name: string; labels: Record<string, string> },
  names: EnforcementNames,
): string | undefined {
  const p = `ValidatingAdmissionPolicy ${names.policyName}`;
  const b = `ValidatingAdmissionPolicyBinding ${names.bindingName}`;
  // Any condition may exempt some requests; the operator does not evaluate CEL, so it cannot tell which.
  const conditions = policy.spec?.matchConditions ?? [];
  if (conditions.length > 0) return `${p} has matchConditions (${conditions.map((c) => c.name).join(', ')}), which may leave requests in ${namespace.name} unchecked`;
  const scopes: Array<[string, V1LabelSelector | undefined]> = [
    [`${p} matchConstraints.namespaceSelector`, policy.spec?.matchConstraints?.namespaceSelector],
    [`${b} matchResources.namespaceSelector`, binding.spec?.matchResources?.namespaceSelector],
  ];
  for (const [what, selector] of scopes) {
    if (selector && !matchesSelector(namespace.labels, selector as LabelSelector)) return `${what} ${shownSelector(selector)} does not select namespace ${namespace.name}`;
  }
  return undefined;
}

/** The reads the check needs, as AdmissionregistrationV1Api and CoreV1Api have them. */
export type AdmissionReader = Pick<AdmissionregistrationV1Api, 'readValidatingAdmissionPolicy' | 'readValidatingAdmissionPolicyBinding'>
  & Partial<Pick<CoreV1Api, 'readNamespace'>>;

export interface ApprovalEnforcementOptions {
  log: Logger;
  metrics?: CallMetrics & { setApprovalEnforced(enforced: boolean): void; setApprovalUnenforcedNamespaces?(count: number): void };
  /** Where the confirmation is kept across restarts (etcd); without it, each start confirms afresh. */
  memory?: EnforcementMemoryPort;
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

interface NamespaceFacts {
  uid: string;
  resourceVersion: string;
  labels: Record<string, string>;
  readAt: number;
}

/** The global verdict: both objects in force since `since`, a gap, or not known now. */
type GlobalState =
  | { state: 'enforced'; since: string; policy: V1ValidatingAdmissionPolicy; binding: V1ValidatingAdmissionPolicyBinding }
  | { state: 'gap'; problem: string }
  | { state: 'unknown'; problem: string };

const identityOf = (o: { metadata?: { uid?: string; generation?: number } }) => ({ uid: o.metadata?.uid ?? '', generation: o.metadata?.generation ?? 0 });
const sameObject = (a: { uid: string; generation: number }, b: { uid: string; generation: number }) => a.uid === b.uid && a.generation === b.generation;

export class ApprovalEnforcementCheck implements ApprovalEnforcementPort {
  readonly names: EnforcementNames;
  readonly #api: AdmissionReader;
  readonly #options: ApprovalEnforcementOptions;
  readonly #now: () => Date;
  readonly #intervalMs: number;
  #global: GlobalState = { state: 'unknown', problem: 'not checked yet' };
  /** The last confirmation, as kept in etcd: loaded at start, rewritten when it changes. */
  #confirmation: EnforcementConfirmation | undefined;
  #saving: Promise<void> = Promise.resolve();
  #loaded = false;
  /** Namespaces asked about (their attempts wait for approvals), read at most once per interval. */
  readonly #namespaces = new Map<string, NamespaceFacts>();
  readonly #uncovered = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  static fromKubeConfig(kubeConfig: KubeConfig, options: ApprovalEnforcementOptions): ApprovalEnforcementCheck {
    const admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    return new ApprovalEnforcementCheck({
      readValidatingAdmissionPolicy: (p) => admission.readValidatingAdmissionPolicy(p),
      readValidatingAdmissionPolicyBinding: (p) => admission.readValidatingAdmissionPolicyBinding(p),
      readNamespace: (p) => core.readNamespace(p),
    } as AdmissionReader, options);
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

  /** Whether the policy and binding are in force at all (the namespaces aside), for logs and tests. */
  current(): ApprovalEnforcement {
    const g = this.#global;
    if (g.state === 'enforced') return { enforced: true, since: g.since };
    return g.state === 'gap' ? { enforced: false, problem: g.problem } : { enforced: false, problem: g.problem, unknown: true };
  }

  async forNamespace(namespace: string): Promise<ApprovalEnforcement> {
    const g = this.#global;
    if (g.state !== 'enforced') return this.current();
    let facts = this.#namespaces.get(namespace);
    if (!facts || this.#now().getTime() - facts.readAt >= this.#intervalMs) {
      try {
        facts = await this.#readNamespace(namespace);
      } catch (error) {
        return { enforced: false, unknown: true, problem: `could not read Namespace ${namespace} (${error instanceof IntegrationError ? shortReason(error) : String(error)})` };
      }
    }
    return this.#judgeNamespace(namespace, facts, g);
  }

  /** Loads the kept confirmation, checks now and then every interval; resolves after the first check. */
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

  /** Reads both objects (and the namespaces asked about) once; a check already under way is joined. */
  async check(): Promise<ApprovalEnforcement> {
    this.#running ??= this.#checkOnce().finally(() => { this.#running = undefined; });
    await this.#running;
    return this.current();
  }

  #schedule(): void {
    if (this.#stopped) return;
    // The next check is timed from the end of this one: a slow API server never stacks checks.
    this.#timer = setTimeout(() => void this.check().finally(() => this.#schedule()), this.#intervalMs);
    this.#timer.unref();
  }

  async #checkOnce(): Promise<void> {
    if (!this.#loaded) {
      try {
        this.#confirmation = await this.#options.memory?.load();
        this.#loaded = true;
      } catch (error) {
        // etcd unreadable: judged as unknown until it can be read (a fresh confirmation would forget an older one).
        this.#record({ state: 'unknown', problem: `could not read the kept enforcement confirmation (${(error as Error).message})` });
        return;
      }
    }
    let next: GlobalState;
    try {
      const [policy, binding] = await Promise.all([
        this.#read('readValidatingAdmissionPolicy', () => this.#api.readValidatingAdmissionPolicy({ name: this.names.policyName })),
        this.#read('readValidatingAdmissionPolicyBinding', () => this.#api.readValidatingAdmissionPolicyBinding({ name: this.names.bindingName })),
      ]);
      const verdict = evaluateEnforcement(policy, binding, this.names);
      next = verdict.enforced ? { state: 'enforced', since: this.#sinceFor(policy!, binding!), policy: policy!, binding: binding! } : { state: 'gap', problem: verdict.problem };
    } catch (error) {
      if (!(error instanceof IntegrationError)) {
        next = { state: 'unknown', problem: `could not check approval enforcement: ${String(error)}` };
      } else {
        const what = error.call === 'readValidatingAdmissionPolicy'
          ? `ValidatingAdmissionPolicy ${this.names.policyName}` : `ValidatingAdmissionPolicyBinding ${this.names.bindingName}`;
        next = { state: 'unknown', problem: `could not read ${what} (${shortReason(error)})` };
      }
    }
    await this.#settle(next);
    this.#record(next);
    if (next.state === 'enforced') {
      // The namespaces whose attempts asked: their labels decide their coverage, judged (and kept) here too.
      for (const namespace of [...this.#namespaces.keys()]) {
        try {
          this.#judgeNamespace(namespace, await this.#readNamespace(namespace), next);
        } catch {
          // Unknown for now: forNamespace says so when asked.
        }
      }
    }
  }

  /** Since when these objects have been in force: the kept confirmation's time while they are unchanged. */
  #sinceFor(policy: V1ValidatingAdmissionPolicy, binding: V1ValidatingAdmissionPolicyBinding): string {
    const kept = this.#confirmation;
    if (kept && sameObject(kept.policy, identityOf(policy)) && sameObject(kept.binding, identityOf(binding))) return kept.since;
    return this.#now().toISOString();
  }

  /** Keeps the confirmation in step with what was read: a new one when the objects changed, none after a gap. */
  async #settle(next: GlobalState): Promise<void> {
    if (next.state === 'unknown') return;
    const kept = this.#confirmation;
    let wanted: EnforcementConfirmation | undefined;
    if (next.state === 'enforced') {
      const same = kept && kept.since === next.since;
      wanted = same ? kept : { policy: identityOf(next.policy), binding: identityOf(next.binding), since: next.since, namespaces: {} };
    }
    if (wanted === kept) return;
    await this.#keep(wanted);
  }

  #keep(confirmation: EnforcementConfirmation | undefined): Promise<void> {
    this.#confirmation = confirmation;
    // One save at a time, each of the newest confirmation: two namespaces judged at once would otherwise race
    // their saves, and the older could land last, losing a namespace's entry (and the time it changed).
    this.#saving = this.#saving.then(async () => {
      try {
        await this.#options.memory?.save(this.#confirmation);
      } catch (error) {
        // Kept in memory meanwhile; the next change writes it again. A restart then confirms afresh: safe, only later.
        this.#options.log.warn('Could not keep the approval enforcement confirmation in etcd', { error: (error as Error).message });
      }
    });
    return this.#saving;
  }

  async #readNamespace(namespace: string): Promise<NamespaceFacts> {
    if (!this.#api.readNamespace) throw new Error('no Namespace reader configured');
    const read = this.#api.readNamespace.bind(this.#api);
    const object = await call('readNamespace', () => read({ name: namespace }), {
      classify: classifyHttpError, metrics: this.#options.metrics, timeoutMs: this.#options.timeoutMs ?? 5000, backoffMs: this.#options.backoffMs,
    });
    const facts = { uid: object.metadata?.uid ?? '', resourceVersion: object.metadata?.resourceVersion ?? '', labels: object.metadata?.labels ?? {}, readAt: this.#now().getTime() };
    this.#namespaces.set(namespace, facts);
    return facts;
  }

  /** The namespace's verdict; its coverage kept with the confirmation, so it too survives a restart unchanged. */
  #judgeNamespace(namespace: string, facts: NamespaceFacts, g: Extract<GlobalState, { state: 'enforced' }>): ApprovalEnforcement {
    const gap = namespaceGap(g.policy, g.binding, { name: namespace, labels: facts.labels }, this.names);
    const kept = this.#confirmation;
    const entry = kept?.namespaces[namespace];
    if (gap) {
      this.#uncovered.add(namespace);
      this.#options.metrics?.setApprovalUnenforcedNamespaces?.(this.#uncovered.size);
      if (kept && entry) {
        const { [namespace]: _gone, ...rest } = kept.namespaces;
        void this.#keep({ ...kept, namespaces: rest });
      }
      return { enforced: false, problem: gap };
    }
    if (this.#uncovered.delete(namespace)) this.#options.metrics?.setApprovalUnenforcedNamespaces?.(this.#uncovered.size);
    // Any change to the Namespace seen since it was first judged (its labels decide coverage) starts its time
    // afresh. At first sight its past is not known: it is taken as covered since the objects were confirmed
    // (relabelling a Namespace out of a selector and back is a cluster admin's act — README, Trust model).
    const unchanged = entry && entry.uid === facts.uid && entry.resourceVersion === facts.resourceVersion;
    const nsSince = unchanged ? entry.since : entry ? this.#now().toISOString() : g.since;
    if (!unchanged && kept) void this.#keep({ ...kept, namespaces: { ...kept.namespaces, [namespace]: { uid: facts.uid, resourceVersion: facts.resourceVersion, since: nsSince } } });
    const since = Date.parse(nsSince) > Date.parse(g.since) ? nsSince : g.since;
    return { enforced: true, since };
  }

  async #read<T>(name: string, run: () => Promise<T>): Promise<T | undefined> {
    try {
      return await call(name, run, { classify: classifyHttpError, metrics: this.#options.metrics, timeoutMs: this.#options.timeoutMs ?? 5000, backoffMs: this.#options.backoffMs });
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  #record(next: GlobalState): void {
    const before = this.#global;
    this.#global = next;
    this.#options.metrics?.setApprovalEnforced(next.state === 'enforced');
    const fields = { policy: this.names.policyName, binding: this.names.bindingName };
    if (next.state === 'enforced' && before.state !== 'enforced') {
      this.#options.log.info('Confirmed approvals are enforced by the API server', { ...fields, since: next.since });
    } else if (next.state !== 'enforced' && (before.state === 'enforced' || (before as { problem?: string }).problem !== next.problem)) {
      this.#options.log.warn(next.state === 'gap'
        ? 'Approvals are not enforced by the API server; no production approval will be recorded'
        : 'Could not tell whether approvals are enforced; none is recorded until it is confirmed', { ...fields, problem: next.problem });
    }
  }
}
