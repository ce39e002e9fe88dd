import { readFileSync } from 'node:fs';
import type { V1ValidatingAdmissionPolicy, V1ValidatingAdmissionPolicyBinding } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import type { EnforcementConfirmation } from '../ports/kubernetes.ts';
import { ApprovalEnforcementCheck, evaluateEnforcement, type AdmissionReader } from './approval-enforcement.ts';

// The objects we ship are the reference for "enforced".
const shipped = parseAllDocuments(readFileSync(new URL('../../config/admission/approval-policy.yaml', import.meta.url), 'utf8')).map((d) => d.toJS());
const shippedPolicy = (): V1ValidatingAdmissionPolicy => structuredClone(shipped.find((o) => o.kind === 'ValidatingAdmissionPolicy'));
const shippedBinding = (): V1ValidatingAdmissionPolicyBinding => structuredClone(shipped.find((o) => o.kind === 'ValidatingAdmissionPolicyBinding'));
const names = { policyName: 'ai-operator-approvals', bindingName: 'ai-operator-approvals' };

describe('evaluateEnforcement', () => {
  it('counts the shipped policy and binding as enforced', () => {
    expect(evaluateEnforcement(shippedPolicy(), shippedBinding(), names)).toEqual({ enforced: true });
  });

  it('counts a binding scoped to namespaces as enforced: a cluster admin decides where approvals apply', () => {
    const binding = shippedBinding();
    binding.metadata!.name = 'ai-operator-approvals-team-a';
    binding.spec!.matchResources = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'team-a' } } };
    expect(evaluateEnforcement(shippedPolicy(), binding, { ...names, bindingName: 'ai-operator-approvals-team-a' })).toEqual({ enforced: true });
  });

  it('accepts rules written with wildcards', () => {
    const policy = shippedPolicy();
    policy.spec!.matchConstraints = { resourceRules: [{ apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['*'] }] };
    expect(evaluateEnforcement(policy, shippedBinding(), names)).toEqual({ enforced: true });
  });

  const broken: Array<[string, (p: V1ValidatingAdmissionPolicy, b: V1ValidatingAdmissionPolicyBinding) => void, string]> = [
    ['the binding binds another policy', (_p, b) => { b.spec!.policyName = 'something-else'; },
      'ValidatingAdmissionPolicyBinding ai-operator-approvals binds policy something-else, not ai-operator-approvals'],
    ['the binding only warns', (_p, b) => { b.spec!.validationActions = ['Warn']; },
      'ValidatingAdmissionPolicyBinding ai-operator-approvals validationActions [Warn] lacks Deny'],
    ['the binding only audits', (_p, b) => { b.spec!.validationActions = ['Audit']; },
      'ValidatingAdmissionPolicyBinding ai-operator-approvals validationActions [Audit] lacks Deny'],
    ['the policy ignores its own failures', (p) => { p.spec!.failurePolicy = 'Ignore'; },
      'ValidatingAdmissionPolicy ai-operator-approvals has failurePolicy Ignore: a request whose check cannot be evaluated would be admitted'],
    ['the policy has no validations', (p) => { p.spec!.validations = []; },
      'ValidatingAdmissionPolicy ai-operator-approvals has no validations'],
    ['the policy matches CREATE only', (p) => { p.spec!.matchConstraints!.resourceRules![0]!.operations = ['CREATE']; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints does not match UPDATE of rollbackattempts.ai-operator.io'],
    ['the policy matches another resource', (p) => { p.spec!.matchConstraints!.resourceRules![0]!.resources = ['rollbackpolicies']; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints does not match CREATE of rollbackattempts.ai-operator.io'],
    ['the policy matches another group', (p) => { p.spec!.matchConstraints!.resourceRules![0]!.apiGroups = ['example.com']; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints does not match CREATE of rollbackattempts.ai-operator.io'],
    ['the policy matches some names only', (p) => { p.spec!.matchConstraints!.resourceRules![0]!.resourceNames = ['one-attempt']; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints does not match CREATE of rollbackattempts.ai-operator.io'],
    ['the policy matches cluster-scoped objects only', (p) => { p.spec!.matchConstraints!.resourceRules![0]!.scope = 'Cluster'; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints does not match CREATE of rollbackattempts.ai-operator.io'],
    ['the policy has no rules', (p) => { p.spec!.matchConstraints = {}; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints does not match CREATE of rollbackattempts.ai-operator.io'],
    ['the policy excludes updates of some attempts', (p) => {
      p.spec!.matchConstraints!.excludeResourceRules = [{ apiGroups: ['ai-operator.io'], apiVersions: ['v1alpha1'], operations: ['UPDATE'], resources: ['rollbackattempts'], resourceNames: ['x'] }];
    }, 'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints excludes UPDATE of rollbackattempts.ai-operator.io'],
    ['the policy selects objects by label', (p) => { p.spec!.matchConstraints!.objectSelector = { matchLabels: { env: 'prod' } }; },
      'ValidatingAdmissionPolicy ai-operator-approvals matchConstraints has an objectSelector, which anyone who may patch a RollbackAttempt\'s labels can step out of'],
    ['the binding selects objects by label', (_p, b) => { b.spec!.matchResources = { objectSelector: { matchExpressions: [{ key: 'env', operator: 'Exists' }] } }; },
      'ValidatingAdmissionPolicyBinding ai-operator-approvals matchResources has an objectSelector, which anyone who may patch a RollbackAttempt\'s labels can step out of'],
    ['the binding narrows the rules to CREATE', (_p, b) => {
      b.spec!.matchResources = { resourceRules: [{ apiGroups: ['ai-operator.io'], apiVersions: ['*'], operations: ['CREATE'], resources: ['rollbackattempts'] }] };
    }, 'ValidatingAdmissionPolicyBinding ai-operator-approvals matchResources does not match UPDATE of rollbackattempts.ai-operator.io'],
    ['the binding excludes rollbackattempts', (_p, b) => {
      b.spec!.matchResources = { excludeResourceRules: [{ apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['rollbackattempts'] }] };
    }, 'ValidatingAdmissionPolicyBinding ai-operator-approvals matchResources excludes CREATE of rollbackattempts.ai-operator.io'],
  ];

  it.each(broken)('is not enforced when %s', (_title, breakIt, problem) => {
    const policy = shippedPolicy();
    const binding = shippedBinding();
    breakIt(policy, binding);
    expect(evaluateEnforcement(policy, binding, names)).toEqual({ enforced: false, problem });
  });

  it('names what is missing', () => {
    expect(evaluateEnforcement(undefined, shippedBinding(), names)).toEqual({ enforced: false, problem: 'ValidatingAdmissionPolicy ai-operator-approvals not found' });
    expect(evaluateEnforcement(shippedPolicy(), undefined, names)).toEqual({ enforced: false, problem: 'ValidatingAdmissionPolicyBinding ai-operator-approvals not found' });
    expect(evaluateEnforcement(undefined, undefined, { policyName: 'p', bindingName: 'b' })).toEqual({ enforced: false, problem: 'ValidatingAdmissionPolicy p not found' });
  });
});

/** An API server whose two objects a test sets, and whose next answer may be an error. */
class FakeAdmission implements AdmissionReader {
  policy: V1ValidatingAdmissionPolicy | undefined = shippedPolicy();
  binding: V1ValidatingAdmissionPolicyBinding | undefined = shippedBinding();
  failWith: { code: number; body: string } | undefined;
  reads = 0;

  async readValidatingAdmissionPolicy(param: { name: string }): Promise<V1ValidatingAdmissionPolicy> {
    this.reads++;
    return this.answer(this.policy, 'validatingadmissionpolicies', param.name);
  }

  async readValidatingAdmissionPolicyBinding(param: { name: string }): Promise<V1ValidatingAdmissionPolicyBinding> {
    return this.answer(this.binding, 'validatingadmissionpolicybindings', param.name);
  }

  private answer<T>(object: T | undefined, kind: string, name: string): T {
    // Shaped as client-node's ApiException: a numeric code and the Status body as text.
    if (this.failWith) throw Object.assign(new Error(`HTTP-Code: ${this.failWith.code}\nBody: ${this.failWith.body}`), this.failWith);
    if (!object) throw Object.assign(new Error('HTTP-Code: 404'), { code: 404, body: JSON.stringify({ kind: 'Status', message: `${kind} "${name}" not found` }) });
    return structuredClone(object);
  }
}

function setup(api = new FakeAdmission(), intervalMs?: number) {
  const lines: Array<Record<string, unknown>> = [];
  let clock = Date.parse('2026-12-01T10:00:00Z');
  const metrics = new Metrics();
  const check = new ApprovalEnforcementCheck(api as unknown as AdmissionReader, {
    log: createLogger('DEBUG', {}, (l) => lines.push(JSON.parse(l) as Record<string, unknown>)),
    metrics, now: () => new Date(clock), backoffMs: [], ...(intervalMs === undefined ? {} : { intervalMs }),
  });
  const gauge = async () => /^ai_operator_approval_enforced (\d)$/m.exec(await metrics.registry.metrics())?.[1];
  return { api, check, lines, gauge, advance: (ms: number) => { clock += ms; } };
}

describe('ApprovalEnforcementCheck', () => {
  it('is not enforced before its first check', async () => {
    const { check, gauge } = setup();
    expect(check.current()).toEqual({ enforced: false, problem: 'not checked yet', unknown: true });
    expect(await gauge()).toBe('0');
  });

  it('keeps since across an unbroken run and starts it again after a break', async () => {
    const { api, check, advance, gauge } = setup();
    expect(await check.check()).toEqual({ enforced: true, since: '2026-12-01T10:00:00.000Z' });
    expect(await gauge()).toBe('1');
    advance(30_000);
    expect(await check.check()).toEqual({ enforced: true, since: '2026-12-01T10:00:00.000Z' });
    api.binding = undefined;
    advance(30_000);
    expect(await check.check()).toEqual({ enforced: false, problem: 'ValidatingAdmissionPolicyBinding ai-operator-approvals not found' });
    expect(await gauge()).toBe('0');
    api.binding = shippedBinding();
    advance(30_000);
    expect(await check.check()).toEqual({ enforced: true, since: '2026-12-01T10:01:30.000Z' });
  });

  it('fails closed when the API server cannot be read, saying why in one line: unknown, not a gap, and since survives it', async () => {
    const { api, check, gauge, advance } = setup();
    await check.check();
    api.failWith = { code: 403, body: JSON.stringify({ kind: 'Status', message: 'validatingadmissionpolicies.admissionregistration.k8s.io "ai-operator-approvals" is forbidden: User "system:serviceaccount:ai-operator:ai-operator" cannot get resource' }) };
    const state = await check.check();
    expect(state).toEqual({
      enforced: false, unknown: true,
      problem: 'could not read ValidatingAdmissionPolicy ai-operator-approvals (PERMISSION_DENIED: validatingadmissionpolicies.admissionregistration.k8s.io "ai-operator-approvals" is forbidden: User "system:serviceaccount:ai-operator:ai-operator" cannot get resource)',
    });
    expect(await gauge()).toBe('0');
    api.failWith = { code: 503, body: '<html>bad gateway</html>' };
    expect((await check.check()).problem).toMatch(/^could not read ValidatingAdmissionPolicy ai-operator-approvals \(UNAVAILABLE: HTTP-Code: 503\)$/);
    // The objects are unchanged when they can be read again: enforcement never broke.
    delete api.failWith;
    advance(60_000);
    expect(await check.check()).toEqual({ enforced: true, since: '2026-12-01T10:00:00.000Z' });
  });

  it('logs once per change of state, and again when the problem changes', async () => {
    const { api, check, lines } = setup();
    await check.check();
    await check.check();
    api.binding!.spec!.validationActions = ['Warn'];
    await check.check();
    await check.check();
    api.binding = undefined;
    await check.check();
    await check.check();
    api.binding = shippedBinding();
    await check.check();
    expect(lines.map((l) => [l.level, l.message, l.problem])).toEqual([
      ['INFO', 'Confirmed approvals are enforced by the API server', undefined],
      ['WARN', 'Approvals are not enforced by the API server; no production approval will be recorded', 'ValidatingAdmissionPolicyBinding ai-operator-approvals validationActions [Warn] lacks Deny'],
      ['WARN', 'Approvals are not enforced by the API server; no production approval will be recorded', 'ValidatingAdmissionPolicyBinding ai-operator-approvals not found'],
      ['INFO', 'Confirmed approvals are enforced by the API server', undefined],
    ]);
  });

  it('checks at start and then every interval until stopped', async () => {
    const { api, check } = setup(new FakeAdmission(), 5);
    await check.start();
    expect(api.reads).toBe(1);
    expect(check.current().enforced).toBe(true);
    api.binding!.spec!.validationActions = ['Warn'];
    await expect.poll(() => check.current().enforced, { timeout: 2000, interval: 5 }).toBe(false);
    await check.stop();
    const reads = api.reads;
    await new Promise((r) => setTimeout(r, 50));
    expect(api.reads).toBe(reads);
  });

  it('joins a check already under way instead of reading twice', async () => {
    const { api, check } = setup();
    await Promise.all([check.check(), check.check(), check.check()]);
    expect(api.reads).toBe(1);
  });

  it('reads the names it was given', async () => {
    const api = new FakeAdmission();
    const seen: string[] = [];
    const reader: AdmissionReader = {
      readValidatingAdmissionPolicy: async (p: { name: string }) => { seen.push(`policy ${p.name}`); return api.readValidatingAdmissionPolicy(p); },
      readValidatingAdmissionPolicyBinding: async (p: { name: string }) => { seen.push(`binding ${p.name}`); throw Object.assign(new Error('HTTP-Code: 404'), { code: 404 }); },
    } as unknown as AdmissionReader;
    const check = new ApprovalEnforcementCheck(reader, { log: createLogger('ERROR'), policyName: 'approvals.example.com', bindingName: 'approvals-team-a', backoffMs: [] });
    expect(await check.check()).toEqual({ enforced: false, problem: 'ValidatingAdmissionPolicyBinding approvals-team-a not found' });
    expect(seen.sort()).toEqual(['binding approvals-team-a', 'policy approvals.example.com']);
  });
});

describe('ApprovalEnforcementCheck: since, kept across restarts, and judged per namespace', () => {
  class Memory {
    kept: EnforcementConfirmation | undefined;
    async load() { return this.kept === undefined ? undefined : structuredClone(this.kept); }
    async save(c: EnforcementConfirmation | undefined) { this.kept = c === undefined ? undefined : structuredClone(c); }
  }
  const namespaces: Record<string, { uid: string; resourceVersion: string; labels: Record<string, string> }> = {
    'team-a': { uid: 'ns-a', resourceVersion: '10', labels: { 'kubernetes.io/metadata.name': 'team-a', approvals: 'enforced' } },
    'team-b': { uid: 'ns-b', resourceVersion: '11', labels: { 'kubernetes.io/metadata.name': 'team-b' } },
  };
  function withNamespaces(api: FakeAdmission) {
    return Object.assign(api, {
      readNamespace: async ({ name }: { name: string }) => {
        const ns = namespaces[name];
        if (!ns) throw Object.assign(new Error('HTTP-Code: 404'), { code: 404 });
        return { metadata: { name, uid: ns.uid, resourceVersion: ns.resourceVersion, labels: ns.labels } };
      },
    });
  }
  function start(api: FakeAdmission, memory: Memory, at: string) {
    let clock = Date.parse(at);
    const check = new ApprovalEnforcementCheck(withNamespaces(api) as unknown as AdmissionReader, {
      log: createLogger('ERROR'), memory, now: () => new Date(clock), backoffMs: [],
    });
    return { check, advance: (ms: number) => { clock += ms; } };
  }

  it('keeps since across a restart while the policy and binding keep their uid and generation; a change starts it again', async () => {
    const api = new FakeAdmission();
    api.policy!.metadata = { ...api.policy!.metadata, uid: 'p1', generation: 1 };
    api.binding!.metadata = { ...api.binding!.metadata, uid: 'b1', generation: 1 };
    const memory = new Memory();
    const first = start(api, memory, '2026-12-01T10:00:00Z');
    expect(await first.check.check()).toEqual({ enforced: true, since: '2026-12-01T10:00:00.000Z' });
    // A new process an hour later: the same objects, so the same since.
    const second = start(api, memory, '2026-12-01T11:00:00Z');
    expect(await second.check.check()).toEqual({ enforced: true, since: '2026-12-01T10:00:00.000Z' });
    // The binding was changed (weakened and restored, say) while nobody watched: its generation moved.
    api.binding!.metadata = { ...api.binding!.metadata, generation: 3 };
    const third = start(api, memory, '2026-12-01T12:00:00Z');
    expect(await third.check.check()).toEqual({ enforced: true, since: '2026-12-01T12:00:00.000Z' });
    // Deleted and created again: a new uid.
    api.binding!.metadata = { ...api.binding!.metadata, uid: 'b2', generation: 3 };
    expect(await start(api, memory, '2026-12-01T13:00:00Z').check.check()).toEqual({ enforced: true, since: '2026-12-01T13:00:00.000Z' });
  });

  it('forgets the confirmation after a gap, so a restart never carries enforcement over one', async () => {
    const api = new FakeAdmission();
    api.policy!.metadata = { ...api.policy!.metadata, uid: 'p1', generation: 1 };
    api.binding!.metadata = { ...api.binding!.metadata, uid: 'b1', generation: 1 };
    const memory = new Memory();
    const { check, advance } = start(api, memory, '2026-12-01T10:00:00Z');
    await check.check();
    api.binding!.spec!.validationActions = ['Warn'];
    advance(30_000);
    expect((await check.check()).enforced).toBe(false);
    expect(memory.kept).toBeUndefined();
  });

  it('judges a namespace by the selectors of both objects, naming the one that leaves it out', async () => {
    const api = new FakeAdmission();
    api.binding!.spec!.matchResources = { namespaceSelector: { matchLabels: { approvals: 'enforced' } } };
    const { check } = start(api, new Memory(), '2026-12-01T10:00:00Z');
    await check.check();
    expect(await check.forNamespace('team-a')).toEqual({ enforced: true, since: '2026-12-01T10:00:00.000Z' });
    expect(await check.forNamespace('team-b')).toEqual({
      enforced: false, problem: 'ValidatingAdmissionPolicyBinding ai-operator-approvals matchResources.namespaceSelector {matchLabels:{approvals:enforced}} does not select namespace team-b',
    });
    api.binding!.spec!.matchResources = {};
    api.policy!.spec!.matchConditions = [{ name: 'not-bots', expression: "!request.userInfo.username.startsWith('bot')" }];
    await check.check();
    expect((await check.forNamespace('team-a')).problem).toBe('ValidatingAdmissionPolicy ai-operator-approvals has matchConditions (not-bots), which may leave requests in team-a unchecked');
  });

  it('starts a namespace\'s time afresh when the Namespace changed (its labels decide coverage)', async () => {
    const api = new FakeAdmission();
    const memory = new Memory();
    const { check, advance } = start(api, memory, '2026-12-01T10:00:00Z');
    await check.check();
    advance(60_000);
    // First seen a minute after the objects were confirmed: taken as covered since then
    expect((await check.forNamespace('team-a')).since).toBe('2026-12-01T10:00:00.000Z');
    namespaces['team-a']!.resourceVersion = '12';
    advance(60_000);
    expect((await check.forNamespace('team-a')).since).toBe('2026-12-01T10:02:00.000Z');
  });

  it('keeps the newest confirmation when two namespaces are judged at once and the older save is the slower', async () => {
    const api = new FakeAdmission();
    class SlowFirstMemory extends Memory {
      slowNext = 0;
      override async save(c: EnforcementConfirmation | undefined) {
        const copy = c === undefined ? undefined : structuredClone(c);
        const delay = this.slowNext;
        this.slowNext = 0;
        await new Promise((r) => setTimeout(r, delay));
        this.kept = copy;
      }
    }
    const memory = new SlowFirstMemory();
    namespaces['team-c'] = { uid: 'ns-c', resourceVersion: '13', labels: { 'kubernetes.io/metadata.name': 'team-c', approvals: 'enforced' } };
    try {
      const { check } = start(api, memory, '2026-12-01T10:00:00Z');
      await check.check();
      memory.slowNext = 50;
      await Promise.all([check.forNamespace('team-a'), check.forNamespace('team-c')]);
      await new Promise((r) => setTimeout(r, 100));
      expect(Object.keys(memory.kept!.namespaces).sort()).toEqual(['team-a', 'team-c']);
    } finally {
      delete namespaces['team-c'];
    }
  });

  it('says unknown, not a gap, when the Namespace cannot be read', async () => {
    const { check } = start(new FakeAdmission(), new Memory(), '2026-12-01T10:00:00Z');
    await check.check();
    expect(await check.forNamespace('no-such-namespace')).toMatchObject({ enforced: false, unknown: true, problem: expect.stringContaining('could not read Namespace no-such-namespace') });
  });
});
