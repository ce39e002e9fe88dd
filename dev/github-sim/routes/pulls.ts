// Pull requests and their conversation: list (filtered by head and base), open,
// read (with mergeability from a real trial merge), update/close, merge with a
// real commit, changed files, comments and labels.
import { ApiError, unprocessable } from '../api-error.ts';
import type { RequestContext, Route } from '../router.ts';
import { timestamp, type SimPull, type SimRepo } from '../world.ts';
import { body, oneOf, optionalString, paginate, requiredString } from './common.ts';

const repoOf = (ctx: RequestContext): SimRepo => ctx.world.repo(ctx.params.owner!, ctx.params.repo!);
const pullOf = (ctx: RequestContext, repo: SimRepo): SimPull => ctx.world.pull(repo, Number(ctx.params.pull_number ?? ctx.params.issue_number));

/**
 * The full pull-request object of GET /pulls/{n}. Right after opening, GitHub has
 * not computed mergeability yet and says null / "unknown"; so does the simulator.
 */
async function detailed(ctx: RequestContext, repo: SimRepo, pull: SimPull, justOpened = false) {
  const mergeability = justOpened ? { mergeable: null, state: 'unknown' } : await ctx.world.mergeability(repo, pull);
  const files = await ctx.world.changedFiles(repo, pull);
  const from = pull.merged ? (await repo.git.commit(pull.mergeCommitSha!))?.parents[0] ?? pull.baseSha : pull.baseSha;
  const commits = await repo.git.countCommits(pull.headSha, from);
  return ctx.views.pull(repo, pull, { mergeability, files, commits });
}

export const pullRoutes: Route[] = [
  {
    method: 'GET', template: '/repos/{owner}/{repo}/pulls', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const state = oneOf(ctx.query.get('state') ?? undefined, ['open', 'closed', 'all'] as const, 'state', 'open');
      const head = ctx.query.get('head');
      const base = ctx.query.get('base');
      const [headOwner, headBranch] = head?.includes(':') ? head.split(/:(.*)/s) as [string, string] : [repo.owner, head];
      const sort = ctx.query.get('sort') ?? 'created';
      const direction = ctx.query.get('direction') ?? (sort === 'created' ? 'desc' : 'asc');
      let pulls = ctx.world.pullsOf(repo).filter((p) =>
        (state === 'all' || p.state === state) && (!base || p.base === base)
        && (!head || (headOwner!.toLowerCase() === repo.owner.toLowerCase() && p.head === headBranch)));
      for (const p of pulls) await ctx.world.refresh(repo, p);
      pulls = [...pulls].sort((a, b) => (sort === 'updated' ? a.updatedAt.localeCompare(b.updatedAt) : a.number - b.number));
      if (direction === 'desc') pulls.reverse();
      return paginate(ctx, pulls.map((p) => ctx.views.pull(repo, p)));
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/pulls', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const b = body(ctx);
      const head = requiredString(b, 'head', 'PullRequest');
      if (head.includes(':') && head.split(':')[0]!.toLowerCase() !== repo.owner.toLowerCase()) {
        throw unprocessable('Validation Failed', [{ resource: 'PullRequest', field: 'head', code: 'invalid' }]);
      }
      const pull = await ctx.world.openPull(repo, {
        title: requiredString(b, 'title', 'PullRequest'), head, base: requiredString(b, 'base', 'PullRequest'),
        body: optionalString(b, 'body', 'PullRequest') ?? null, user: ctx.actor,
      });
      return { status: 201, body: await detailed(ctx, repo, pull, true) };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/pulls/{pull_number}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      return { status: 200, body: await detailed(ctx, repo, pullOf(ctx, repo)) };
    },
  },
  {
    method: 'PATCH', template: '/repos/{owner}/{repo}/pulls/{pull_number}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const pull = pullOf(ctx, repo);
      const b = body(ctx);
      await ctx.world.locked(repo, async () => {
        await ctx.world.refresh(repo, pull);
        const title = optionalString(b, 'title', 'PullRequest');
        const text = optionalString(b, 'body', 'PullRequest');
        const state = optionalString(b, 'state', 'PullRequest');
        const base = optionalString(b, 'base', 'PullRequest');
        // GitHub retargets an open PR to another existing branch; its head and mergeability follow the new base.
        if (base !== undefined && base !== pull.base) {
          if (pull.state !== 'open') throw unprocessable('Validation Failed', [{ resource: 'PullRequest', code: 'custom', field: 'base', message: 'Cannot change the base branch of a closed pull request.' }]);
          if (!(await repo.git.resolveCommit(`refs/heads/${base}`))) throw unprocessable('Validation Failed', [{ resource: 'PullRequest', code: 'invalid', field: 'base' }]);
          pull.base = base;
          pull.baseSha = (await repo.git.resolveCommit(`refs/heads/${base}`))!;
        }
        if (title !== undefined) pull.title = title;
        if (text !== undefined) pull.body = text;
        if (state !== undefined && state !== pull.state) {
          if (pull.merged) throw unprocessable('Validation Failed', [{ resource: 'PullRequest', code: 'custom', field: 'state', message: 'state cannot be changed. The pull request has already been merged.' }]);
          pull.state = oneOf(state, ['open', 'closed'] as const, 'state');
          pull.closedAt = pull.state === 'closed' ? timestamp() : null;
        }
        pull.updatedAt = timestamp();
      });
      return { status: 200, body: await detailed(ctx, repo, pull) };
    },
  },
  {
    method: 'PUT', template: '/repos/{owner}/{repo}/pulls/{pull_number}/merge', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const pull = pullOf(ctx, repo);
      const b = body(ctx);
      const method = oneOf(optionalString(b, 'merge_method'), ['merge', 'squash', 'rebase'] as const, 'merge_method', 'merge');
      const sha = await ctx.world.merge(repo, pull, {
        method, by: ctx.actor,
        ...(typeof b.sha === 'string' ? { sha: b.sha } : {}),
        ...(typeof b.commit_title === 'string' ? { title: b.commit_title } : {}),
        ...(typeof b.commit_message === 'string' ? { message: b.commit_message } : {}),
      });
      return { status: 200, body: { sha, merged: true, message: 'Pull Request successfully merged' } };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/pulls/{pull_number}/files', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const pull = pullOf(ctx, repo);
      const files = await ctx.world.changedFiles(repo, pull);
      return paginate(ctx, files.map((f) => ctx.views.diffEntry(repo, pull, f)));
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/issues/{issue_number}/comments', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const pull = pullOf(ctx, repo);
      return paginate(ctx, ctx.world.commentsOf(repo, pull.number).map((c) => ctx.views.comment(repo, pull.number, c)));
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/issues/{issue_number}/comments', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const pull = pullOf(ctx, repo);
      const text = requiredString(body(ctx), 'body', 'IssueComment');
      const now = timestamp();
      const comment = { id: ctx.world.id(), body: text, user: ctx.actor, createdAt: now, updatedAt: now };
      ctx.world.commentsOf(repo, pull.number).push(comment);
      return { status: 201, body: ctx.views.comment(repo, pull.number, comment) };
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/issues/{issue_number}/labels', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const pull = pullOf(ctx, repo);
      // GitHub takes {labels: [...]}, a bare array, or label objects with a name.
      const raw = Array.isArray(ctx.body) ? ctx.body : body(ctx).labels;
      if (!Array.isArray(raw)) throw new ApiError(422, 'Invalid request.', { errors: [{ resource: 'Label', field: 'labels', code: 'invalid' }] });
      const names = raw.map((l: unknown) => (typeof l === 'string' ? l : String((l as { name?: unknown }).name ?? '')));
      for (const name of names) {
        const label = ctx.world.label(repo, name);
        if (!pull.labels.some((l) => l.toLowerCase() === label.name.toLowerCase())) pull.labels.push(label.name);
      }
      return { status: 200, body: pull.labels.map((name) => ctx.views.label(repo, ctx.world.label(repo, name))) };
    },
  },
];
