import { describe, expect, it } from 'vitest';
import { IntegrationError } from '../ports/errors.ts';
import { resolveTargetBranch, targetRevisionOf } from './target-branch.ts';

const repo = { owner: 'acme', repo: 'gitops' };
const repoURL = 'https://github.com/acme/gitops.git';
const SHA = '0123456789abcdef0123456789abcdef01234567';

/** A repository whose default branch is master, with branches master and release/1.x, and what was asked of it. */
function github(options: { missing?: boolean; down?: boolean } = {}) {
  const asked: string[] = [];
  return {
    asked,
    async defaultBranch() {
      asked.push('defaultBranch');
      if (options.down) throw new IntegrationError('defaultBranch', 'UNAVAILABLE', 'GitHub is down');
      if (options.missing) throw new IntegrationError('defaultBranch', 'NOT_FOUND', 'HTTP 404');
      return 'master';
    },
    async isBranch(_repo: unknown, name: string) {
      asked.push(`isBranch ${name}`);
      return !options.missing && ['master', 'release/1.x'].includes(name);
    },
  };
}

describe('the branch an app deploys, as Argo CD resolves targetRevision', () => {
  it('is the repository\'s default branch for HEAD or no targetRevision, not main', async () => {
    for (const targetRevision of ['HEAD', '', undefined]) {
      expect(await resolveTargetBranch(github(), repo, { repoURL, ...(targetRevision !== undefined ? { targetRevision } : {}) })).toEqual({ kind: 'branch', branch: 'master' });
    }
  });

  it('is the branch a targetRevision names, refs/heads/ or not, once GitHub says it is one', async () => {
    const gh = github();
    expect(await resolveTargetBranch(gh, repo, { repoURL, targetRevision: 'release/1.x' })).toEqual({ kind: 'branch', branch: 'release/1.x' });
    expect(await resolveTargetBranch(gh, repo, { repoURL, targetRevision: 'refs/heads/release/1.x' })).toEqual({ kind: 'branch', branch: 'release/1.x' });
    expect(gh.asked).toEqual(['isBranch release/1.x', 'isBranch release/1.x']);
  });

  it('refuses a tag, naming the field and the value', async () => {
    expect(await resolveTargetBranch(github(), repo, { repoURL, targetRevision: 'v1.1.0' })).toEqual({
      kind: 'refused', reason: 'TargetNotBranch',
      message: 'spec.source.targetRevision v1.1.0 is a tag or a commit of acme/gitops, not a branch: Argo CD deploys that fixed commit, and a rollback pull request can only target a branch (track a branch, or HEAD for the default one)',
    });
  });

  it('refuses a full commit SHA without asking GitHub (Argo CD never resolves one as a ref)', async () => {
    const gh = github();
    const target = await resolveTargetBranch(gh, repo, { repoURL, targetRevision: SHA });
    expect(target).toMatchObject({ kind: 'refused', reason: 'TargetNotBranch', message: expect.stringMatching(new RegExp(`^spec\\.source\\.targetRevision ${SHA} is a commit SHA of acme/gitops, not a branch`)) });
    expect(gh.asked).toEqual([]);
  });

  it('says a missing repository is missing, rather than that its branch is not one', async () => {
    for (const targetRevision of ['main', 'HEAD']) {
      expect(await resolveTargetBranch(github({ missing: true }), repo, { repoURL, targetRevision })).toEqual({
        kind: 'refused', reason: 'RepositoryNotFound',
        message: `spec.source.repoURL ${repoURL}: repository acme/gitops not found on GitHub (or not readable with the operator's credentials)`,
      });
    }
  });

  it('lets an outage through to be retried: GitHub down is no refusal', async () => {
    await expect(resolveTargetBranch(github({ down: true }), repo, { repoURL, targetRevision: 'HEAD' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('reads targetRevision as Argo CD does: empty is HEAD', () => {
    expect([undefined, '', ' ', 'HEAD', 'main', 'refs/heads/x'].map((t) => targetRevisionOf(t === undefined ? {} : { targetRevision: t }))).toEqual(['HEAD', 'HEAD', 'HEAD', 'HEAD', 'main', 'x']);
  });
});
