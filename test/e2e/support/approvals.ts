// The approval admission policy on the shared API server, for tests that write
// approvals. The policy is the shipped one (cluster-scoped, the same object from
// every test); each test binds it to its own namespace only, so tests elsewhere
// that annotate as admin are not affected. Approvals are then written as the
// approver: `kubectl --as=<user> [--as-group=<group>] annotate …` (the admin
// kubeconfig may impersonate anyone).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { StackEndpoints } from '../../../dev/stack/index.ts';
import { kubectl, kubectlOk, repoRoot } from './kube.ts';

type Json = Record<string, any>;

function shipped(file: string): Json[] {
  return parseAllDocuments(readFileSync(join(repoRoot, file), 'utf8')).map((d) => d.toJS() as Json);
}

const POLICY_FILE = 'config/admission/approval-policy.yaml';
const PEOPLE_FILE = 'config/rbac/people.yaml';

/** The shipped ValidatingAdmissionPolicy and (unscoped) binding, as objects. */
export function shippedApprovalPolicy(): { policy: Json; binding: Json } {
  const docs = shipped(POLICY_FILE);
  return {
    policy: docs.find((d) => d.kind === 'ValidatingAdmissionPolicy')!,
    binding: docs.find((d) => d.kind === 'ValidatingAdmissionPolicyBinding')!,
  };
}

/** A name for a per-namespace object: readable, and unique however long the inputs. */
function scopedName(base: string, suffix: string): string {
  const clean = suffix.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  const hash = createHash('sha256').update(suffix).digest('hex').slice(0, 8);
  return `${base}-${clean}`.slice(0, 200).replace(/-+$/, '') + `-${hash}`;
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The binding a test applies: the shipped one, renamed, for `namespace` only, with the given actions. */
export function namespaceBinding(namespace: string, options: { name?: string; validationActions?: string[] } = {}): Json {
  const { binding } = shippedApprovalPolicy();
  return {
    ...binding,
    metadata: { ...binding.metadata, name: options.name ?? scopedName(binding.metadata.name, namespace) },
    spec: {
      ...binding.spec,
      ...(options.validationActions ? { validationActions: options.validationActions } : {}),
      matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } } },
    },
  };
}

/**
 * Applies the shipped policy and a binding of it scoped to `namespace`, and
 * returns once the API server enforces it there (policies reach admission
 * through an informer, a moment after they are written).
 */
export async function installApprovalPolicy(stack: StackEndpoints, namespace: string): Promise<{ bindingName: string }> {
  const { policy } = shippedApprovalPolicy();
  // Server-side apply of an identical object is a no-op: any number of tests may do it, in parallel.
  await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-approvals', '-f', '-'], JSON.stringify(policy));
  const binding = namespaceBinding(namespace);
  await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-approvals', '-f', '-'], JSON.stringify(binding));
  await until(`the approval policy in ${namespace}`, () => approvalPolicyDenies(stack, namespace));
  return { bindingName: binding.metadata.name as string };
}

/**
 * Whether an approval nobody may give is refused in `namespace` right now: a
 * dry-run create (nothing is stored) of an attempt carrying one.
 */
export async function approvalPolicyDenies(stack: StackEndpoints, namespace: string): Promise<boolean> {
  const probe = {
    apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt',
    metadata: { name: 'approval-policy-probe', namespace, annotations: { 'ai-operator.io/approve': 'no-such-user:approval-policy-probe' } },
    spec: { application: { name: 'probe', namespace: 'argocd' }, environment: 'production', correlationId: '00000000-0000-4000-8000-000000000000' },
  };
  const result = await kubectl(stack, ['create', '--dry-run=server', '-f', '-'], JSON.stringify(probe));
  if (result.code === 0) return false;
  if (/ValidatingAdmissionPolicy 'ai-operator-approvals'/.test(result.stderr)) return true;
  throw new Error(`probing the approval policy in ${namespace} failed otherwise: ${result.stderr.trim()}`);
}

/** Installs the shipped ClusterRoles for people (cluster-scoped, idempotent). */
export async function installPeopleRoles(stack: StackEndpoints): Promise<void> {
  await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-approvals', '-f', PEOPLE_FILE]);
}

/**
 * Lets a user (or every member of a group) patch RollbackAttempts in
 * `namespace`: a RoleBinding to the shipped ai-operator-approver ClusterRole.
 * Returns once the API server's authorizer says so.
 */
export async function grantPatch(stack: StackEndpoints, namespace: string, subject: string, kind: 'User' | 'Group' = 'User'): Promise<void> {
  await installPeopleRoles(stack);
  await bindRole(stack, namespace, 'ai-operator-approver', subject, kind);
  const as = kind === 'User' ? [`--as=${subject}`] : ['--as=e2e-group-member', `--as-group=${subject}`];
  await until(`${subject} may patch rollbackattempts in ${namespace}`, async () =>
    (await kubectl(stack, ['auth', 'can-i', 'patch', 'rollbackattempts.ai-operator.io', '-n', namespace, ...as])).stdout.trim() === 'yes');
}

/** A RoleBinding of one of the shipped ClusterRoles for people, in `namespace`. */
export async function bindRole(stack: StackEndpoints, namespace: string, role: 'ai-operator-approver' | 'ai-operator-viewer', subject: string, kind: 'User' | 'Group' = 'User'): Promise<void> {
  const binding = {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding',
    metadata: { name: scopedName(role, `${kind}-${subject}`), namespace },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind, name: subject }],
  };
  await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-approvals', '-f', '-'], JSON.stringify(binding));
}
