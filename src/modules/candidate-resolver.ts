// RollbackCandidateResolver (SPEC §6.3): the newest commit of the app's path,
// older than the deployed revision and never rolled back from, whose deployed
// window was stable in production metrics — or, when Prometheus cannot tell,
// whose CI was green.
import { formatDuration } from '../fsm/format.ts';
import { shortSha, type Candidate, type CandidateOutcome, type Settings, type UndoneCommit } from '../fsm/record.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { CommitInfo, GitHubPort, RepoRef } from '../ports/github.ts';
import type { MetricsHistoryPort } from '../ports/prometheus.ts';

export interface CandidateInput {
  app: ApplicationView;
  repo: RepoRef;
  /** The branch whose history is read: the attempt's (resolved from targetRevision when it started). */
  branch: string;
  settings: Settings;
  /** The deployed revision; '' when Argo CD reports none. */
  currentRevision: string;
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

/** The commits a rollback may target, newest first. */
export function candidateCommits(commits: CommitInfo[], currentRevision: string, excluded: string[]): CommitInfo[] {
  const at = commits.findIndex((c) => c.sha === currentRevision);
  // When the deployed revision did not touch the path, the newest path commit is what runs.
  const older = at >= 0 ? commits.slice(at + 1) : commits.slice(1);
  return older.filter((c) => !excluded.includes(c.sha));
}

/** A revision's deployed window: from its deployment to the next one, capped to the last `window` of it. */
export function deployedWindow(app: ApplicationView, revision: string, windowSeconds: number, now: Date): { end: number; seconds: number } | undefined {
  const history = [...app.history].sort((a, b) => a.id - b.id);
  const index = history.map((h) => h.revision).lastIndexOf(revision);
  if (index < 0) return undefined;
  const start = Date.parse(history[index]!.deployedAt) / 1000;
  const next = history[index + 1];
  const end = next ? Date.parse(next.deployedAt) / 1000 : now.getTime() / 1000;
  const seconds = Math.min(windowSeconds, end - start);
  return seconds > 0 ? { end, seconds } : undefined;
}

export async function resolveCandidate(github: GitHubPort, metrics: MetricsHistoryPort, input: CandidateInput): Promise<CandidateOutcome> {
  const { app, repo, settings, now, clock } = input;
  const deadline = clock().getTime() + settings.searchTimeoutSeconds * 1000;
  const overBudget = () => clock().getTime() > deadline;
  const path = app.source?.path || '.';
  const branch = input.branch;
  // "Older than what runs" needs to know what runs: guessing the newest commit could roll back a
  // revision that was never deployed, and every message after would name an empty revision.
  if (input.currentRevision.trim() === '') {
    return { kind: 'none', detail: 'Argo CD reports no deployed revision (status.sync.revision is empty): nothing to roll back from' };
  }
  // A tag or branch name is not a point in the path's history: guessing which commit runs could undo the wrong ones.
  if (!/^[0-9a-f]{7,64}$/i.test(input.currentRevision.trim())) {
    return { kind: 'none', detail: `Argo CD reports the deployed revision as ${JSON.stringify(input.currentRevision.slice(0, 100))}, not a commit SHA: nothing to roll back from` };
  }
  try {
    const commits = await github.readRepositoryContent(repo, path, branch, settings.maxCommits);
    const candidates = candidateCommits(commits, input.currentRevision, input.excluded);
    const withUndone = (outcome: CandidateOutcome): CandidateOutcome => outcome.kind !== 'found' ? outcome
      : { ...outcome, candidate: { ...outcome.candidate, undone: undoneBy(commits, outcome.candidate.revision) } };
    if (candidates.length === 0) return { kind: 'none', detail: `no commit of ${path} older than ${shortSha(input.currentRevision)} to roll back to` };

    const windowSeconds = durationSeconds(settings.window);
    const measured: string[] = [];
    let prometheusAnswered = false;
    let prometheusDown: string | undefined;
    for (const commit of candidates) {
      if (overBudget()) return { kind: 'timeout', detail: `candidate search exceeded ${formatDuration(settings.searchTimeoutSeconds)} after ${measured.length} commit(s)` };
      const window = deployedWindow(app, commit.sha, windowSeconds, now);
      if (!window) {
        measured.push(`${shortSha(commit.sha)}: never deployed`);
        continue;
      }
      let uptime: number | undefined;
      try {
        uptime = await metrics.uptime(renderUptimeQuery(settings.uptimeQuery, app.ref, window.seconds), window.end);
      } catch (error) {
        if (!(error instanceof IntegrationError)) throw error;
        prometheusDown = error.message;
        break;
      }
      if (uptime === undefined) {
        measured.push(`${shortSha(commit.sha)}: no data`);
        continue;
      }
      prometheusAnswered = true;
      measured.push(`${shortSha(commit.sha)}: ${(uptime * 100).toFixed(2)}%`);
      if (uptime >= settings.minUptime) {
        const ci = await github.getCommitStatus(repo, commit.sha);
        const candidate: Candidate = {
          revision: commit.sha, shortRevision: shortSha(commit.sha), uptime, mode: 'metrics',
          evidence: `${(uptime * 100).toFixed(2)}% Healthy over ${formatDuration(window.seconds)} deployed (minimum ${(settings.minUptime * 100).toFixed(2)}%)`,
          ciState: ci.state === 'none' ? 'unknown' : ci.state,
        };
        return withUndone({ kind: 'found', candidate, currentRevision: input.currentRevision });
      }
    }
    if (prometheusAnswered && !prometheusDown) {
      return { kind: 'none', detail: `no revision reached ${(settings.minUptime * 100).toFixed(2)}% uptime: ${measured.join(', ')}` };
    }
    return withUndone(await ciOnly(github, repo, candidates, input, prometheusDown ?? 'Prometheus has no data for these revisions', overBudget));
  } catch (error) {
    if (error instanceof IntegrationError) return { kind: 'error', code: error.code, message: error.message };
    throw error;
  }
}

async function ciOnly(github: GitHubPort, repo: RepoRef, candidates: CommitInfo[], input: CandidateInput, why: string, overBudget: () => boolean): Promise<CandidateOutcome> {
  for (const commit of candidates) {
    if (overBudget()) return { kind: 'timeout', detail: `candidate search (CI-only) exceeded ${formatDuration(input.settings.searchTimeoutSeconds)}` };
    const ci = await github.getCommitStatus(repo, commit.sha);
    if (ci.state === 'success') {
      return {
        kind: 'found',
        currentRevision: input.currentRevision,
        candidate: {
          revision: commit.sha, shortRevision: shortSha(commit.sha), uptime: null, mode: 'ci-only', ciState: 'success',
          evidence: `CI-only selection (${why}): combined status and check runs of ${shortSha(commit.sha)} are success`,
        },
      };
    }
  }
  return { kind: 'none', detail: `CI-only selection (${why}): no older commit has green CI` };
}

/** The commits newer than the target on the path, newest first: what the rollback undoes. */
function undoneBy(commits: CommitInfo[], target: string): UndoneCommit[] {
  const at = commits.findIndex((c) => c.sha === target);
  return commits.slice(0, Math.max(0, at)).map((c) => ({ ...c, message: (c.message.split('\n')[0] ?? '').slice(0, 200) }));
}
