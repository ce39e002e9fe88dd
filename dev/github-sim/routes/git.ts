// The Git Data and commits endpoints, straight onto the bare repository: commit
// history filtered by path, refs, trees (read, and written through an index),
// and commits. Everything here is what git itself computes.
import { ApiError, notFound, unprocessable } from '../api-error.ts';
import { ZERO_SHA, type Signature, type TreeEdit } from '../git.ts';
import type { RequestContext, Route } from '../router.ts';
import { timestamp, type SimRepo } from '../world.ts';
import { body, oneOf, optionalString, requiredString, type Body } from './common.ts';

const repoOf = (ctx: RequestContext): SimRepo => ctx.world.repo(ctx.params.owner!, ctx.params.repo!);

const MODES = ['100644', '100755', '040000', '160000', '120000'] as const;
const TYPES = ['blob', 'tree', 'commit'] as const;

function signatureFrom(value: unknown, fallback: Signature): Signature {
  if (value === undefined || value === null) return fallback;
  const v = value as Body;
  if (typeof v.name !== 'string' || typeof v.email !== 'string') throw unprocessable('Invalid request.', [{ resource: 'Commit', field: 'author', code: 'invalid' }]);
  return { name: v.name, email: v.email, date: typeof v.date === 'string' ? timestamp(new Date(v.date)) : fallback.date };
}

export const gitRoutes: Route[] = [
  {
    method: 'GET', template: '/repos/{owner}/{repo}/commits', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const rev = ctx.query.get('sha') ?? repo.defaultBranch;
      const tip = await repo.git.resolveCommit(rev);
      if (!tip) {
        if (!(await repo.git.resolveCommit(repo.defaultBranch))) throw new ApiError(409, 'Git Repository is empty.');
        throw new ApiError(404, `No commit found for SHA: ${rev}`);
      }
      const perPage = Math.min(Math.max(Number(ctx.query.get('per_page') ?? 30) || 30, 1), 100);
      const page = Math.max(Number(ctx.query.get('page') ?? 1) || 1, 1);
      // One extra commit tells whether a next page exists (GitHub gives only rel="next" here).
      const commits = await repo.git.log(tip, { path: ctx.query.get('path') ?? undefined, skip: (page - 1) * perPage, max: perPage + 1 });
      const headers: Record<string, string> = {};
      if (commits.length > perPage) {
        const q = new URLSearchParams(ctx.query);
        q.set('page', String(page + 1));
        q.set('per_page', String(perPage));
        headers.link = `<${ctx.views.api}${ctx.path}?${q}>; rel="next"`;
      }
      return { status: 200, body: commits.slice(0, perPage).map((c) => ctx.views.commit(repo, c)), headers };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/git/ref/{ref}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const ref = `refs/${ctx.params.ref}`;
      const sha = (await repo.git.refExists(ref)) ? await repo.git.resolveCommit(ref) : undefined;
      if (!sha) throw notFound();
      return { status: 200, body: ctx.views.gitRef(repo, ref, sha) };
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/git/refs', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const b = body(ctx);
      const ref = requiredString(b, 'ref', 'Reference');
      const sha = requiredString(b, 'sha', 'Reference');
      if (!/^refs\/[^/]+\/.+/.test(ref)) throw unprocessable('Reference name is invalid');
      return ctx.world.locked(repo, async () => {
        if (await repo.git.objectType(sha) !== 'commit') throw unprocessable('Object does not exist');
        if (await repo.git.refExists(ref)) throw unprocessable('Reference already exists');
        await repo.git.updateRef(ref, sha, ZERO_SHA);
        return { status: 201, body: ctx.views.gitRef(repo, ref, sha) };
      });
    },
  },
  {
    method: 'PATCH', template: '/repos/{owner}/{repo}/git/refs/{ref}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const b = body(ctx);
      const sha = requiredString(b, 'sha', 'Reference');
      const ref = `refs/${ctx.params.ref}`;
      return ctx.world.locked(repo, async () => {
        const current = (await repo.git.refExists(ref)) ? await repo.git.resolveCommit(ref) : undefined;
        if (!current) throw unprocessable('Reference does not exist');
        if (await repo.git.objectType(sha) !== 'commit') throw unprocessable('Object does not exist');
        if (b.force !== true && !(await repo.git.isAncestor(current, sha))) throw unprocessable('Update is not a fast forward');
        await repo.git.updateRef(ref, sha, current);
        return { status: 200, body: ctx.views.gitRef(repo, ref, sha) };
      });
    },
  },
  {
    // GitHub deletes unconditionally (no expected SHA); a missing ref is a 422 "Reference does not exist".
    method: 'DELETE', template: '/repos/{owner}/{repo}/git/refs/{ref}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const ref = `refs/${ctx.params.ref}`;
      return ctx.world.locked(repo, async () => {
        const current = (await repo.git.refExists(ref)) ? await repo.git.resolveCommit(ref) : undefined;
        if (!current) throw unprocessable('Reference does not exist');
        await repo.git.deleteRef(ref, current);
        return { status: 204 };
      });
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/git/trees/{tree_sha}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const tree = await repo.git.resolveTree(ctx.params.tree_sha!);
      if (!tree) throw notFound();
      // GitHub: any value of `recursive` asks for the whole tree.
      const entries = await repo.git.lsTree(tree, ctx.query.has('recursive'));
      const limit = ctx.world.treeEntryLimit;
      return { status: 200, body: ctx.views.tree(repo, tree, entries.slice(0, limit), entries.length > limit) };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/git/blobs/{file_sha}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const sha = ctx.params.file_sha!;
      // GitHub checks the form before looking: a name that is not a full SHA is a 422, not a 404.
      if (!/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(sha)) throw unprocessable('The sha parameter must be exactly 40 characters and contain only [0-9a-f].');
      const content = await repo.git.blob(sha);
      if (!content) throw notFound();
      return { status: 200, body: ctx.views.blob(repo, sha, content) };
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/git/trees', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const b = body(ctx);
      if (!Array.isArray(b.tree)) throw unprocessable('Invalid tree info', [{ resource: 'Tree', field: 'tree', code: 'invalid' }]);
      const baseTree = optionalString(b, 'base_tree', 'Tree');
      const base = baseTree === undefined ? undefined : await repo.git.resolveTree(baseTree);
      if (baseTree !== undefined && !base) throw unprocessable('base_tree is not a valid tree');
      const edits: TreeEdit[] = [];
      for (const raw of b.tree as Body[]) {
        const path = requiredString(raw, 'path', 'Tree');
        const mode = oneOf(optionalString(raw, 'mode', 'Tree'), MODES, 'mode');
        const type = oneOf(optionalString(raw, 'type', 'Tree'), TYPES, 'type');
        const content = optionalString(raw, 'content', 'Tree');
        let sha: string | null;
        if (content !== undefined) sha = await repo.git.hashObject(content);
        else if (raw.sha === null) sha = null;
        else {
          sha = requiredString(raw, 'sha', 'Tree');
          if (type !== 'commit' && await repo.git.objectType(sha) !== type) throw unprocessable(`tree.sha ${sha} is not a valid ${type}`);
        }
        edits.push({ path, mode, type, sha });
      }
      const tree = await repo.git.writeTree(base, edits);
      return { status: 201, body: ctx.views.tree(repo, tree, await repo.git.lsTree(tree, false), false) };
    },
  },
  {
    method: 'GET', template: '/repos/{owner}/{repo}/git/commits/{commit_sha}', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const commit = await repo.git.commit(ctx.params.commit_sha!);
      if (!commit) throw notFound();
      return { status: 200, body: ctx.views.gitCommit(repo, commit) };
    },
  },
  {
    method: 'POST', template: '/repos/{owner}/{repo}/git/commits', auth: 'token',
    async handle(ctx) {
      const repo = repoOf(ctx);
      const b = body(ctx);
      const message = requiredString(b, 'message', 'Commit');
      const tree = requiredString(b, 'tree', 'Commit');
      const parents = Array.isArray(b.parents) ? b.parents.map(String) : [];
      if (await repo.git.objectType(tree) !== 'tree') throw unprocessable('Tree SHA does not exist');
      for (const p of parents) if (await repo.git.objectType(p) !== 'commit') throw unprocessable('Parent SHA does not exist or is not a commit object');
      const author = signatureFrom(b.author, ctx.world.signature(ctx.actor));
      const committer = signatureFrom(b.committer, author);
      const sha = await repo.git.commitTree(tree, parents, message, author, committer);
      return { status: 201, body: ctx.views.gitCommit(repo, (await repo.git.commit(sha))!) };
    },
  },
];
