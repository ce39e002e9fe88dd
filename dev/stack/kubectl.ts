// kubectl against the stack's API server, and the CRD installation shared by the
// demo and the tests.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export interface KubectlTarget { kubectl: string; kubeconfig: string }
export interface KubectlResult { stdout: string; stderr: string; code: number }

export async function kubectl(target: KubectlTarget, args: string[], input?: string, kubeconfig = target.kubeconfig): Promise<KubectlResult> {
  const child = run(target.kubectl, [`--kubeconfig=${kubeconfig}`, ...args], { cwd: repoRoot, maxBuffer: 16 << 20, timeout: 60_000 });
  // A kubectl that reads no input may exit before its stdin is written to: EPIPE then says nothing the exit
  // status does not (left unhandled, it fails the whole test run).
  child.child.stdin?.on('error', () => {});
  child.child.stdin?.end(input ?? '');
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}

export async function kubectlOk(target: KubectlTarget, args: string[], input?: string): Promise<string> {
  const result = await kubectl(target, args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr.trim()}`);
  return result.stdout;
}

/** Applies the project's CRDs and the Argo CD Application CRD, and waits until they are served. */
export async function installCrds(target: KubectlTarget): Promise<void> {
  await kubectlOk(target, ['apply', '--server-side', '-f', 'crds/ai-operator.io_rollbackpolicies.yaml', '-f', 'crds/ai-operator.io_rollbackattempts.yaml', '-f', 'dev/crds/']);
  await kubectlOk(target, ['wait', '--for=condition=Established', '--timeout=60s',
    'crd/rollbackpolicies.ai-operator.io', 'crd/rollbackattempts.ai-operator.io', 'crd/applications.argoproj.io']);
}
