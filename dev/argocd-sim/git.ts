// Reading a bare GitOps repository with the git CLI, the way Argo CD's repo
// server does: resolve the tracked revision, tell whether a commit changed the
// app's path, and read the manifests of the path at a revision.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function git(gitDir: string, args: string[]): Promise<string> {
  const { stdout } = await run('git', [`--git-dir=${gitDir}`, ...args], { maxBuffer: 64 << 20 });
  return stdout;
}

/** `https://github.com/{owner}/{repo}(.git)` (any host) → `${root}/${owner}/${repo}.git`, if that repository exists. */
export function repoDirOf(root: string, repoURL: string): string | undefined {
  let url: URL;
  try {
    url = new URL(repoURL);
  } catch (error) {
    if (error instanceof TypeError) return undefined;
    throw error;
  }
  const [owner, repo] = url.pathname.split('/').filter(Boolean).slice(-2);
  if (!owner || !repo) return undefined;
  const dir = join(root, owner, repo.endsWith('.git') ? repo : `${repo}.git`);
  return existsSync(dir) ? dir : undefined;
}

/** The commit a targetRevision names: a branch, a tag, a SHA, or HEAD (the default branch). */
export async function resolveRevision(gitDir: string, targetRevision: string): Promise<string | undefined> {
  const ref = targetRevision === '' ? 'HEAD' : targetRevision;
  // A branch wins over a tag of the same name, as in Argo CD.
  for (const candidate of ref === 'HEAD' ? ['HEAD'] : [`refs/heads/${ref}`, ref]) {
    try {
      return (await git(gitDir, ['rev-parse', '--verify', '--quiet', `${candidate}^{commit}`])).trim();
    } catch (error) {
      // rev-parse --quiet exits 1 for a name that does not resolve; anything else is a real failure.
      if ((error as { code?: number }).code !== 1) throw error;
    }
  }
  return undefined;
}

/** Whether `path` differs between two commits; true when `from` is unknown to the repository. */
export async function pathChanged(gitDir: string, from: string, to: string, path: string): Promise<boolean> {
  try {
    await git(gitDir, ['diff', '--quiet', from, to, '--', pathspec(path)]);
    return false;
  } catch (error) {
    const code = (error as { code?: number }).code;
    // 1: there are differences. 128: `from` is not in the repository (force-pushed away): treat as changed.
    if (code === 1 || code === 128) return true;
    throw error;
  }
}

export interface ManifestFile {
  file: string;
  content: string;
}

/** The YAML and JSON files under `path` at `revision`. */
export async function readManifests(gitDir: string, revision: string, path: string): Promise<ManifestFile[]> {
  const files = (await git(gitDir, ['ls-tree', '-r', '--name-only', '-z', revision, '--', pathspec(path)]))
    .split('\0').filter((f) => /\.(ya?ml|json)$/i.test(f));
  return Promise.all(files.map(async (file) => ({ file, content: await git(gitDir, ['show', `${revision}:${file}`]) })));
}

// Argo CD's "." and "" mean the repository root; git wants "." for that, and a
// trailing slash keeps "apps/a" from matching "apps/ab".
function pathspec(path: string): string {
  const trimmed = path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return trimmed === '' || trimmed === '.' ? '.' : `${trimmed}/`;
}
