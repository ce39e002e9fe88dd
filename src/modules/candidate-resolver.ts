// RollbackCandidateResolver (SPEC §6.3, issue 18 §2): what runs is the app's
// source set at the deployed revision; a candidate is an earlier deployment in
// status.history whose source set differs from it, never a version rolled back
// from, whose deployed window was stable in production metrics — or, when
// Prometheus cannot tell, whose CI was green. "Rolled back from" is the last
// commit that changed the set at or before the deployed revision (in a monorepo
// Argo CD's sync.revision is the branch head, often another app's commit), and
// the commits the rollback undoes are the commits that touched the set between
// the candidate and what runs.
import { formatDuration } from '../fsm/format.ts';
import { shortSha, type Candidate, type CandidateOutcome, type Settings, type UndoneCommit } from '../fsm/record.ts';
import type { ApplicationView, DeploymentHistoryEntry } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { CommitInfo, GitHubPort, RepoRef } from '../ports/github.ts';
import type { MetricsHistoryPort } from '../ports/prometheus.ts';
import { collapsePaths, sourceSet, type SourceSet, type SourceSetApp } from './source-set.ts';

export interface CandidateInput {
  app: ApplicationView;
  repo: RepoRef;
  settings: Settings;
  /** The deployed revision; '' when Argo CD reports none. */
  currentRevision: string;
  /** Commits rolled back from before: a deployment whose source set is what one of them held is never chosen. */
  excluded: string[];
  /** When the decision is made: the end of the deployed revision's window. */
  now: Date;
  /** The running clock the search budget is measured on (each call a fresh reading). */
  clock: () => Date;
}

/** A PromQL double-quoted string body: label values are escaped, never spliced raw. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * The uptime query of one app instance: `$app` and `$namespace` (the Application's, as argocd_app_info's
 * `name` and `namespace` labels carry them) escaped, `$window` in seconds. One pass: a substituted value
 * is never read again for placeholders.
 */
export function renderUptimeQuery(template: string, app: { name: string; namespace: string }, windowSeconds: number): string {
  const values: Record<string, string> = {
    app: escapeLabelValue(app.name), namespace: escapeLabelValue(app.namespace), window: `${Math.max(1, Math.floor(windowSeconds))}s`,
  };
  return template.replace(/\$(namespace|window|app)/g, (_, name: string) => values[name]!);
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, y: 31_536_000 };

export function durationSeconds(duration: string): number {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/([0-9]+)(ms|s|m|h|d|w|y)/g)) total += Number(n) * DURATION_UNITS[unit!]!;
  return total;
}

/** What the source set reads of an Application: its spec's sources and the annotation (the port's view of them). */
export function sourceSetApp(app: ApplicationView): SourceSetApp {
  const rendered = app.rendered;
  return {
    name: app.ref.name, namespace: app.ref.namespace,
    ...(rendered?.manifestGeneratePaths ? { annotations: { 'argocd.argoproj.io/manifest-generate-paths': rendered.manifestGeneratePaths } } : {}),
    ...(rendered?.sources ? { sources: rendered.sources } : {}),
    // A view without the spec's fields (a fake, an older cache) still names its path: a directory source.
    ...(rendered?.source ? { source: rendered.source } : !rendered?.sources && app.source ? { source: { repoURL: app.source.repoURL, path: app.source.path, targetRevision: app.source.targetRevision } } : {}),
  };
}

/**
 * The paths whose commits make the set's history: a directory source's own directory stands for the files
 * Argo CD reads in it (one commit listing, not one per file), every other path of the set as it is.
 */
export function historyPaths(set: SourceSet, app: ApplicationView): string[] {
  const own = set.kind === 'Directory' && app.source ? app.source.path.replace(/^\.?\/+/, '').replace(/\/+$/, '').replace(/^\.$/, '') : undefined;
  const inside = (p: string) => own !== undefined && (own === '' || p === own || p.startsWith(`${own}/`));
  return collapsePaths([...(own !== undefined && set.paths.some(inside) ? [own] : []), ...set.paths.filter((p) => !inside(p))]);
}

/** Commits touching any of `paths`, reachable from `ref`, newest first (by date; ties keep the listing's order). */
export async function commitsOfSet(github: GitHubPort, repo: RepoRef, paths: string[], ref: string, limit: number): Promise<CommitInfo[]> {
  const lists = await Promise.all(paths.map((p) => github.readRepositoryContent(repo, p, ref, limit)));
  const seen = new Map<string, CommitInfo>();
  for (const list of lists) for (const c of list) if (!seen.has(c.sha)) seen.set(c.sha, c);
  if (lists.length === 1) return lists[0]!.slice(0, limit);
  return [...seen.values()].sort((a, b) => Date.parse(b.date) - Date.parse(a.date)).slice(0, limit);
}

/** The deployments before the one running `current`, newest first: the candidates, in the order they are weighed. */
export function earlierDeployments(history: DeploymentHistoryEntry[], current: string): DeploymentHistoryEntry[] {
  const byId = [...history].sort((a, b) => b.id - a.id);
  const running = byId.findIndex((h) => h.revision === current);
  // Argo CD records a deployment once its sync ends: a revision not recorded yet runs after every entry.
  return (running >= 0 ? byId.slice(running + 1) : byId).filter((h) => h.revision !== current);
}

/** A deployment's window: from it to the next deployment (or now), capped to the last `window` of it. */
export function deploymentWindow(history: DeploymentHistoryEntry[], deployment: DeploymentHistoryEntry, windowSeconds: number, now: Date): { end: number; seconds: number } | undefined {
  const next = [...history].sort((a, b) => a.id - b.id).find((h) => h.id > deployment.id);
  const start = Date.parse(deployment.deployedAt) / 1000;
  const end = next ? Date.parse(next.deployedAt) / 1000 : now.getTime() / 1000;
  const seconds = Math.min(windowSeconds, end - start);
  return seconds > 0 ? { end, seconds } : undefined;
}

const sameCharts = (a: string[] | undefined, b: string[] | undefined) => (a ?? []).join('\n') === (b ?? []).join('\n');
/** A deployment as messages name it; a commit standing in for one (no history) by its SHA alone. */
const named = (d: DeploymentHistoryEntry) => (d.id >= 0 ? `#${d.id} ${shortSha(d.revision)}` : shortSha(d.revision));

/** A read of a commit GitHub no longer has (NOT_FOUND): undefined; any other failure stands. */
async function absentAsUndefined<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (error) {
    if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
    throw error;
  }
}

/** A deployment that may be rolled back to: what it restores, and why it was weighed. */
interface Weighed {
  deployment: DeploymentHistoryEntry;
  /** The set the rollback restores: what runs and what the deployment ran, together. */
  paths: string[];
}

export async function resolveCandidate(github: GitHubPort, metrics: MetricsHistoryPort, input: CandidateInput): Promise<CandidateOutcome> {
  const { app, repo, settings, now, clock } = input;
  const deadline = clock().getTime() + settings.searchTimeoutSeconds * 1000;
  const overBudget = () => clock().getTime() > deadline;
  const current = input.currentRevision.trim();
  // "Older than what runs" needs to know what runs: guessing the newest commit could roll back a
  // revision that was never deployed, and every message after would name an empty revision.
  if (current === '') {
    return { kind: 'none', detail: 'Argo CD reports no deployed revision (status.sync.revision is empty): nothing to roll back from' };
  }
  // A tag or branch name is not a point in the set's history: guessing which commit runs could undo the wrong ones.
  if (!/^[0-9a-f]{7,64}$/i.test(current)) {
    return { kind: 'none', detail: `Argo CD reports the deployed revision as ${JSON.stringify(input.currentRevision.slice(0, 100))}, not a commit SHA: nothing to roll back from` };
  }
  try {
    const setApp = sourceSetApp(app);
    const running = await sourceSet(github, setApp, current);
    if (running.refused) return { kind: 'none', detail: `the app's source set cannot be computed: ${running.refused}` };
    if (running.paths.length === 0) return { kind: 'none', detail: `the app's source renders nothing at ${shortSha(current)}: no source set to roll back` };
    // One listing per (paths, ref): the set's history at what runs is read once, and reused for what is undone.
    const listings = new Map<string, Promise<CommitInfo[]>>();
    const history = (paths: string[], ref: string) => {
      const key = `${ref} ${paths.join('\0')}`;
      let known = listings.get(key);
      if (!known) listings.set(key, known = commitsOfSet(github, repo, paths, ref, settings.maxCommits));
      return known;
    };
    const setHistory = await history(historyPaths(running, app), current);
    const rolledBackFrom = setHistory[0]?.sha;
    const found = async (weighed: Weighed, candidate: Omit<Candidate, 'paths' | 'undone' | 'deploymentId'>): Promise<CandidateOutcome> => {
      const paths = historyPaths({ ...running, paths: weighed.paths }, app);
      const now_ = await history(paths, current);
      // The target is one of the set's own commits (an app's release, the usual case): what is newer undoes.
      // Otherwise (a monorepo's branch head) what the target reaches is read, and the rest undoes.
      const at = now_.findIndex((c) => c.sha === weighed.deployment.revision);
      const before = at >= 0 ? new Set(now_.slice(at).map((c) => c.sha)) : new Set((await history(paths, weighed.deployment.revision)).map((c) => c.sha));
      const undone: UndoneCommit[] = now_.filter((c) => !before.has(c.sha)).map((c) => ({ ...c, message: (c.message.split('\n')[0] ?? '').slice(0, 200) }));
      return {
        kind: 'found', currentRevision: input.currentRevision, ...(rolledBackFrom ? { rolledBackFrom } : {}),
        candidate: { ...candidate, paths: weighed.paths, undone, ...(weighed.deployment.id >= 0 ? { deploymentId: weighed.deployment.id } : {}) },
      };
    };

    // A new Application (or one deleted and created again, or renamed) has no earlier deployment of its own:
    // the commits that changed its set stand in, without windows to measure — CI alone can choose among them.
    const earlier = earlierDeployments(app.history, current);
    const noHistory = earlier.length === 0
      ? `status.history holds no deployment before the one running ${shortSha(current)} (a new or recreated Application)` : undefined;
    const deployments: DeploymentHistoryEntry[] = noHistory ? setHistory.slice(1).map((c, i) => ({ id: -1 - i, revision: c.sha, deployedAt: c.date })) : earlier;
    if (deployments.length === 0) return { kind: 'none', detail: `${noHistory}, and no earlier commit changed its source set: nothing to roll back to` };
    const windowSeconds = durationSeconds(settings.window);
    const measured: string[] = [];
    const differing: Weighed[] = [];
    let runningRelease = true;
    const digests = new Map<string, Promise<string>>();
    const digest = (sha: string, paths: string[]) => {
      const key = `${sha} ${paths.join('\0')}`;
      let known = digests.get(key);
      if (!known) digests.set(key, known = github.contentDigest(repo, sha, paths));
      return known;
    };
    let prometheusAnswered = false;
    let prometheusDown: string | undefined;
    for (const deployment of deployments) {
      if (overBudget()) return { kind: 'timeout', detail: `candidate search exceeded ${formatDuration(settings.searchTimeoutSeconds)} after ${measured.length} deployment(s)` };
      // A chart from a Helm repository is versioned in the Application's spec: no Git commit can restore another version.
      if (!sameCharts(deployment.charts, app.rendered?.charts)) {
        measured.push(`${named(deployment)}: deployed ${(deployment.charts ?? ['no chart']).join(', ')}, not ${(app.rendered?.charts ?? ['no chart']).join(', ')} as now (a chart version lives in the Application's spec, not in Git)`);
        continue;
      }
      // A commit rewritten out of the repository (a force push) can be weighed no more: passed over, not fatal.
      const then = await absentAsUndefined(sourceSet(github, setApp, deployment.revision));
      if (!then) {
        measured.push(`${named(deployment)}: its commit is no longer in the repository`);
        continue;
      }
      if (then.refused) {
        measured.push(`${named(deployment)}: its source set cannot be computed (${then.refused})`);
        continue;
      }
      const paths = collapsePaths([...running.paths, ...then.paths]);
      const thenDigest = await digest(deployment.revision, paths);
      // The deployments right before what runs that hold the same source are the same release (in a monorepo,
      // other apps' commits moved sync.revision on): not a target. An older one that held it again (a revert
      // in between) is: chosen, its rollback changes nothing, and the attempt says the degradation is not in Git.
      if (runningRelease && thenDigest === await digest(current, paths)) {
        measured.push(`${named(deployment)}: same source as what runs`);
        continue;
      }
      runningRelease = false;
      let rolledBack: string | undefined;
      for (const sha of input.excluded) if (await absentAsUndefined(digest(sha, paths)) === thenDigest) rolledBack = sha;
      if (rolledBack) {
        measured.push(`${named(deployment)}: the source rolled back from at ${shortSha(rolledBack)} before`);
        continue;
      }
      const weighed = { deployment, paths };
      differing.push(weighed);
      if (prometheusDown || noHistory) continue;
      const window = deploymentWindow(app.history, deployment, windowSeconds, now);
      if (!window) {
        measured.push(`${named(deployment)}: no deployed window`);
        continue;
      }
      let uptime: number | undefined;
      try {
        uptime = await metrics.uptime(renderUptimeQuery(settings.uptimeQuery, app.ref, window.seconds), window.end);
      } catch (error) {
        if (!(error instanceof IntegrationError)) throw error;
        prometheusDown = error.message;
        continue;
      }
      if (uptime === undefined) {
        measured.push(`${named(deployment)}: no data`);
        continue;
      }
      prometheusAnswered = true;
      measured.push(`${named(deployment)}: ${(uptime * 100).toFixed(2)}%`);
      if (uptime >= settings.minUptime) {
        const ci = await github.getCommitStatus(repo, deployment.revision);
        return found(weighed, {
          revision: deployment.revision, shortRevision: shortSha(deployment.revision), uptime, mode: 'metrics',
          evidence: `${(uptime * 100).toFixed(2)}% Healthy over ${formatDuration(window.seconds)} deployed (minimum ${(settings.minUptime * 100).toFixed(2)}%)`,
          ciState: ci.state === 'none' ? 'unknown' : ci.state,
        });
      }
    }
    if (differing.length === 0) {
      return { kind: 'none', detail: `no earlier deployment differs from what runs in a way a rollback may restore: ${measured.join(', ')}` };
    }
    if (prometheusAnswered && !prometheusDown) {
      return { kind: 'none', detail: `no deployment reached ${(settings.minUptime * 100).toFixed(2)}% uptime: ${measured.join(', ')}` };
    }
    const why = noHistory ? `${noHistory}: the commits that changed its source set are candidates` : prometheusDown ?? 'Prometheus has no data for these deployments';
    for (const weighed of differing) {
      if (overBudget()) return { kind: 'timeout', detail: `candidate search (CI-only) exceeded ${formatDuration(settings.searchTimeoutSeconds)}` };
      const sha = weighed.deployment.revision;
      const ci = await github.getCommitStatus(repo, sha);
      if (ci.state === 'success') {
        return found(weighed, {
          revision: sha, shortRevision: shortSha(sha), uptime: null, mode: 'ci-only', ciState: 'success',
          evidence: `CI-only selection (${why}): combined status and check runs of ${shortSha(sha)} are success`,
        });
      }
    }
    return { kind: 'none', detail: `CI-only selection (${why}): no earlier ${noHistory ? 'commit' : 'deployment'} has green CI` };
  } catch (error) {
    if (error instanceof IntegrationError) return { kind: 'error', code: error.code, message: error.message };
    throw error;
  }
}
