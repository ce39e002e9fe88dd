// The app's source set (issue 18 §1): the repository paths whose content Argo CD
// renders into the app, for one Git source at one commit. A rollback that
// restores less than this set leaves part of the bad change deployed (a base
// outside the overlay's path, a values file outside the chart); one that
// restores more changes what the app does not deploy. Pure over a reader of the
// repository at a commit: the GitHub client answers from its per-commit cache, so
// asking again at a commit already read costs nothing.
//
// Where each rule comes from (argoproj/argo-cd; read at master, 2026-08):
// - Source type: `ApplicationSource.ExplicitType` (pkg/apis/.../types.go) — one of
//   `helm`/`kustomize`/`directory`/`plugin` set is the type, two are an error —
//   else `discovery.AppType` (util/app/discovery/discovery.go), which walks the
//   files at the path in lexical order, a name ending in `Chart.yaml` saying Helm
//   and a kustomization file saying Kustomize, the later one winning.
// - Directory: reposerver/repository/repository.go `getPotentiallyValidManifests`:
//   `recurse` (default false) or only the top level; only `*.yaml|yml|json|jsonnet`
//   unless `disableExtensionFilter`; `exclude`, then `include`, matched with
//   util/glob `Match` (gobwas/glob with no separators: `*` crosses `/`, `{a,b}`
//   alternatives) against the path relative to the app's path.
// - Helm value files: repository.go `getResolvedValueFiles` and util/io/path
//   `ResolveValueFilePathOrUrl`: a URL is remote, `/x` is from the repository
//   root, anything else from the chart's path, outside the root is an error, a
//   glob is expanded (doublestar), `$name/…` names another source of a
//   multi-source app. `fileParameters[].path` resolves the same way.
// - The annotation: util/app/path `GetAppRefreshPaths` (`;`-separated, an
//   absolute item is from the repository root, a relative one is joined onto the
//   source's path and cleaned) and `AppFilesHaveChanged` (a changed file counts
//   when it is an item, under an item, or matches an item as a filepath.Match glob).
import { parse } from 'yaml';
import { isUnder, itemsUnder, repoFromUrl, type RepoRef } from '../fsm/record.ts';
import type { AppSource } from '../ports/argocd.ts';
import type { RepositorySnapshotReader } from '../ports/github.ts';

export type SourceType = 'Directory' | 'Kustomize' | 'Helm';

export type { AppSource } from '../ports/argocd.ts';

export interface SourceSetApp {
  /** The Application's name (value files may say `$ARGOCD_APP_NAME`; messages name it). */
  name: string;
  namespace?: string;
  annotations?: Record<string, string>;
  source?: AppSource;
  sources?: AppSource[];
}

export interface SourceSet {
  /** The detected type (a multi-source app's: of its first source with a path); 'Directory' when refused before the type could be told. */
  kind: SourceType;
  /**
   * Repository-relative, normalised, sorted, deduplicated; a directory means everything under it, and a path
   * under another one of the set is left out. '' is the whole repository.
   */
  paths: string[];
  /** Why the set is not computed (multi-source, a path leaving the repository, a plugin…): the paths are then empty. */
  refused?: string;
}

export const MANIFEST_GENERATE_PATHS = 'argocd.argoproj.io/manifest-generate-paths';
export const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'] as const;

/** The type a source declares (Argo CD's ExplicitType): undefined when none, refused when several or a plugin. */
export function explicitSourceType(source: Pick<AppSource, 'helm' | 'kustomize' | 'directory' | 'plugin'>): SourceType | undefined | { refused: string } {
  const declared = [
    ...(source.kustomize ? ['Kustomize' as const] : []), ...(source.helm ? ['Helm' as const] : []),
    ...(source.directory ? ['Directory' as const] : []), ...(source.plugin ? ['Plugin' as const] : []),
  ];
  if (declared.length > 1) return { refused: `the source declares several types (${declared.join(', ')}): Argo CD refuses it too ("multiple application sources defined")` };
  if (declared[0] === 'Plugin') return { refused: 'the source is a config management plugin: what a plugin reads of the repository is not known' };
  return declared[0];
}

/** The type Argo CD discovers from the names directly at the path (discovery.AppType): the last match in lexical order wins. */
export function discoveredSourceType(names: readonly string[]): SourceType {
  let type: SourceType = 'Directory';
  // filepath.Walk visits names in byte order; a later match overwrites an earlier one.
  for (const name of [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (name.endsWith('Chart.yaml')) type = 'Helm';
    if ((KUSTOMIZATION_FILES as readonly string[]).includes(name)) type = 'Kustomize';
  }
  return type;
}

/**
 * `path` resolved against the directory `base` and normalised; undefined when it leaves the repository root.
 * An absolute path is from the repository root when `absolute` says so, else it leaves the repository.
 */
export function resolvePath(base: string, path: string, absolute: 'root' | 'outside' = 'outside'): string | undefined {
  if (path.startsWith('/') && absolute === 'outside') return undefined;
  const parts = path.startsWith('/') ? [] : base.split('/').filter((s) => s !== '' && s !== '.');
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(segment);
  }
  return parts.join('/');
}


/** Sorted, deduplicated, and without the paths another one of the set already covers. */
export function collapsePaths(paths: Iterable<string>): string[] {
  const sorted = [...new Set(paths)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return sorted.filter((p) => !sorted.some((q) => q !== p && isUnder(q, p)));
}

/**
 * A glob as a regular expression, in one of the three dialects Argo CD uses: 'gobwas' (directory include and
 * exclude: `*` and `?` cross `/`, `{a,b}`), 'filepath' (Go's filepath.Match: `*` stops at `/`, no braces) and
 * 'doublestar' (value files: `**` spans directories, `*` stops at `/`, `{a,b}`). Undefined when malformed.
 */
export function globRegExp(pattern: string, dialect: 'gobwas' | 'filepath' | 'doublestar'): RegExp | undefined {
  const any = dialect === 'gobwas' ? '.' : '[^/]';
  let re = '';
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRegExp(pattern[++i]!);
    else if (c === '*') {
      const double = pattern[i + 1] === '*';
      if (double) i++;
      if (double && dialect === 'doublestar' && pattern[i + 1] === '/' && (i < 2 || pattern[i - 2] === '/')) {
        re += '(?:[^/]*/)*';
        i++;
      } else re += double && dialect === 'doublestar' ? '.*' : `${any}*`;
    } else if (c === '?') re += any;
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) return undefined;
      let body = pattern.slice(i + 1, end);
      const negated = body.startsWith('!') || body.startsWith('^');
      if (negated) body = body.slice(1);
      re += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else if (c === '{' && dialect !== 'filepath') { re += '(?:'; braces++; }
    else if (c === ',' && braces > 0) re += '|';
    else if (c === '}' && braces > 0) { re += ')'; braces--; }
    else re += escapeRegExp(c);
  }
  return braces === 0 ? new RegExp(`^${re}$`) : undefined;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const isGlob = (s: string) => /[*?[{]/.test(s);

/** A refusal: thrown inside the walk, returned as `refused`. */
class Refusal extends Error {}

/**
 * A reader that lists each commit's whole tree once and answers every prefix from it in memory (binary
 * search over the sorted listing): for computing many apps' sets at one commit — a blast radius weighs every
 * Application of the repository — one listing instead of one per app. Files are still read through `reader`.
 */
export function wholeTreeReader(reader: RepositorySnapshotReader): RepositorySnapshotReader {
  const trees = new Map<string, Promise<string[]>>();
  return {
    readFileAt: (repo, sha, path) => reader.readFileAt(repo, sha, path),
    async listFilesAt(repo, sha, prefix) {
      const key = `${repo.owner}/${repo.repo}@${sha}`;
      let tree = trees.get(key);
      if (!tree) {
        trees.set(key, tree = reader.listFilesAt(repo, sha, '').then((files) => [...files].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))));
        tree.catch(() => trees.delete(key));
      }
      return itemsUnder(await tree, prefix, (f) => f);
    },
  };
}

/** One computation: the reader at one commit of one repository, answers kept for the walk. */
class Snapshot {
  private readonly listings = new Map<string, Promise<string[]>>();
  private readonly reader: RepositorySnapshotReader;
  private readonly repo: RepoRef;
  private readonly sha: string;

  constructor(reader: RepositorySnapshotReader, repo: RepoRef, sha: string) {
    this.reader = reader;
    this.repo = repo;
    this.sha = sha;
  }

  read(path: string): Promise<string | undefined> {
    return this.reader.readFileAt(this.repo, this.sha, path);
  }

  list(prefix: string): Promise<string[]> {
    let listing = this.listings.get(prefix);
    if (!listing) this.listings.set(prefix, listing = this.reader.listFilesAt(this.repo, this.sha, prefix));
    return listing;
  }

  async kind(path: string): Promise<'file' | 'directory' | 'missing'> {
    const files = await this.list(path);
    if (files.includes(path)) return 'file';
    return files.some((f) => isUnder(path, f)) ? 'directory' : 'missing';
  }

  /** The files a glob (repository-relative) matches: listed from its longest literal directory. */
  async glob(pattern: string, dialect: 'filepath' | 'doublestar'): Promise<string[]> {
    const re = globRegExp(pattern, dialect);
    if (!re) throw new Refusal(`the glob ${pattern} is malformed`);
    const segments = pattern.split('/');
    const literal = segments.slice(0, segments.findIndex(isGlob)).join('/');
    return (await this.list(literal)).filter((f) => re.test(f));
  }

  async yaml(path: string): Promise<Record<string, unknown> | undefined> {
    const text = await this.read(path);
    if (text === undefined) return undefined;
    let value: unknown;
    try {
      value = parse(text);
    } catch (error) {
      throw new Refusal(`${path} is not YAML (${(error as Error).message.split('\n')[0]}): what it reaches cannot be told`);
    }
    if (value === null || value === undefined) return {};
    if (typeof value !== 'object' || Array.isArray(value)) throw new Refusal(`${path} is not a YAML mapping: what it reaches cannot be told`);
    return value as Record<string, unknown>;
  }
}

const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : typeof value === 'string' ? [value] : []);
const objects = (value: unknown): Array<Record<string, unknown>> => (Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)) : []);

/**
 * Whether a kustomization entry is a remote target kustomize fetches (a URL, `git@…`, go-getter's `//` and
 * `?ref=`, or a repository on a well-known host): not followed, since it is a string in a file of the set,
 * restoring that file restores it. kustomize tries a local path first, so `exists` wins over the host rule.
 */
function isRemote(entry: string, exists: boolean): boolean {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry) || /^[^/@:]+@[^/:]+:/.test(entry) || /\?(ref|version|timeout|submodules)=/.test(entry) || /[^:]\/\/./.test(entry)) return true;
  return !exists && /^(github\.com|gitlab\.com|bitbucket\.org|[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,})\//i.test(entry);
}

/** The paths a kustomization reaches, transitively (the kustomization's own directory included). */
async function kustomizeSet(snap: Snapshot, dir: string, out: Set<string>, visited: Set<string>): Promise<void> {
  // A kustomization already walked (a cycle, or a base two overlays share) adds nothing new.
  if (visited.has(dir)) return;
  visited.add(dir);
  out.add(dir);
  let file: string | undefined;
  let k: Record<string, unknown> | undefined;
  for (const name of KUSTOMIZATION_FILES) {
    const candidate = dir === '' ? name : `${dir}/${name}`;
    k = await snap.yaml(candidate);
    if (k) { file = candidate; break; }
  }
  if (!k || !file) return; // a directory without a kustomization: kustomize fails on it; the directory is in the set as it is

  const local = async (field: string, entry: string, follow: boolean): Promise<void> => {
    const resolved = resolvePath(dir, entry);
    const exists = resolved !== undefined && (await snap.kind(resolved)) !== 'missing';
    if (isRemote(entry, exists)) return;
    if (resolved === undefined) throw new Refusal(`${file}: ${field} entry ${entry} leaves the repository root`);
    out.add(resolved);
    if (follow && (await snap.kind(resolved)) === 'directory') await kustomizeSet(snap, resolved, out, visited);
  };
  // Entries that may be kustomizations themselves (a directory is walked), then entries that are files.
  for (const field of ['resources', 'bases', 'components', 'transformers', 'generators', 'validators']) {
    for (const entry of strings(k[field])) {
      // A transformer or generator may be an inline object or a YAML string holding one: nothing to follow.
      if (entry.includes('\n')) continue;
      await local(field, entry, true);
    }
  }
  for (const field of ['patches', 'patchesJson6902', 'replacements']) {
    for (const item of objects(k[field])) if (typeof item.path === 'string') await local(`${field}[].path`, item.path, false);
  }
  // An entry of patchesStrategicMerge is a file, or an inline patch (YAML with a line break).
  for (const entry of strings(k.patchesStrategicMerge)) if (!entry.includes('\n')) await local('patchesStrategicMerge', entry, false);
  for (const field of ['crds', 'configurations']) for (const entry of strings(k[field])) await local(field, entry, false);
  const openapi = k.openapi as { path?: unknown } | undefined;
  if (typeof openapi?.path === 'string') await local('openapi.path', openapi.path, false);
  for (const field of ['configMapGenerator', 'secretGenerator']) {
    for (const generator of objects(k[field])) {
      // `files` entries are `path` or `key=path`.
      for (const entry of strings(generator.files)) await local(`${field}[].files`, entry.includes('=') ? entry.slice(entry.indexOf('=') + 1) : entry, false);
      for (const entry of [...strings(generator.envs), ...strings(generator.env)]) await local(`${field}[].envs`, entry, false);
    }
  }
  // helmCharts: a chart without `repo` is local, at `<helmGlobals.chartHome>/<name>` (kustomize's default home:
  // `charts`); with a repo kustomize pulls it, and the chart is in the kustomization's text. Values files are local.
  const chartHome = (k.helmGlobals as { chartHome?: unknown } | undefined)?.chartHome;
  for (const chart of objects(k.helmCharts)) {
    if (typeof chart.name === 'string' && (chart.repo === undefined || chart.repo === '')) {
      const home = resolvePath(dir, typeof chartHome === 'string' ? chartHome : 'charts');
      const chartDir = home === undefined ? undefined : resolvePath(home, chart.name);
      if (chartDir === undefined) throw new Refusal(`${file}: helmCharts entry ${chart.name} (chart home ${String(chartHome ?? 'charts')}) leaves the repository root`);
      await helmChartSet(snap, chartDir, out, new Set());
    }
    for (const entry of [...strings(chart.valuesFile), ...strings(chart.additionalValuesFiles)]) await local('helmCharts[].valuesFile', entry, false);
  }
}

/** A chart's directory and the charts its `file://` dependencies name (Chart.yaml, or a v1 chart's requirements.yaml), transitively. */
async function helmChartSet(snap: Snapshot, dir: string, out: Set<string>, visited: Set<string>): Promise<void> {
  if (visited.has(dir)) return;
  visited.add(dir);
  out.add(dir);
  for (const name of ['Chart.yaml', 'requirements.yaml']) {
    const file = dir === '' ? name : `${dir}/${name}`;
    const chart = await snap.yaml(file);
    for (const dependency of objects(chart?.dependencies)) {
      const repository = dependency.repository;
      if (typeof repository !== 'string' || !repository.startsWith('file://')) continue; // a chart repository: named by version in the file
      const target = resolvePath(dir, repository.slice('file://'.length));
      if (target === undefined) throw new Refusal(`${file}: dependency ${String(dependency.name)} (${repository}) leaves the repository root`);
      await helmChartSet(snap, target, out, visited);
    }
  }
}

/** What a Helm source reads: the chart, its file:// dependencies, its value files and file parameters. */
async function helmSet(snap: Snapshot, app: SourceSetApp, source: AppSource, path: string, out: Set<string>, refs: ReadonlyMap<string, AppSource>): Promise<void> {
  await helmChartSet(snap, path, out, new Set());
  const files = [
    ...strings(source.helm?.valueFiles).map((f) => ({ field: 'helm.valueFiles', entry: f })),
    ...objects(source.helm?.fileParameters).filter((p) => typeof p.path === 'string').map((p) => ({ field: 'helm.fileParameters[].path', entry: p.path as string })),
  ];
  for (const { field, entry: raw } of files) {
    // Argo CD substitutes its build environment in value file paths; only the app's own name and namespace are known here.
    const entry = raw.replace(/\$\{?ARGOCD_APP_NAME\}?/g, app.name).replace(/\$\{?ARGOCD_APP_NAMESPACE\}?/g, app.namespace ?? '$ARGOCD_APP_NAMESPACE');
    if (/^[a-z][a-z0-9+.-]*:/i.test(entry) && !entry.startsWith('/')) continue; // a URL: remote, it is in the Application's spec
    let base = path;
    let relative = entry;
    if (entry.startsWith('$')) {
      // `$name/…`: a file of the source whose `ref` is name, from that repository's root (Argo CD's ResolveValueFilePathOrUrl).
      const name = entry.slice(1).split('/')[0]!;
      const ref = refs.get(name);
      if (!ref) throw new Refusal(`${field} entry ${raw} refers to $${name}, which no source of the Application declares as its ref (or a variable not known here)`);
      if (!sameRepository(ref.repoURL, source.repoURL)) throw new Refusal(`${field} entry ${raw} reads $${name} from ${ref.repoURL}, another repository than ${source.repoURL}: one rollback commit cannot restore both`);
      base = '';
      relative = entry.slice(name.length + 2);
    }
    const resolved = resolvePath(base, relative, 'root');
    if (resolved === undefined || resolved === '') throw new Refusal(`${field} entry ${raw} leaves the repository root (from ${base || 'the repository root'})`);
    if (isGlob(resolved)) for (const match of await snap.glob(resolved, 'doublestar')) out.add(match);
    else out.add(resolved);
  }
}

/** What a directory source reads: its manifest files, as Argo CD's repo server picks them. */
async function directorySet(snap: Snapshot, source: AppSource, path: string, out: Set<string>): Promise<void> {
  const directory = source.directory ?? {};
  const include = typeof directory.include === 'string' && directory.include !== '' ? globRegExp(directory.include, 'gobwas') : undefined;
  const exclude = typeof directory.exclude === 'string' && directory.exclude !== '' ? globRegExp(directory.exclude, 'gobwas') : undefined;
  // util/glob logs a pattern that does not compile and matches nothing with it.
  const includeNothing = typeof directory.include === 'string' && directory.include !== '' && !include;
  for (const file of await snap.list(path)) {
    const relative = path === '' ? file : file.slice(path.length + 1);
    if (directory.recurse !== true && relative.includes('/')) continue;
    const name = relative.slice(relative.lastIndexOf('/') + 1);
    if (directory.disableExtensionFilter !== true && !/\.(yaml|yml|json|jsonnet)$/.test(name)) continue;
    if (exclude?.test(relative)) continue;
    if (includeNothing || (include && !include.test(relative))) continue;
    // A .jsonnet file may import any file of the repository: what it reads is not known from the tree.
    if (name.endsWith('.jsonnet')) throw new Refusal(`${file} is Jsonnet: the files it imports are not followed`);
    out.add(file);
  }
}

/**
 * The annotation's paths (GetAppRefreshPaths), a glob expanded at the commit. They are added to what is
 * computed, never used instead: Argo CD reads the annotation only to decide when to generate manifests again
 * (a commit touching none of them keeps the cached manifests), so it can be narrower than what the render
 * reads — a set cut down to it would miss a base the overlay reaches — or wider (an author listing a shared
 * directory so its changes redeploy the app), and then those paths do change what runs.
 */
async function annotatedPaths(snap: Snapshot, app: SourceSetApp, path: string, out: Set<string>): Promise<void> {
  const value = app.annotations?.[MANIFEST_GENERATE_PATHS];
  if (!value) return;
  for (const raw of value.split(';')) {
    const item = raw.trim();
    if (item === '') continue;
    const resolved = item.startsWith('/') ? resolvePath('', item.slice(1)) : resolvePath(path, item);
    if (resolved === undefined) throw new Refusal(`the annotation ${MANIFEST_GENERATE_PATHS} lists ${item}, which leaves the repository root (from ${path || 'the repository root'})`);
    if (isGlob(resolved)) for (const match of await snap.glob(resolved, 'filepath')) out.add(match);
    else out.add(resolved);
  }
}

/** Names a source in a refusal: its repository and path. */
const describe = (source: AppSource) => `${source.repoURL}${source.path !== undefined ? ` path ${source.path}` : ''}${source.chart !== undefined ? ` chart ${source.chart}` : ''}`;

/**
 * A repository URL as one key: host (and port) and path, without scheme, user, `.git` or a trailing slash, and
 * case-folded — `https://github.com/acme/gitops.git`, `git@github.com:acme/gitops` and
 * `ssh://git@github.com/acme/gitops` are one repository; the same owner/name on another host is another.
 */
export function repositoryKey(url: string): string {
  const trimmed = url.trim().replace(/\.git\/?$/i, '').replace(/\/+$/, '');
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?([^/]+)(\/.*)?$/i.exec(trimmed);
  if (scheme) return `${scheme[1]}${scheme[2] ?? ''}`.toLowerCase();
  const scp = /^(?:[^@/]+@)?([^:/]+):(.*)$/.exec(trimmed);
  return (scp ? `${scp[1]}/${scp[2]!.replace(/^\/+/, '')}` : trimmed).toLowerCase();
}

/** Whether two repository URLs name one repository (https, ssh and scp-like spellings, `.git` or not). */
export function sameRepository(a: string, b: string): boolean {
  return repositoryKey(a) === repositoryKey(b);
}

/**
 * The sources of a multi-source Application that are in Git and rendered from a path (a `ref`-only source
 * renders nothing: it is reached through `$ref/…` value files). A chart from a Helm repository is not in Git:
 * its version is in the Application's spec, compared between deployments by the candidate search.
 */
export function gitSources(app: Pick<SourceSetApp, 'source' | 'sources'>): AppSource[] {
  const all = app.sources !== undefined && app.sources.length > 0 ? app.sources : app.source ? [app.source] : [];
  return all.filter((s) => s.chart === undefined || s.chart === '');
}

/**
 * Why the operator cannot roll back this app's sources, or undefined when it can: one Git repository for
 * every Git source (one rollback commit restores them all), and at least one source with a path in it.
 */
export function unsupportedSources(app: Pick<SourceSetApp, 'source' | 'sources'>): string | undefined {
  const multi = app.sources !== undefined && app.sources.length > 0;
  const git = gitSources(app);
  if (git.length === 0) return multi ? 'spec.sources has no Git source: every source is a chart from a Helm repository, which no commit can roll back' : undefined;
  const first = git[0]!;
  const other = git.find((s) => !sameRepository(s.repoURL, first.repoURL));
  if (other) return `spec.sources reads two repositories (${first.repoURL} and ${other.repoURL}): one rollback commit cannot restore both`;
  const revisions = new Set(git.map((s) => s.targetRevision || 'HEAD'));
  if (revisions.size > 1) return `spec.sources deploys one repository at ${[...revisions].join(' and ')}: a rollback would have to choose which one to change`;
  if (multi && !git.some((s) => s.path !== undefined)) return 'spec.sources has no Git source with a path: nothing in Git is rendered';
  return undefined;
}

/**
 * The source set of the app at `revision` (a commit SHA): of its one Git source, or the union over the Git
 * sources of a multi-source Application in one repository (`$ref/…` value files resolved to the ref source's
 * files). Refused, never guessed, for what it cannot compute.
 */
export async function sourceSet(reader: RepositorySnapshotReader, app: SourceSetApp, revision: string): Promise<SourceSet> {
  const refuse = (refused: string, kind: SourceType = 'Directory'): SourceSet => ({ kind, paths: [], refused });
  const multi = app.sources !== undefined && app.sources.length > 0;
  if (!multi && !app.source) return refuse(`${app.name}: spec.source is missing`);
  // Argo CD: any entry in spec.sources makes the app multi-source, spec.source then ignored.
  const unsupported = unsupportedSources(app);
  if (unsupported) return refuse(`${app.name}: ${unsupported}`);
  if (!multi && app.source?.chart !== undefined && app.source.chart !== '') return refuse(`${app.name}: source ${describe(app.source)}: a chart from a Helm repository has no path in Git`);
  const refs = new Map((multi ? app.sources! : []).filter((s) => s.ref).map((s) => [s.ref!, s] as const));
  const rendered = gitSources(app).filter((s) => !multi || s.path !== undefined);
  const out = new Set<string>();
  let kind: SourceType | undefined;
  for (const source of rendered) {
    const one = await sourceSetOf(reader, app, source, revision, refs);
    if (one.refused) return one;
    kind ??= one.kind;
    for (const p of one.paths) out.add(p);
  }
  return { kind: kind ?? 'Directory', paths: collapsePaths(out) };
}

/** The set of one Git source (with the annotation, whose paths are relative to each source's path). */
async function sourceSetOf(reader: RepositorySnapshotReader, app: SourceSetApp, source: AppSource, revision: string, refs: ReadonlyMap<string, AppSource>): Promise<SourceSet> {
  const refuse = (refused: string, kind: SourceType = 'Directory'): SourceSet => ({ kind, paths: [], refused });
  const named = `${app.name}: source ${describe(source)}`;
  const repo = repoFromUrl(source.repoURL);
  if (!repo) return refuse(`${named}: the repository URL names no owner/repository`);
  const path = (source.path ?? '').startsWith('/') ? undefined : resolvePath('', source.path ?? '');
  if (path === undefined) return refuse(`${named}: the path is absolute or leaves the repository root (Argo CD refuses it too)`);

  const snap = new Snapshot(reader, repo, revision);
  const explicit = explicitSourceType(source);
  if (typeof explicit === 'object') return refuse(`${named}: ${explicit.refused}`);
  let kind: SourceType = explicit ?? 'Directory';
  try {
    if (!explicit) {
      const names = (await snap.list(path)).map((f) => (path === '' ? f : f.slice(path.length + 1))).filter((n) => !n.includes('/'));
      kind = discoveredSourceType(names);
    }
    const out = new Set<string>();
    if (kind === 'Kustomize') {
      await kustomizeSet(snap, path, out, new Set());
      // Argo CD's own kustomize.components are added to the kustomization at the path: resolved from it.
      for (const component of strings(source.kustomize?.components)) {
        const resolved = resolvePath(path, component);
        if (resolved === undefined) throw new Refusal(`kustomize.components entry ${component} leaves the repository root`);
        await kustomizeSet(snap, resolved, out, new Set());
      }
    } else if (kind === 'Helm') await helmSet(snap, app, source, path, out, refs);
    else await directorySet(snap, source, path, out);
    await annotatedPaths(snap, app, path, out);
    return { kind, paths: collapsePaths(out) };
  } catch (error) {
    if (error instanceof Refusal) return refuse(`${named} at ${revision.slice(0, 7)}: ${error.message}`, kind);
    throw error;
  }
}
