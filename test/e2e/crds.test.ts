// The CRDs on the real API server: valid policies are accepted, invalid ones are
// rejected by the server's schema and CEL rules with a message naming the field,
// and `kubectl get rollbackattempts` shows the six printer columns.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { freshNamespace, kubectl, kubectlOk, repoRoot } from './support/kube.ts';

const stack = inject('stack');

type Json = Record<string, unknown>;

function policy(namespace: string, name: string, spec: Json): Json {
  return { apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name, namespace }, spec };
}

async function create(object: Json) {
  return kubectl(stack, ['create', '-o', 'json', '-f', '-'], JSON.stringify(object));
}

describe('RollbackPolicy CRD', () => {
  let namespace: string;
  beforeAll(async () => { namespace = await freshNamespace(stack, 'crd-policy'); });

  it('accepts every sample policy in config/samples', async () => {
    const dir = join(repoRoot, 'config', 'samples');
    const files = readdirSync(dir).filter((f) => f.startsWith('rollbackpolicy'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) {
      const sample = parse(readFileSync(join(dir, file), 'utf8')) as Json;
      (sample.metadata as Json).namespace = namespace;
      const result = await create(sample);
      expect(result.stderr, file).toBe('');
      expect(result.code, file).toBe(0);
    }
  });

  it('fills in the schema defaults of an empty policy (no selector: the operator applies the default one only when applications is unset too)', async () => {
    const created = JSON.parse(await kubectlOk(stack, ['create', '-o', 'json', '-f', '-'], JSON.stringify(policy(namespace, 'defaults', {})))) as { spec: Json };
    expect(created.spec).toEqual({
      detection: {},
      candidate: { minUptime: 0.99, window: '24h', maxCommits: 50 },
      merge: { method: 'squash' },
      recoveryTimeoutSeconds: 600,
      cooldownSeconds: 1800,
      dryRun: false,
      suspend: false,
    });
  });

  it('fills in the pod signals\' defaults of a podSignals that names one field (issue 21)', async () => {
    const created = JSON.parse(await kubectlOk(stack, ['create', '-o', 'json', '-f', '-'], JSON.stringify(policy(namespace, 'pod-signals', { detection: { podSignals: { minRestarts: 5 } } })))) as { spec: Json };
    expect(created.spec.detection).toEqual({ podSignals: { enabled: true, minRestarts: 5, waitingSeconds: 60 } });
  });

  const invalid: Array<[string, Json, string, RegExp]> = [
    ['an unknown environment', { environment: 'qa' }, 'spec.environment', /Unsupported value: "qa"/],
    ['a zero check interval', { detection: { intervalSeconds: 0 } }, 'spec.detection.intervalSeconds', /greater than or equal to 1/],
    ['negative persistence checks', { detection: { persistenceChecks: -1 } }, 'spec.detection.persistenceChecks', /greater than or equal to 1/],
    ['zero restarts for the pod signals', { detection: { podSignals: { minRestarts: 0 } } }, 'spec.detection.podSignals.minRestarts', /greater than or equal to 1/],
    ['a day and more of waiting for the pod signals', { detection: { podSignals: { waitingSeconds: 86401 } } }, 'spec.detection.podSignals.waitingSeconds', /less than or equal to 86400/],
    ['minUptime above 1', { candidate: { minUptime: 1.5 } }, 'spec.candidate.minUptime', /less than or equal to 1/],
    ['minUptime below 0', { candidate: { minUptime: -0.1 } }, 'spec.candidate.minUptime', /greater than or equal to 0/],
    ['a malformed window duration', { candidate: { window: '1 day' } }, 'spec.candidate.window', /should match/],
    ['zero maxCommits', { candidate: { maxCommits: 0 } }, 'spec.candidate.maxCommits', /greater than or equal to 1/],
    ['a zero search timeout', { candidate: { searchTimeoutSeconds: 0 } }, 'spec.candidate.searchTimeoutSeconds', /greater than or equal to 1/],
    ['an uptime query without $app', { candidate: { uptimeQuery: 'avg(up)' } }, 'spec.candidate.uptimeQuery', /must reference \$app/],
    ['an unknown merge method', { merge: { method: 'fast-forward' } }, 'spec.merge.method', /Unsupported value: "fast-forward"/],
    ['a zero CI timeout', { merge: { ciTimeoutSeconds: 0 } }, 'spec.merge.ciTimeoutSeconds', /greater than or equal to 1/],
    ['a negative approval timeout', { merge: { approvalTimeoutSeconds: -60 } }, 'spec.merge.approvalTimeoutSeconds', /greater than or equal to 1/],
    ['a zero health restoration time', { healthRestorationSeconds: 0 }, 'spec.healthRestorationSeconds', /greater than or equal to 1/],
    ['a negative cooldown', { cooldownSeconds: -1 }, 'spec.cooldownSeconds', /greater than or equal to 0/],
    ['a recovery timeout shorter than the restoration time', { healthRestorationSeconds: 60, recoveryTimeoutSeconds: 30 }, 'spec.recoveryTimeoutSeconds', /must be greater than healthRestorationSeconds/],
    ['production without approvers', { environment: 'production' }, 'spec.merge.approvers', /must name at least one approver/],
    ['an unknown selector operator', { selector: { matchExpressions: [{ key: 'team', operator: 'Like', values: ['x'] }] } }, 'spec.selector.matchExpressions[0].operator', /Unsupported value: "Like"/],
    ['In without values', { selector: { matchExpressions: [{ key: 'team', operator: 'In' }] } }, 'spec.selector.matchExpressions[0]', /values must be non-empty for In and NotIn/],
    ['an application name that is not a Kubernetes name', { applications: ['Payment_Service'] }, 'spec.applications[0]', /should match/],
    ['a string where a boolean belongs', { dryRun: 'yes' }, 'spec.dryRun', /must be of type boolean/],
  ];

  it.each(invalid)('rejects %s, naming %s', async (_title, spec, field, message) => {
    const result = await create(policy(namespace, `invalid-${Math.random().toString(36).slice(2, 8)}`, spec));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('is invalid');
    expect(result.stderr).toContain(field);
    expect(result.stderr).toMatch(message);
  });
});

describe('RollbackAttempt CRD', () => {
  let namespace: string;
  beforeAll(async () => { namespace = await freshNamespace(stack, 'crd-attempt'); });

  const attempt = (name: string, spec: Json): Json => ({
    apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt', metadata: { name, namespace }, spec,
  });
  const validSpec = {
    application: { name: 'payment-service', namespace: 'argocd' },
    environment: 'staging',
    correlationId: '1f3a9c2e-5b1c-4d2e-8f00-0123456789ab',
    policyRef: { name: 'staging-default', namespace: 'argocd' },
  };

  it('shows APP, ENV, PHASE, TARGET, PR and AGE in kubectl get rollbackattempts', async () => {
    await kubectlOk(stack, ['create', '-f', '-'], JSON.stringify(attempt('payment-service-1f3a9c2e', validSpec)));
    await kubectlOk(stack, ['patch', 'rollbackattempt', 'payment-service-1f3a9c2e', '-n', namespace, '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: {
        phase: 'RollbackComplete', reason: 'HealthRestored',
        candidate: { revision: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678', shortRevision: 'a1b2c3d', uptime: 0.998 },
        pullRequest: { number: 42, ref: '#42', url: 'https://github.com/acme/gitops/pull/42', branch: 'ai-operator/rollback/payment-service-1f3a9c2e', state: 'merged' },
      },
    })]);
    const table = await kubectlOk(stack, ['get', 'rollbackattempts', '-n', namespace]);
    const [header, row] = table.trim().split('\n');
    expect(header!.split(/\s+/)).toEqual(['NAME', 'APP', 'ENV', 'PHASE', 'TARGET', 'PR', 'AGE']);
    expect(row!.split(/\s+/).slice(0, 6)).toEqual(['payment-service-1f3a9c2e', 'payment-service', 'staging', 'RollbackComplete', 'a1b2c3d', '#42']);
  });

  it.each([
    ['a correlationId that is not a UUID', { ...validSpec, correlationId: 'not-a-uuid' }, 'spec.correlationId'],
    ['an unknown environment', { ...validSpec, environment: 'dev' }, 'spec.environment'],
    ['a missing application', { environment: 'staging', correlationId: validSpec.correlationId }, 'spec.application'],
  ])('rejects %s, naming %s', async (_title, spec, field) => {
    const result = await kubectl(stack, ['create', '-f', '-'], JSON.stringify(attempt(`bad-${Math.random().toString(36).slice(2, 8)}`, spec)));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(field);
  });

  it('keeps the spec immutable and the phase within the FSM states', async () => {
    await kubectlOk(stack, ['create', '-f', '-'], JSON.stringify(attempt('immutable-1f3a9c2e', validSpec)));
    const changed = await kubectl(stack, ['patch', 'rollbackattempt', 'immutable-1f3a9c2e', '-n', namespace, '--type=merge', '-p', '{"spec":{"environment":"production"}}']);
    expect(changed.code).not.toBe(0);
    expect(changed.stderr).toMatch(/spec is immutable/);
    const badPhase = await kubectl(stack, ['patch', 'rollbackattempt', 'immutable-1f3a9c2e', '-n', namespace, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Sleeping"}}']);
    expect(badPhase.code).not.toBe(0);
    expect(badPhase.stderr).toContain('status.phase');
  });

  it('keeps spec.approvers, which the approval policy trusts, as the operator wrote it', async () => {
    const approvers = { users: ['alice@example.com'], groups: ['sre'] };
    const created = JSON.parse(await kubectlOk(stack, ['create', '-o', 'json', '-f', '-'], JSON.stringify(attempt('approvers-1f3a9c2e', { ...validSpec, approvers })))) as { spec: Json };
    expect(created.spec.approvers).toEqual(approvers);
    for (const patch of [
      { spec: { approvers: { users: ['alice@example.com', 'mallory'], groups: ['sre'] } } },
      { spec: { approvers: null } },
    ]) {
      const changed = await kubectl(stack, ['patch', 'rollbackattempt', 'approvers-1f3a9c2e', '-n', namespace, '--type=merge', '-p', JSON.stringify(patch)]);
      expect(changed.code).not.toBe(0);
      expect(changed.stderr).toContain('spec: Invalid value: "object": spec is immutable: the operator writes it once when it creates the attempt');
    }
  });

  it.each([
    ['an empty approver name', { users: [''] }, 'spec.approvers.users[0]'],
    ['a duplicate approver', { users: ['alice@example.com', 'alice@example.com'] }, 'spec.approvers.users[1]'],
    ['more than 100 groups', { groups: Array.from({ length: 101 }, (_, i) => `group-${i}`) }, 'spec.approvers.groups'],
  ])('rejects approvers with %s, naming %s', async (_title, approvers, field) => {
    const result = await kubectl(stack, ['create', '-f', '-'], JSON.stringify(attempt(`bad-${Math.random().toString(36).slice(2, 8)}`, { ...validSpec, approvers })));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(field);
  });
});
