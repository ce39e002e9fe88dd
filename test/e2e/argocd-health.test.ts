// Argo CD integration (config/argocd): the health Lua of RollbackAttempts and
// RollbackPolicies run under the real Lua 5.1 interpreter over objects of every
// phase, the RollbackAttempt samples being what the operator writes (statusOf of
// a record); argocd-cm-patch.yaml is what its sources give, and the real
// kubectl kustomize + API server take it as Argo CD's argocd-cm; the deep link
// is evaluated by Argo CD's own template and condition libraries.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { binaries } from '../../dev/stack/binaries.ts';
import { ARGOCD_DIR, argocdCmData, argocdCmPatch, PATCH_FILE } from '../../dev/scripts/argocd-cm.ts';
import { attemptName, type AttemptRecord } from '../../src/fsm/record.ts';
import { Reason, STATES } from '../../src/fsm/table.ts';
import { statusOf } from '../../src/integrations/rollback-attempts.ts';
import { SETTINGS } from '../../src/fsm/testing.ts';
import { runHealthLua, type Health } from './support/argocd-health.ts';
import { freshNamespace, kubectlOk } from './support/kube.ts';

const stack = inject('stack');
const run = promisify(execFile);
const ATTEMPT_LUA = readFileSync(join(ARGOCD_DIR, 'health', 'ai-operator.io_RollbackAttempt.lua'), 'utf8');
const POLICY_LUA = readFileSync(join(ARGOCD_DIR, 'health', 'ai-operator.io_RollbackPolicy.lua'), 'utf8');

// ---- RollbackAttempt samples: a record per phase, projected by the operator's statusOf ----

const CID = '1f3a9c2e-5b1c-4d2e-8f00-0123456789ab';
const GOOD = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const BAD = 'ffeeddccbbaa99887766554433221100ffeeddcc';
const PR = { number: 42, url: 'https://github.com/acme/gitops/pull/42', branch: `ai-operator/rollback/cart-1f3a9c2e`, state: 'open' as const };

const record = (environment: 'staging' | 'production', patch: Partial<AttemptRecord>): AttemptRecord => ({
  correlationId: CID, app: { namespace: 'argocd', name: 'cart' }, environment,
  source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/cart', targetRevision: 'main' },
  settings: { ...SETTINGS, approvers: { users: ['alice@example.com'], groups: ['sre'] } },
  state: 'DegradationDetected', reason: Reason.DegradationConfirmed, message: '', since: '2025-06-01T10:00:30.000Z', version: 1,
  createdAt: '2025-06-01T10:00:30.000Z', degradation: { firstSeenAt: '2025-06-01T10:00:00.000Z', checks: 3 }, currentRevision: BAD,
  invariants: [], transitions: [], ...patch,
});
const candidate = { revision: GOOD, shortRevision: 'a1b2c3d', uptime: 0.999, mode: 'metrics' as const, evidence: 'up 99.9% over 24h', ciState: 'success' as const };

/** The RollbackAttempt object as the operator creates it (rollback-attempts.ts ensureExists) with statusOf's status. */
function attemptObject(r: AttemptRecord): Record<string, unknown> {
  return {
    apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt',
    metadata: { name: attemptName(r.app, r.correlationId), namespace: r.app.namespace, generation: 1, labels: { 'ai-operator.io/application': r.app.name, 'ai-operator.io/environment': r.environment } },
    spec: { application: r.app, environment: r.environment, correlationId: r.correlationId, approvers: r.settings.approvers },
    status: statusOf(r),
  };
}

interface Sample { name: string; object: Record<string, unknown>; want: Health }

const attemptSamples: Sample[] = [
  {
    name: 'no status yet',
    object: { ...attemptObject(record('staging', {})), status: undefined },
    want: { status: 'Progressing', message: 'waiting for the operator' },
  },
  {
    name: 'DegradationDetected',
    object: attemptObject(record('staging', { state: 'DegradationDetected', reason: Reason.DegradationConfirmed, message: 'degradation confirmed after 3 consecutive Degraded checks (Degraded on ffeeddc)' })),
    want: { status: 'Progressing', message: 'Degradation confirmed; looking for a stable revision (DegradationConfirmed): degradation confirmed after 3 consecutive Degraded checks (Degraded on ffeeddc)' },
  },
  {
    name: 'CandidateResolved',
    object: attemptObject(record('staging', { state: 'CandidateResolved', reason: Reason.StableCandidateFound, message: 'rollback target a1b2c3d: up 99.9% over 24h', candidate })),
    want: { status: 'Progressing', message: 'Rolling back to a1b2c3d; opening a pull request (StableCandidateFound): rollback target a1b2c3d: up 99.9% over 24h' },
  },
  {
    name: 'PRCreated',
    object: attemptObject(record('staging', { state: 'PRCreated', reason: Reason.PullRequestOpened, message: 'opened pull request #42', candidate, pullRequest: PR })),
    want: { status: 'Progressing', message: 'Rollback to a1b2c3d proposed; waiting for CI, PR #42 https://github.com/acme/gitops/pull/42 (PullRequestOpened): opened pull request #42' },
  },
  {
    name: 'AwaitingMergeApproval in staging',
    object: attemptObject(record('staging', { state: 'AwaitingMergeApproval', reason: Reason.CISucceeded, message: 'CI on #42 is success', candidate, pullRequest: PR })),
    want: { status: 'Progressing', message: 'CI is green; merging once every invariant passes, PR #42 https://github.com/acme/gitops/pull/42 (CISucceeded): CI on #42 is success' },
  },
  {
    name: 'AwaitingMergeApproval in production, no approval yet',
    object: attemptObject(record('production', { state: 'AwaitingMergeApproval', reason: Reason.CISucceeded, message: 'CI on #42 is success', candidate, pullRequest: PR, approvalRequestedAt: '2025-06-01T10:03:00.000Z' })),
    want: { status: 'Suspended', message: 'Waiting for an authorized approver (annotate ai-operator.io/approve), PR #42 https://github.com/acme/gitops/pull/42 (CISucceeded): CI on #42 is success' },
  },
  {
    name: 'AwaitingMergeApproval in production, no approval can be recorded',
    object: attemptObject(record('production', { state: 'AwaitingMergeApproval', reason: Reason.CISucceeded, message: 'CI on #42 is success', candidate, pullRequest: PR, approvalBlocked: 'ValidatingAdmissionPolicyBinding ai-operator-approvals not found' })),
    want: { status: 'Suspended', message: 'Waiting for an authorized approver (annotate ai-operator.io/approve); no approval is recorded while the API server does not enforce who may approve: ValidatingAdmissionPolicyBinding ai-operator-approvals not found, PR #42 https://github.com/acme/gitops/pull/42 (CISucceeded): CI on #42 is success' },
  },
  {
    name: 'AwaitingMergeApproval in production, approved',
    object: attemptObject(record('production', { state: 'AwaitingMergeApproval', reason: Reason.CISucceeded, message: 'CI on #42 is success', candidate, pullRequest: PR, approval: { approvedBy: 'alice@example.com', approvedAt: '2025-06-01T10:05:00.000Z' } })),
    want: { status: 'Progressing', message: 'Approved by alice@example.com; merging, PR #42 https://github.com/acme/gitops/pull/42 (CISucceeded): CI on #42 is success' },
  },
  {
    name: 'RollbackMerged',
    object: attemptObject(record('staging', { state: 'RollbackMerged', reason: Reason.AutoMerged, message: 'merged #42 after all invariants passed', candidate, pullRequest: { ...PR, state: 'merged' } })),
    want: { status: 'Progressing', message: 'Rollback to a1b2c3d merged; waiting for the app to stay Healthy, PR #42 https://github.com/acme/gitops/pull/42 (AutoMerged): merged #42 after all invariants passed' },
  },
  {
    name: 'RollbackComplete',
    object: attemptObject(record('staging', { state: 'RollbackComplete', reason: Reason.HealthRestored, message: 'Healthy for 1m on a1b2c3d', candidate, pullRequest: { ...PR, state: 'merged' } })),
    want: { status: 'Healthy', message: 'Rolled back to a1b2c3d, PR #42 https://github.com/acme/gitops/pull/42 (HealthRestored): Healthy for 1m on a1b2c3d' },
  },
  {
    name: 'Idle (health came back before the merge)',
    object: attemptObject(record('staging', { state: 'Idle', reason: Reason.HealthRestoredBeforeMerge, message: 'health restored before the merge: pull request closed', candidate, pullRequest: { ...PR, state: 'closed' } })),
    want: { status: 'Healthy', message: 'Ended without a rollback, PR #42 https://github.com/acme/gitops/pull/42 (HealthRestoredBeforeMerge): health restored before the merge: pull request closed' },
  },
  {
    name: 'Abort (CI failed)',
    object: attemptObject(record('staging', { state: 'Abort', reason: Reason.CIFailure, message: 'CI on #42 is failure', candidate, pullRequest: PR })),
    want: { status: 'Degraded', message: 'Aborted, PR #42 https://github.com/acme/gitops/pull/42 (CIFailure): CI on #42 is failure' },
  },
  {
    name: 'Abort before any PR (no stable candidate)',
    object: attemptObject(record('production', { state: 'Abort', reason: Reason.NoStableCandidate, message: 'no revision in 24h had uptime >= 0.99' })),
    want: { status: 'Degraded', message: 'Aborted (NoStableCandidate): no revision in 24h had uptime >= 0.99' },
  },
  {
    name: 'Abort of a dry run',
    object: attemptObject(record('staging', { state: 'Abort', reason: Reason.DryRun, message: 'dry run: would open a pull request restoring ffeeddc to a1b2c3d', candidate })),
    want: { status: 'Suspended', message: 'Dry run decided, no pull request opened; reset (ai-operator.io/reset) to allow a new attempt (DryRun): dry run: would open a pull request restoring ffeeddc to a1b2c3d' },
  },
  {
    name: 'a phase this script does not know',
    object: { ...attemptObject(record('staging', {})), status: { phase: 'Paused' } },
    want: { status: 'Unknown', message: 'unknown phase Paused' },
  },
  {
    name: 'a UTF-8 message',
    object: attemptObject(record('staging', { state: 'Abort', reason: Reason.AbortRequested, message: 'abort requested by ops: “stop” — déploiement gelé' })),
    want: { status: 'Degraded', message: 'Aborted (AbortRequested): abort requested by ops: “stop” — déploiement gelé' },
  },
];

// ---- RollbackPolicy samples, in the shape src/reconcilers/rollback-policy.ts writes ----

const ready = (count: number, suspended = false) => ({
  type: 'Ready', status: 'True', reason: count > 0 ? 'ApplicationsMatched' : 'NoApplicationsMatched',
  message: `${count} Application(s) governed by this policy${suspended ? ' (suspended: no new attempts)' : ''}`, lastTransitionTime: '2025-06-01T10:00:00Z', observedGeneration: 2,
});
const refused = (apps: string[]) => ({
  type: 'ApplicationsRefused', status: apps.length > 0 ? 'True' : 'False', reason: apps.length > 0 ? 'RepositoryOutsideOrg' : 'NoneRefused',
  message: apps.length > 0 ? `${apps.length} governed Application(s) refused, their repository outside GITHUB_ORG acme: ${apps.join(', ')}` : 'every governed Application\'s repository is within GITHUB_ORG',
  lastTransitionTime: '2025-06-01T10:00:00Z', observedGeneration: 2,
});
const policy = (status: unknown, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'staging', namespace: 'argocd', generation: 2 },
  spec: { environment: 'staging', ...spec }, ...(status ? { status } : {}),
});

const policySamples: Sample[] = [
  { name: 'no status yet', object: policy(undefined), want: { status: 'Progressing', message: 'waiting for the operator' } },
  {
    name: 'Ready, nothing refused',
    object: policy({ observedGeneration: 2, matchedApplications: 3, conditions: [ready(3), refused([])] }),
    want: { status: 'Healthy', message: 'ApplicationsMatched: 3 Application(s) governed by this policy' },
  },
  {
    name: 'Ready, some Applications refused',
    object: policy({ observedGeneration: 2, matchedApplications: 3, conditions: [ready(3), refused(['billing', 'search'])] }),
    want: { status: 'Healthy', message: 'RepositoryOutsideOrg: 2 governed Application(s) refused, their repository outside GITHUB_ORG acme: billing, search; ApplicationsMatched: 3 Application(s) governed by this policy' },
  },
  {
    name: 'suspended',
    object: policy({ observedGeneration: 2, matchedApplications: 1, conditions: [ready(1, true), refused([])] }, { suspend: true }),
    want: { status: 'Suspended', message: 'spec.suspend is true, no new attempts; ApplicationsMatched: 1 Application(s) governed by this policy (suspended: no new attempts)' },
  },
  {
    name: 'Ready False',
    object: policy({ observedGeneration: 2, conditions: [{ type: 'Ready', status: 'False', reason: 'InvalidSelector', message: 'selector: bad key', lastTransitionTime: '2025-06-01T10:00:00Z' }] }),
    want: { status: 'Degraded', message: 'InvalidSelector: selector: bad key' },
  },
  {
    name: 'a status of an older generation',
    object: policy({ observedGeneration: 1, matchedApplications: 3, conditions: [ready(3), refused([])] }),
    want: { status: 'Progressing', message: 'waiting for the operator to read generation 2 (status is of generation 1)' },
  },
];

async function results(script: string, samples: Sample[]): Promise<Array<{ name: string } & Health>> {
  return Promise.all(samples.map(async (s) => ({ name: s.name, ...await runHealthLua(script, s.object) })));
}

describe('Argo CD health of a RollbackAttempt (Lua 5.1)', () => {
  it('has a sample of every phase', () => {
    const phases = new Set(attemptSamples.map((s) => (s.object.status as { phase?: string } | undefined)?.phase).filter((p) => p !== undefined));
    for (const state of STATES) expect(phases, `no sample in phase ${state}`).toContain(state);
  });

  it.each(attemptSamples)('$name → $want.status', async ({ object, want }) => {
    expect(await runHealthLua(ATTEMPT_LUA, object)).toEqual(want);
  });

  // A wrong branch must fail the samples: each of these edits of the script is caught.
  it.each([
    ['production waits for nobody', 'environment ~= "staging" and status.approval == nil', 'false'],
    ['Abort reads Healthy', 'return say("Degraded", "Aborted", true)', 'return say("Healthy", "Aborted", true)'],
    ['the PR is left out', 'if withPr and pr ~= nil then', 'if false then'],
    ['RollbackComplete still Progressing', 'return say("Healthy", "Rolled back" .. toward, true)', 'return say("Progressing", "Rolled back" .. toward, true)'],
    ['a string method (no string library in Argo CD)', 'local text = what', 'local text = what:sub(1)'],
  ])('catches a wrong script: %s', async (_name, from, to) => {
    expect(ATTEMPT_LUA).toContain(from);
    const wrong = ATTEMPT_LUA.replace(from, to);
    const outcomes = await Promise.all(attemptSamples.map((s) => runHealthLua(wrong, s.object).then((got) => JSON.stringify(got) === JSON.stringify(s.want), () => false)));
    expect(outcomes).toContain(false);
  });
});

describe('Argo CD health of a RollbackPolicy (Lua 5.1)', () => {
  it.each(policySamples)('$name → $want.status', async ({ object, want }) => {
    expect(await runHealthLua(POLICY_LUA, object)).toEqual(want);
  });

  it('prints a table of what Argo CD shows', async () => {
    const rows = [...await results(ATTEMPT_LUA, attemptSamples), ...await results(POLICY_LUA, policySamples)];
    console.info(rows.map((r) => `${r.status.padEnd(11)} ${r.name}: ${r.message}`).join('\n'));
    expect(rows).toHaveLength(attemptSamples.length + policySamples.length);
  });
});

describe('the argocd-cm patch (config/argocd)', () => {
  it('is what its sources give (node dev/scripts/argocd-cm.ts --write)', () => {
    expect(readFileSync(PATCH_FILE, 'utf8')).toBe(argocdCmPatch());
    // And YAML gives back each .lua byte for byte.
    const patch = parse(readFileSync(PATCH_FILE, 'utf8')) as { data: Record<string, string> };
    expect(patch.data['resource.customizations.health.ai-operator.io_RollbackAttempt']).toBe(ATTEMPT_LUA);
    expect(patch.data['resource.customizations.health.ai-operator.io_RollbackPolicy']).toBe(POLICY_LUA);
    expect(patch.data).toEqual(argocdCmData());
  });

  it('as a kustomize Component, merges into an Argo CD argocd-cm that the real API server takes', async () => {
    const namespace = await freshNamespace(stack, 'argocd-cm');
    // Given an Argo CD installation's kustomization with its own argocd-cm
    const dir = mkdtempSync(join(tmpdir(), 'argocd-cm-'));
    mkdirSync(join(dir, 'argocd'));
    writeFileSync(join(dir, 'argocd', 'argocd-cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}\ndata:\n  url: https://argocd.example.com\n');
    writeFileSync(join(dir, 'argocd', 'kustomization.yaml'), `namespace: ${namespace}\nresources: [argocd-cm.yaml]\ncomponents: [${relative(join(dir, 'argocd'), ARGOCD_DIR)}]\n`);
    // When it is built with config/argocd as a component and applied
    const { stdout: built } = await run(stack.kubectl, ['kustomize', join(dir, 'argocd')]);
    writeFileSync(join(dir, 'built.yaml'), built);
    await kubectlOk(stack, ['apply', '--server-side', '-f', join(dir, 'built.yaml')]);
    // Then argocd-cm keeps its own keys and holds the health scripts and the link, byte for byte
    const cm = JSON.parse(await kubectlOk(stack, ['get', 'configmap', 'argocd-cm', '-n', namespace, '-o', 'json'])) as { data: Record<string, string> };
    expect(cm.data).toEqual({ url: 'https://argocd.example.com', ...argocdCmData() });
  });
});

describe('the deep link to an Application\'s rollback PRs (application.links, Argo CD\'s text/template + sprig and expr)', () => {
  const app = (source: Record<string, unknown> | undefined, sources?: unknown[]) => ({
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'cart', namespace: 'argocd', uid: 'u-1' },
    spec: { project: 'default', ...(source ? { source } : {}), ...(sources ? { sources } : {}), destination: { namespace: 'shop' } },
  });
  const search = (repo: string) => `${repo}/pulls?q=is%3Apr+label%3Aai-operator+label%3Arollback+in%3Atitle+%22Rollback+cart%22`;

  it.each([
    ['an https repoURL with .git', app({ repoURL: 'https://github.com/acme/gitops.git', path: 'apps/cart' }), search('https://github.com/acme/gitops')],
    ['an https repoURL with a trailing slash', app({ repoURL: 'https://github.com/acme/gitops/', path: 'apps/cart' }), search('https://github.com/acme/gitops')],
    ['an scp-like ssh repoURL', app({ repoURL: 'git@github.com:acme/gitops.git', path: 'apps/cart' }), search('https://github.com/acme/gitops')],
    ['an ssh:// repoURL', app({ repoURL: 'ssh://git@github.example.com/acme/gitops.git', path: 'apps/cart' }), search('https://github.example.com/acme/gitops')],
    ['a multi-source Application (not shown)', app(undefined, [{ repoURL: 'https://github.com/acme/gitops.git' }]), undefined],
    ['a repository elsewhere than GitHub (not shown)', app({ repoURL: 'https://gitlab.com/acme/gitops.git', path: 'apps/cart' }), undefined],
  ])('%s', async (_name, application, url) => {
    const { deeplinks } = await binaries('deeplinks');
    const dir = mkdtempSync(join(tmpdir(), 'deeplinks-'));
    writeFileSync(join(dir, 'links.yaml'), argocdCmData()['application.links']!);
    writeFileSync(join(dir, 'app.json'), JSON.stringify(application));
    const { stdout } = await run(deeplinks!, [join(dir, 'links.yaml'), join(dir, 'app.json')]);
    const [link, ...others] = stdout.trim().split('\n').map((l) => JSON.parse(l) as { title: string; shown: boolean; url?: string; error?: string });
    expect(others).toEqual([]);
    expect(link).toEqual(url ? { title: 'Rollback pull requests (ai-operator)', shown: true, url } : { title: 'Rollback pull requests (ai-operator)', shown: false });
  });
});
