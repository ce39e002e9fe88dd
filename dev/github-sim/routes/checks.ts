// CI results on commits: commit statuses (set by tests and the demo, combined
// the way GitHub combines them) and check runs (created, updated, listed per ref).
import { ApiError, notFound, unprocessable } from '../api-error.ts';
import type { RequestContext, Route } from '../router.ts';
import { timestamp, type SimCheckRun, type SimRepo, type SimStatus } from '../world.ts';
import { body, oneOf, optionalString, requiredString, type Body } from './common.ts';

const repoOf = (ctx: RequestContext): SimRepo => ctx.world.repo(ctx.params.owner!, ctx.params.repo!);

const STATUS_STATES = ['error', 'failure', 'pending', 'success'] as const;
const RUN_STATUSES = ['queued', 'in_progress', 'completed'] as const;
const CONCLUSIONS = ['success', 'failure', 'neutral', 'cancelled', 'skipped', 'timed_out', 'action_required'] as const;

async function commitOf(repo: SimRepo, ref: string): Promise<string> {
  const sha = await repo.git.resolveCommit(ref);
  if (!sha) throw new ApiError(404, `No commit found for SHA: ${ref}`);
  return sha;
}

/** Applies the fields of a create/update body to a check run. */
function applyRun(run: SimCheckRun, b: Body): void {
  const name = optionalString(b, 'name', 'CheckRun');
  if (name !== undefined) run.name = name;
  const conclusion = optionalString(b, 'conclusion', 'CheckRun');
  const status = optionalString(b, 'status', 'CheckRun');
  if (status !== undefined) run.status = oneOf(status, RUN_STATUSES, 'status');
  if (conclusion !== undefined) {
    run.conclusion = oneOf(conclusion, CONCLUSIONS, 'conclusion');
    // GitHub: providing a conclusion completes the run.
    run.status = 'completed';
  }
  if (run.status === 'completed' && run.conclusion === null) throw unprocessable('Invalid request.', [{ resource: 'CheckRun', field: 'conclusion', code: 'missing_field' }]);
  if (run.status !== 'queued') run.startedAt ??= timestamp();
  run.completedAt = run.status === 'completed' ? optionalString(b, 'completed_at', 'CheckRun') ?? run.completedAt ?? timestamp() : null;
  const detailsUrl = optionalString(b, 'details_url', 'CheckRun');
  if (detailsUrl !== undefined) run.detailsUrl = detailsUrl;
  const externalId = optionalString(b, 'external_id', 'CheckRun');
  if (externalId !== undefined) run.externalId = externalId;
  if (b.output && typeof b.output === 'object') {
    const o = b.output as Body;
    run.output = { title: typeof o.title === 'string' ? o.title : null, summary: typeof o.summary === 'string' ? o.summary : null, text: typeof o.text === 'string' ? o.text : null };
  }
}

export const checkRoutes: Route[] = [
  {
    method: 'POST', template: '/repos/{owner}/{repo}/statuses/{sha}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const sha = ctx.params.sha!;
      if (await repo.git.objectType(sha) !== 'commit') throw unprocessable(`No commit found for SHA: ${sha}`);
      const b = body(ctx);
      const status = ctx.world.addStatus(repo, (await repo.git.resolveCommit(sha))!, {
        state: oneOf(requiredString(b, 'state', 'Status'), STATUS_STATES, 'state') as SimStatus['state'],
        context: optionalString(b, 'context', 'Status') ?? 'default',
        description: optionalString(b, 'description', 'Status') ?? null,
        targetUrl: optionalString(b, 'target_url', 'Status') ?? null,
        creator: ctx.actor,
      });
      return { status: 201, body: ctx.views.status(repo, status) };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/commits/{ref}/status', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const sha = await commitOf(repo, ctx.params.ref!);
      return { status: 200, body: ctx.views.combinedStatus(repo, sha, ctx.world.latestStatuses(repo, sha)) };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/commits/{ref}/check-runs', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const sha = await commitOf(repo, ctx.params.ref!);
      const filter = oneOf(ctx.query.get('filter') ?? undefined, ['latest', 'all'] as const, 'filter', 'latest');
      let runs = filter === 'latest' ? ctx.world.latestCheckRuns(repo, sha) : ctx.world.checkRunsOf(repo, sha);
      const name = ctx.query.get('check_name');
      const status = ctx.query.get('status');
      runs = runs.filter((r) => (!name || r.name === name) && (!status || r.status === status));
      const perPage = Math.min(Math.max(Number(ctx.query.get('per_page') ?? 30) || 30, 1), 100);
      const page = Math.max(Number(ctx.query.get('page') ?? 1) || 1, 1);
      const shown = runs.slice((page - 1) * perPage, page * perPage);
      return { status: 200, body: { total_count: runs.length, check_runs: shown.map((r) => ctx.views.checkRun(repo, r)) } };
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/check-runs', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const b = body(ctx);
      const headSha = requiredString(b, 'head_sha', 'CheckRun');
      const sha = await repo.git.resolveCommit(headSha);
      if (!sha) throw unprocessable('No commit found for SHA: ' + headSha);
      const appId = ctx.principal.kind === 'installation' ? ctx.world.installations.get(ctx.principal.installationId)?.appId ?? null : null;
      const run: SimCheckRun & { repoId: number } = {
        id: ctx.world.id(), repoId: repo.id, sha, name: requiredString(b, 'name', 'CheckRun'), status: 'queued', conclusion: null,
        startedAt: optionalString(b, 'started_at', 'CheckRun') ?? null, completedAt: null, externalId: null, detailsUrl: null,
        output: { title: null, summary: null, text: null }, appId,
      };
      applyRun(run, b);
      ctx.world.checkRuns.set(run.id, run);
      return { status: 201, body: ctx.views.checkRun(repo, run) };
    },
  },
  {
    method: 'PATCH', template: '/repos/{owner}/{repo}/check-runs/{check_run_id}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const run = ctx.world.checkRuns.get(Number(ctx.params.check_run_id));
      if (!run || run.repoId !== repo.id) throw notFound();
      applyRun(run, body(ctx));
      return { status: 200, body: ctx.views.checkRun(repo, run) };
    },
  },
];
