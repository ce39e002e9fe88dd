// A repository (its default branch is what Argo CD's HEAD resolves to), a
// branch and what protects it: the branch (with its protection summary, which
// read access sees), classic branch protection (its required status checks), and
// the rules that apply to a branch from repository rulesets (the
// required_status_checks rule). Both sources are what setRequiredChecks sets, and
// both count in mergeability, as on GitHub.
import { ApiError } from '../api-error.ts';
import type { RequestContext, Route } from '../router.ts';
import type { SimRepo } from '../world.ts';

const repoOf = (ctx: RequestContext): SimRepo => ctx.world.repo(ctx.params.owner!, ctx.params.repo!);

async function branchHead(repo: SimRepo, branch: string): Promise<string> {
  const sha = await repo.git.resolveCommit(`refs/heads/${branch}`);
  if (!sha) throw new ApiError(404, 'Branch not found');
  return sha;
}

function requiredStatusChecks(ctx: RequestContext, repo: SimRepo, branch: string, contexts: string[]) {
  const url = `${ctx.views.api}/repos/${repo.owner}/${repo.name}/branches/${encodeURIComponent(branch)}/protection/required_status_checks`;
  return { url, enforcement_level: 'non_admins', contexts, checks: contexts.map((context) => ({ context, app_id: null })), contexts_url: `${url}/contexts`, strict: false };
}

export const branchRoutes: Route[] = [
  {
    method: 'GET', template: '/repos/{owner}/{repo}', auth: 'token',
    async handle(ctx) {
      return { status: 200, body: ctx.views.fullRepository(repoOf(ctx)) };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/branches/{branch}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const branch = ctx.params.branch!;
      const sha = await branchHead(repo, branch);
      const commit = await repo.git.commit(sha);
      const contexts = repo.requiredChecks.get(branch);
      const self = `${ctx.views.api}/repos/${repo.owner}/${repo.name}/branches/${encodeURIComponent(branch)}`;
      return {
        status: 200,
        body: {
          name: branch, commit: ctx.views.commit(repo, commit!),
          _links: { html: ctx.views.html(`${repo.owner}/${repo.name}/tree/${branch}`), self },
          protected: contexts !== undefined,
          protection: contexts ? { enabled: true, required_status_checks: requiredStatusChecks(ctx, repo, branch, contexts) } : { enabled: false },
          protection_url: `${self}/protection`,
        },
      };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/branches/{branch}/protection', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const branch = ctx.params.branch!;
      await branchHead(repo, branch);
      const contexts = repo.requiredChecks.get(branch);
      if (!contexts) throw new ApiError(404, 'Branch not protected');
      const url = `${ctx.views.api}/repos/${repo.owner}/${repo.name}/branches/${encodeURIComponent(branch)}/protection`;
      return { status: 200, body: { url, enabled: true, required_status_checks: requiredStatusChecks(ctx, repo, branch, contexts) } };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/rules/branches/{branch}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const contexts = repo.rulesetChecks.get(ctx.params.branch!);
      // Rules apply to a branch name whether or not the branch exists yet: no 404 for an unknown branch.
      if (!contexts) return { status: 200, body: [] };
      return {
        status: 200,
        body: [{
          type: 'required_status_checks',
          parameters: { required_status_checks: contexts.map((context) => ({ context })), strict_required_status_checks_policy: false },
          ruleset_source_type: 'Repository', ruleset_source: `${repo.owner}/${repo.name}`, ruleset_id: 1,
        }],
      };
    },
  },
];

