// The blast radius of a rollback (issue 18 §4): the other Applications that deploy
// from a file the rollback commit changes, in the same repository and branch. A
// shared Kustomize base or a chart two environments render is one file for many
// apps: restoring it for a staging app changes production too, so such a
// rollback is named as such and waits for an approver (fsm/record.ts
// affectsBeyondStaging). Every Application the operator can list is weighed, not
// only the ones it watches for degradation: an app no policy governs is changed
// just the same.
import { isUnder, type AffectedApp, type Environment, type RepoRef } from '../fsm/record.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { ChangedFile, GitHubPort } from '../ports/github.ts';
import { sourceSetApp } from './candidate-resolver.ts';
import { gitSources, repositoryKey, sourceSet, wholeTreeReader, type SourceSet } from './source-set.ts';
import { targetRevisionOf } from './target-branch.ts';

export interface BlastRadiusInput {
  /** The app being rolled back: not its own blast radius. */
  app: ApplicationView;
  repo: RepoRef;
  /** The branch the rollback merges into, and its head the files were compared on. */
  branch: string;
  headSha: string;
  files: ChangedFile[];
  /** Every Application the operator can list. */
  others: ApplicationView[];
  /** The environment that governs an app, or `ungoverned` when none does. */
  environmentOf: (app: ApplicationView) => Environment | 'ungoverned';
  /** Sets already computed at this head (a burst of rollbacks weighs the same apps at the same head). */
  cache?: SourceSetCache;
}

/**
 * Source sets computed at one commit, by what the set reads of an app's spec: a commit never changes, so a
 * set is computed once per (commit, spec) however many rollbacks weigh it. Keeps the latest head of each
 * repository only: the next merge moves the head, and the sets are computed again there.
 */
export class SourceSetCache {
  // By the view object: the watch replaces an Application's view when it changes, so a view is one spec.
  private readonly heads = new Map<string, { sha: string; sets: WeakMap<object, Promise<SourceSet>> }>();
  private readonly maxRepositories: number;

  constructor(maxRepositories = 64) {
    this.maxRepositories = maxRepositories;
  }

  setAt(repo: RepoRef, sha: string, app: object, compute: () => Promise<SourceSet>): Promise<SourceSet> {
    const repoKey = `${repo.owner}/${repo.repo}`.toLowerCase();
    let head = this.heads.get(repoKey);
    if (head?.sha !== sha) {
      this.heads.delete(repoKey);
      if (this.heads.size >= this.maxRepositories) this.heads.delete(this.heads.keys().next().value!);
      this.heads.set(repoKey, head = { sha, sets: new WeakMap() });
    }
    let set = head.sets.get(app);
    if (!set) {
      head.sets.set(app, set = compute());
      // A failed read (GitHub down) is not a set: asked again next time.
      set.catch(() => head!.sets.delete(app));
    }
    return set;
  }
}


/**
 * Whether `app` deploys `branch` of the repository whose key is `key`: one of its Git sources reads that
 * repository at that branch, or at HEAD (`head`: when the default branch is that branch). A tag or a commit is
 * a fixed point: a merge into the branch does not move it. `keys` holds each repository URL's key as computed
 * during this weighing: every app of a monorepo names the same few URLs, and computing a key (four regular
 * expressions and a copy) for each of 25,000 apps, once per rollback of a burst, was most of what a burst
 * allocated (issue 23). Synchronous, so that weighing an app of another repository costs no promise.
 */
function deploysBranch(app: ApplicationView, key: string, branch: string, keys: Map<string, string>): 'yes' | 'head' | 'no' {
  const sources = app.rendered ? gitSources(app.rendered) : app.source ? [app.source] : [];
  let atHead = false;
  for (const source of sources) {
    let sourceKey = keys.get(source.repoURL);
    if (sourceKey === undefined) keys.set(source.repoURL, sourceKey = repositoryKey(source.repoURL));
    if (sourceKey !== key) continue;
    const target = targetRevisionOf(source);
    if (target === branch) return 'yes';
    if (target === 'HEAD') atHead = true;
  }
  return atHead ? 'head' : 'no';
}

/** The paths of `set` at or under a changed file; none allocated for an app the files do not touch. */
function touchedPaths(set: SourceSet, files: readonly ChangedFile[]): string[] {
  let touched: string[] | undefined;
  for (const path of set.paths) {
    for (const file of files) {
      if (isUnder(path, file.path)) {
        (touched ??= []).push(path);
        break;
      }
    }
  }
  return touched ?? [];
}

export async function blastRadius(github: GitHubPort, input: BlastRadiusInput): Promise<AffectedApp[]> {
  if (input.files.length === 0) return [];
  const affected: AffectedApp[] = [];
  // Every app's set at the one head: its tree listed once, not once per app.
  const reader = wholeTreeReader(github);
  const url = input.app.source?.repoURL;
  if (url === undefined) return [];
  const key = repositoryKey(url);
  const keys = new Map<string, string>();
  let defaultIsBranch: boolean | undefined;
  for (const other of input.others) {
    const deploys = deploysBranch(other, key, input.branch, keys);
    if (deploys === 'no') continue;
    if (deploys === 'head' && !(defaultIsBranch ??= (await github.defaultBranch(input.repo)) === input.branch)) continue;
    if (other.ref.name === input.app.ref.name && other.ref.namespace === input.app.ref.namespace) continue;
    const compute = () => sourceSet(reader, sourceSetApp(other), input.headSha);
    const set = await (input.cache ? input.cache.setAt(input.repo, input.headSha, other, compute) : compute());
    // What an app reads cannot be told (a plugin, Jsonnet…): it may read the files changed, so it counts.
    const paths = set.refused
      ? [`(its source set cannot be computed: ${set.refused})`]
      : touchedPaths(set, input.files);
    if (paths.length === 0) continue;
    affected.push({ namespace: other.ref.namespace, name: other.ref.name, environment: input.environmentOf(other), paths });
  }
  return affected.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}
