// What Argo CD's repo server generates for an app's source, with the same tools:
// the source type is detected as Argo CD does, by the operator's own rule
// (src/modules/source-set.ts: what the source declares, else the names at the
// path), so the simulator and the operator never disagree on an app's type; and a Kustomize or Helm source is rendered by running the very
// `kustomize build` / `helm template` binaries provision.sh puts on the real repo
// server's PATH, over the repository's tree at the revision (so `../../base` and
// value files outside the chart resolve as they do there). A directory is read
// as it is (git.ts readManifests).
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { discoveredSourceType, explicitSourceType, type SourceType } from '../../src/modules/source-set.ts';
import { binaries } from '../stack/binaries.ts';
import { readManifests, type ManifestFile } from './git.ts';

const run = promisify(execFile);

export type { SourceType };

export interface RenderedSource {
  repoURL?: string;
  path?: string;
  targetRevision?: string;
  helm?: { valueFiles?: string[]; releaseName?: string; values?: string; valuesObject?: unknown };
  kustomize?: Record<string, unknown>;
  directory?: Record<string, unknown>;
}

function cleanPath(path: string | undefined): string {
  const trimmed = (path ?? '').replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return trimmed === '.' ? '' : trimmed;
}

/** The names directly under `path` at `revision`. */
async function entriesAt(gitDir: string, revision: string, path: string): Promise<string[]> {
  const { stdout } = await run('git', [`--git-dir=${gitDir}`, 'ls-tree', '--name-only', '-z', `${revision}:${path}`], { maxBuffer: 16 << 20 }).catch((error: unknown) => {
    // 128: no such path at that revision (an app whose path is not there yet): nothing to render.
    if ((error as { code?: number }).code === 128) return { stdout: '' };
    throw error;
  });
  return stdout.split('\0').filter(Boolean);
}

/** Argo CD's GetAppSourceType: what the source declares, else what the path holds. */
export async function sourceTypeOf(gitDir: string, revision: string, source: RenderedSource): Promise<SourceType> {
  const explicit = explicitSourceType(source);
  // Two declared types: Argo CD's repo server fails the generation too ("multiple application sources defined").
  if (typeof explicit === 'object') throw new Error(`source ${cleanPath(source.path) || '.'}: ${explicit.refused}`);
  return explicit ?? discoveredSourceType(await entriesAt(gitDir, revision, cleanPath(source.path)));
}

/**
 * The manifests of the app at `revision`: the YAML files of a directory, or the output of `kustomize build`
 * or `helm template` (release name: the app's, namespace: the destination's; value files relative to the
 * chart, as Argo CD resolves them).
 */
export async function renderSource(gitDir: string, revision: string, source: RenderedSource, app: { name: string; namespace: string }): Promise<{ type: SourceType; files: ManifestFile[] }> {
  const type = await sourceTypeOf(gitDir, revision, source);
  const path = cleanPath(source.path);
  if (type === 'Directory') return { type, files: await readManifests(gitDir, revision, path || '.') };
  const work = await mkdtemp(join(tmpdir(), 'argocd-sim-render-'));
  try {
    // The whole tree: a kustomization reaches outside its path, and so do value files.
    await run('sh', ['-c', 'git --git-dir="$1" archive --format=tar "$2" | tar -x -C "$3"', 'sh', gitDir, revision, work], { maxBuffer: 16 << 20 });
    const dir = join(work, path);
    if (type === 'Kustomize') {
      const kustomize = (await binaries('kustomize')).kustomize!;
      const { stdout } = await run(kustomize, ['build', dir], { maxBuffer: 64 << 20 });
      return { type, files: [{ file: `kustomize build ${path || '.'}`, content: stdout }] };
    }
    const helm = (await binaries('helm')).helm!;
    const valueFiles = (source.helm?.valueFiles ?? []).flatMap((f) => ['--values', join(work, posix.normalize(posix.join(path, f)))]);
    const { stdout } = await run(helm, ['template', source.helm?.releaseName ?? app.name, dir, '--namespace', app.namespace, ...valueFiles], {
      maxBuffer: 64 << 20, env: { ...process.env, HELM_CACHE_HOME: join(work, '.helm-cache'), HELM_CONFIG_HOME: join(work, '.helm-config'), HELM_DATA_HOME: join(work, '.helm-data') },
    });
    return { type, files: [{ file: `helm template ${path || '.'}`, content: stdout }] };
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim();
    throw new Error(`rendering ${type} source ${path || '.'} at ${revision.slice(0, 7)} failed: ${stderr || (error as Error).message}`, { cause: error });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
