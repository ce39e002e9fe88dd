// Where each component's binaries are: asks dev/scripts/provision.sh, which
// builds or downloads into the cache on first use and fails with one clear line.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const provisionScript = fileURLToPath(new URL('../scripts/provision.sh', import.meta.url));
const run = promisify(execFile);

export type Component = 'etcd' | 'kube' | 'nats' | 'prometheus' | 'elasticsearch' | 'lua' | 'deeplinks'
  | 'argocd' | 'kube-controllers' | 'kwok' | 'redis' | 'helm' | 'kustomize' | 'image-tools' | 'jaeger';

const cached = new Map<Component, Promise<Record<string, string>>>();

export function binaries(component: Component): Promise<Record<string, string>> {
  let found = cached.get(component);
  if (!found) {
    found = locate(component);
    cached.set(component, found);
  }
  return found;
}

async function locate(component: Component): Promise<Record<string, string>> {
  try {
    const { stdout } = await run('bash', [provisionScript, component], { maxBuffer: 1 << 20, timeout: 60 * 60_000 });
    return Object.fromEntries(
      stdout.split('\n').filter((line) => line.includes('=')).map((line) => {
        const at = line.indexOf('=');
        return [line.slice(0, at), line.slice(at + 1)];
      }),
    );
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim().split('\n').filter((l) => l.startsWith('provision:'));
    throw new Error(stderr.at(-1) ?? `provision: cannot obtain ${component}: ${(error as Error).message}`);
  }
}
