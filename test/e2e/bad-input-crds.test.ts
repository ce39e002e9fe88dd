// Objects the API server's schema must reject (issue 12 §4), on the real
// kube-apiserver with the shipped CRDs (crds/) and the stack's
// Application CRD (dev/crds/): each case shows the server's own message, which
// names the field — what `kubectl apply` prints to the person who wrote it.
// Complements crds.test.ts (ranges, enums, CEL rules of a RollbackPolicy), with
// wrong types, unknown fields, statuses the operator would never write, and a
// status too large for etcd.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { freshNamespace, kubectl, kubectlOk } from './support/kube.ts';

const stack = inject('stack');
type Json = Record<string, unknown>;

interface CrdBadInputCase {
  name: string;
  /** What is created: a spec (RollbackPolicy, RollbackAttempt), or a status patched onto a valid object. */
  input: { kind: 'RollbackPolicy' | 'RollbackAttempt' | 'Application'; spec?: unknown; status?: Json; metadataName?: string };
  /** The API server's message, as kubectl prints it. */
  expect: RegExp;
}

const CORRELATION_ID = '1f3a9c2e-5b1c-4d2e-8f00-0123456789ab';
const attemptSpec = { application: { name: 'cart', namespace: 'argocd' }, environment: 'staging', correlationId: CORRELATION_ID, policyRef: { name: 'p', namespace: 'argocd' } };

const CASES: CrdBadInputCase[] = [
  // RollbackPolicy: wrong types and unknown fields (crds.test.ts has the ranges, enums and CEL rules).
  { name: 'a policy whose spec is a string', input: { kind: 'RollbackPolicy', spec: 'staging' }, expect: /spec: Invalid value: "string": spec in body must be of type object: "string"/ },
  { name: 'an interval with a unit', input: { kind: 'RollbackPolicy', spec: { detection: { intervalSeconds: '10s' } } }, expect: /spec\.detection\.intervalSeconds: Invalid value: "string": spec\.detection\.intervalSeconds in body must be of type integer: "string"/ },
  { name: 'a fractional persistence count', input: { kind: 'RollbackPolicy', spec: { detection: { persistenceChecks: 2.5 } } }, expect: /spec\.detection\.persistenceChecks: Invalid value: "number": spec\.detection\.persistenceChecks in body must be of type integer: "number"/ },
  { name: 'minUptime as a percentage string', input: { kind: 'RollbackPolicy', spec: { candidate: { minUptime: '99%' } } }, expect: /spec\.candidate\.minUptime: Invalid value: "string": spec\.candidate\.minUptime in body must be of type number: "string"/ },
  { name: 'maxCommits above 1000', input: { kind: 'RollbackPolicy', spec: { candidate: { maxCommits: 100000 } } }, expect: /spec\.candidate\.maxCommits: Invalid value: 100000: spec\.candidate\.maxCommits in body should be less than or equal to 1000/ },
  { name: 'an uptime query of 5000 characters', input: { kind: 'RollbackPolicy', spec: { candidate: { uptimeQuery: `sum(up{app="$app"})${' '.repeat(5000)}` } } }, expect: /spec\.candidate\.uptimeQuery: Too long: may not be (longer than|more than) 4096/ },
  { name: 'approvers as one string', input: { kind: 'RollbackPolicy', spec: { environment: 'production', merge: { approvers: { users: 'alice@example.com' } } } }, expect: /spec\.merge\.approvers\.users: Invalid value: "string": spec\.merge\.approvers\.users in body must be of type array: "string"/ },
  { name: 'a selector label value that is a number', input: { kind: 'RollbackPolicy', spec: { selector: { matchLabels: { tier: 1 } } } }, expect: /spec\.selector\.matchLabels\.tier: Invalid value: "integer": spec\.selector\.matchLabels\.tier in body must be of type string: "integer"/ },
  { name: 'pod signals switched on with a string', input: { kind: 'RollbackPolicy', spec: { detection: { podSignals: { enabled: 'yes' } } } }, expect: /spec\.detection\.podSignals\.enabled: Invalid value: "string": spec\.detection\.podSignals\.enabled in body must be of type boolean: "string"/ },
  { name: 'a pod signals wait with a unit', input: { kind: 'RollbackPolicy', spec: { detection: { podSignals: { waitingSeconds: '60s' } } } }, expect: /spec\.detection\.podSignals\.waitingSeconds: Invalid value: "string": spec\.detection\.podSignals\.waitingSeconds in body must be of type integer: "string"/ },
  { name: 'a misspelt pod signals field (strict field validation)', input: { kind: 'RollbackPolicy', spec: { detection: { podSignals: { maxRestarts: 3 } } } }, expect: /unknown field "spec\.detection\.podSignals\.maxRestarts"/ },
  { name: 'a misspelt field (strict field validation)', input: { kind: 'RollbackPolicy', spec: { detection: { interval: 10 } } }, expect: /unknown field "spec\.detection\.interval"/ },
  { name: 'a policy name in capitals', input: { kind: 'RollbackPolicy', spec: {}, metadataName: 'Staging_Default' }, expect: /metadata\.name: Invalid value: "Staging_Default": a lowercase RFC 1123 subdomain must consist of/ },
  // RollbackAttempt: specs and statuses the operator never writes.
  { name: 'an attempt whose application namespace is not a name', input: { kind: 'RollbackAttempt', spec: { ...attemptSpec, application: { name: 'cart', namespace: 'Team A' } } }, expect: /spec\.application\.namespace: Invalid value: "Team A": spec\.application\.namespace in body should match/ },
  { name: 'an attempt without a correlationId', input: { kind: 'RollbackAttempt', spec: { application: attemptSpec.application, environment: 'staging' } }, expect: /spec\.correlationId: Required value/ },
  { name: 'a status phase outside the FSM', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { phase: 'RollingBack' } }, expect: /status\.phase: Unsupported value: "RollingBack": supported values: "Idle", "DegradationDetected"/ },
  { name: 'an invariant result MAYBE', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { invariants: [{ id: 'I6_ci_success', result: 'MAYBE' }] } }, expect: /status\.invariants\[0\]\.result: Unsupported value: "MAYBE": supported values: "PASS", "FAIL", "UNKNOWN"/ },
  { name: 'an unknown invariant id', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { invariants: [{ id: 'I9_vibes', result: 'PASS' }] } }, expect: /status\.invariants\[0\]\.id: Unsupported value: "I9_vibes"/ },
  { name: 'a PR number that is a string', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { pullRequest: { number: '42' } } }, expect: /status\.pullRequest\.number: Invalid value: "string": pullRequest\.number in body must be of type integer: "string"/ },
  { name: 'an uptime above 1', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { candidate: { uptime: 99.5 } } }, expect: /status\.candidate\.uptime: Invalid value: 99\.5: candidate\.uptime in body should be less than or equal to 1/ },
  { name: 'a transition time that is not a date', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { transitions: [{ from: 'Idle', to: 'DegradationDetected', at: 'yesterday', reason: 'DegradationObserved' }] } }, expect: /status\.transitions\[0\]\.at: Invalid value: "yesterday": transitions\[0\]\.at in body must be of type date-time: "yesterday"/ },
  { name: 'a reason that is a sentence', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { reason: 'CI failed' } }, expect: /status\.reason: Invalid value: "CI failed": reason in body should match '\^\[A-Z\]\[A-Za-z0-9\]\*\$'/ },
  { name: 'a status message of 40,000 characters', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { message: 'm'.repeat(40_000) } }, expect: /status\.message: Too long: may not be (longer than|more than) 32768/ },
  { name: 'a status of 3 MiB (beyond the API server\'s request limit)', input: { kind: 'RollbackAttempt', spec: attemptSpec, status: { conditions: Array.from({ length: 100 }, (_, i) => ({ type: `T${i}`, status: 'True', reason: 'Big', message: 'x'.repeat(32_000), lastTransitionTime: '2026-01-01T00:00:00Z' })) } },
    expect: /Request entity too large|request is too large|etcdserver: request is too large|Too many: 100: must have at most|Too long/ },
  // The Application CRD (dev/crds/, the fields the operator reads typed): what Argo CD never writes.
  { name: 'an Application health that is not a string', input: { kind: 'Application', status: { health: { status: 3 } } }, expect: /status\.health\.status: Invalid value: "integer": health\.status in body must be of type string: "integer"/ },
  { name: 'an Application health that is an object', input: { kind: 'Application', status: { health: { status: { code: 'Degraded' } } } }, expect: /status\.health\.status: Invalid value: "object": health\.status in body must be of type string: "object"/ },
  { name: 'an Application history date that is not a date', input: { kind: 'Application', status: { history: [{ id: 1, revision: 'a'.repeat(40), deployedAt: 'yesterday' }] } }, expect: /status\.history\[0\]\.deployedAt: Invalid value: "yesterday": history\[0\]\.deployedAt in body must be of type date-time: "yesterday"/ },
  { name: 'an Application history id that is a string', input: { kind: 'Application', status: { history: [{ id: 'one', revision: 'a'.repeat(40), deployedAt: '2026-01-01T00:00:00Z' }] } }, expect: /status\.history\[0\]\.id: Invalid value: "string": history\[0\]\.id in body must be of type integer: "string"/ },
  { name: 'an Application history that is not a list', input: { kind: 'Application', status: { history: { id: 1 } } }, expect: /status\.history: Invalid value: "object": history in body must be of type array: "object"/ },
];

const PLURAL = { RollbackPolicy: 'rollbackpolicy', RollbackAttempt: 'rollbackattempt', Application: 'applications.argoproj.io' } as const;
let namespace: string;
let n = 0;
const dir = mkdtempSync(join(tmpdir(), 'bad-input-crds-'));

/** Creates the object; with a status, creates a valid one first and patches the status onto it (as a controller would). */
async function attempt(c: CrdBadInputCase): Promise<{ code: number; stderr: string }> {
  const name = c.input.metadataName ?? `bad-${++n}-${CORRELATION_ID.slice(0, 8)}`;
  const apiVersion = c.input.kind === 'Application' ? 'argoproj.io/v1alpha1' : 'ai-operator.io/v1alpha1';
  const spec = c.input.kind === 'Application'
    ? { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/cart' }, destination: { namespace: 'x' } }
    : c.input.spec;
  const object = { apiVersion, kind: c.input.kind, metadata: { name, namespace }, spec };
  if (!c.input.status) return kubectl(stack, ['create', '-f', '-'], JSON.stringify(object));
  await kubectlOk(stack, ['create', '-f', '-'], JSON.stringify(object));
  // From a file: a 3 MiB patch is more than one command-line argument may hold.
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ status: c.input.status }));
  return kubectl(stack, ['patch', PLURAL[c.input.kind], name, '-n', namespace, '--subresource=status', '--type=merge', '--patch-file', file]);
}

describe('objects the API server rejects, with its message', () => {
  beforeAll(async () => { namespace = await freshNamespace(stack, 'bad-crds'); });

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const result = await attempt(c);
    expect(result.code, 'the API server accepted it').not.toBe(0);
    expect(result.stderr).toMatch(c.expect);
    // The message as a person sees it, for the README's bad-input table.
    console.log(`[bad-input-crds] ${c.name}: ${result.stderr.trim().split('\n').join(' ').slice(0, 400)}`);
  });

  it('leaves nothing half-written: the objects whose status was refused keep the status they had', async () => {
    const list = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', namespace, '-o', 'json'])) as { items: Array<{ status?: Json }> };
    for (const item of list.items) expect(item.status ?? {}).toEqual({});
  });
});
