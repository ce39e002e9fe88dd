import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pathChanged, readManifests, repoDirOf, resolveRevision } from './git.ts';

let root: string;
let bare: string;
const commits: string[] = [];

/** Commits `files` on main through a working clone and pushes to the bare repository; returns the SHA. */
function commit(work: string, files: Record<string, string>, message: string): string {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(work, path)), { recursive: true });
    writeFileSync(join(work, path), content);
  }
  const git = (...args: string[]) => execFileSync('git', ['-C', work, ...args], { encoding: 'utf8' }).trim();
  git('add', '-A');
  git('-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', message);
  git('push', '-q', 'origin', 'HEAD:main');
  return git('rev-parse', 'HEAD');
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'argocd-sim-git-'));
  bare = join(root, 'acme', 'gitops.git');
  execFileSync('git', ['init', '-q', '--bare', '--initial-branch=main', bare]);
  const work = join(root, 'work');
  execFileSync('git', ['clone', '-q', bare, work], { stdio: 'ignore' });
  commits.push(commit(work, { 'apps/a/deploy.yaml': 'kind: Deployment\n', 'apps/a/README.md': '# a\n' }, 'a'));
  commits.push(commit(work, { 'apps/ab/deploy.yaml': 'kind: Deployment\n' }, 'ab'));
  commits.push(commit(work, { 'apps/a/deploy.yaml': 'kind: Deployment # v2\n' }, 'a v2'));
  execFileSync('git', ['--git-dir', bare, 'tag', 'v1', commits[0]!]);
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('the GitOps repository as Argo CD reads it', () => {
  it('maps a repoURL on any host to the bare repository, if there is one', () => {
    expect(repoDirOf(root, 'https://github.com/acme/gitops.git')).toBe(bare);
    expect(repoDirOf(root, 'http://127.0.0.1:3000/acme/gitops')).toBe(bare);
    expect(repoDirOf(root, 'https://github.com/acme/other.git')).toBeUndefined();
    expect(repoDirOf(root, 'not a url')).toBeUndefined();
  });

  it('resolves HEAD, a branch, a tag and a SHA', async () => {
    expect(await resolveRevision(bare, 'HEAD')).toBe(commits[2]);
    expect(await resolveRevision(bare, 'main')).toBe(commits[2]);
    expect(await resolveRevision(bare, 'v1')).toBe(commits[0]);
    expect(await resolveRevision(bare, commits[1]!)).toBe(commits[1]);
    expect(await resolveRevision(bare, 'no-such-branch')).toBeUndefined();
  });

  it('tells whether a commit changed the app\'s path (and not a sibling with the same prefix)', async () => {
    expect(await pathChanged(bare, commits[0]!, commits[1]!, 'apps/a')).toBe(false);
    expect(await pathChanged(bare, commits[0]!, commits[1]!, 'apps/ab')).toBe(true);
    expect(await pathChanged(bare, commits[1]!, commits[2]!, './apps/a/')).toBe(true);
    expect(await pathChanged(bare, 'f'.repeat(40), commits[2]!, 'apps/a')).toBe(true);
  });

  it('reads the manifests under the path at a revision', async () => {
    expect(await readManifests(bare, commits[0]!, 'apps/a')).toEqual([{ file: 'apps/a/deploy.yaml', content: 'kind: Deployment\n' }]);
    expect(await readManifests(bare, commits[2]!, 'apps/a')).toEqual([{ file: 'apps/a/deploy.yaml', content: 'kind: Deployment # v2\n' }]);
    expect((await readManifests(bare, commits[2]!, '.')).map((f) => f.file)).toEqual(['apps/a/deploy.yaml', 'apps/ab/deploy.yaml']);
  });
});
