import { describe, expect, it } from 'vitest';
import { ciStatus, normalisePath, pullRequestInfo, restoreEntries, under } from './github.ts';

describe('restoreEntries', () => {
  const blob = (path: string, sha: string, mode = '100644') => ({ path, mode, type: 'blob', sha });
  it('deletes files added since the target, restores changed ones, keeps the rest', () => {
    const current = [blob('app/a.yaml', 'a2'), blob('app/b.yaml', 'b1'), blob('app/new.yaml', 'n1'), { path: 'app/sub', mode: '040000', type: 'tree', sha: 't' }];
    const target = [blob('app/a.yaml', 'a1'), blob('app/b.yaml', 'b1'), blob('app/gone.yaml', 'g1'), blob('app/b.sh', 'b1', '100755')];
    expect(restoreEntries(current, target)).toEqual([
      { path: 'app/a.yaml', mode: '100644', type: 'blob', sha: 'a1' },
      { path: 'app/b.sh', mode: '100755', type: 'blob', sha: 'b1' },
      { path: 'app/gone.yaml', mode: '100644', type: 'blob', sha: 'g1' },
      { path: 'app/new.yaml', mode: '100644', type: 'blob', sha: null },
    ]);
  });
  it('restores a mode change', () => {
    expect(restoreEntries([blob('x.sh', 's', '100755')], [blob('x.sh', 's')])).toEqual([{ path: 'x.sh', mode: '100644', type: 'blob', sha: 's' }]);
  });
  it('is empty when the path already holds the target\'s files (nothing to roll back), whatever the order or the subtrees', () => {
    const files = [blob('app/a.yaml', 'a1'), blob('app/sub/b.yaml', 'b1')];
    expect(restoreEntries([...files].reverse(), [...files, { path: 'app/sub', mode: '040000', type: 'tree', sha: 't1' }])).toEqual([]);
    expect(restoreEntries([], [])).toEqual([]);
  });
});

describe('the app path as a tree prefix', () => {
  it('normalises ./, trailing slashes and the root', () => {
    expect(['apps/web', './apps/web/', '/apps/web//'].map(normalisePath)).toEqual(['apps/web', 'apps/web', 'apps/web']);
    expect(['.', './', ''].map(normalisePath)).toEqual(['', '', '']);
  });
  it('holds the files under it, not a sibling whose name starts the same', () => {
    expect(under('apps/web', 'apps/web/deployment.yaml')).toBe(true);
    expect(under('apps/web', 'apps/web')).toBe(true);
    expect(under('apps/web', 'apps/web-canary/deployment.yaml')).toBe(false);
    expect(under('', 'README.md')).toBe(true);
  });
});

describe('ciStatus', () => {
  const run = (name: string, status: string, conclusion: string | null) => ({ name, status, conclusion });
  it('is none without statuses or check runs (GitHub says pending there)', () => {
    expect(ciStatus([], [])).toEqual({ state: 'none', runs: [] });
  });
  it('combines statuses and check runs: failure, then error, then pending, else success', () => {
    expect(ciStatus([{ context: 'ci', state: 'success' }], [run('unit', 'completed', 'neutral')]).state).toBe('success');
    expect(ciStatus([{ context: 'ci', state: 'success' }], [run('unit', 'in_progress', null)]).state).toBe('pending');
    expect(ciStatus([{ context: 'ci', state: 'error' }], [run('unit', 'queued', null)]).state).toBe('error');
    expect(ciStatus([{ context: 'ci', state: 'error' }], [run('unit', 'completed', 'timed_out')]).state).toBe('failure');
    expect(ciStatus([], [run('unit', 'completed', 'skipped')]).runs).toEqual([{ name: 'unit', state: 'success' }]);
  });
});

describe('pullRequestInfo', () => {
  const base = { number: 7, html_url: 'https://github.example/acme/gitops/pull/7', title: 't', head: { ref: 'b', sha: 'h' }, base: { ref: 'main' } };
  it('reads a listed PR as merged from merged_at, without mergeability', () => {
    expect(pullRequestInfo({ ...base, state: 'closed', merged_at: '2024-01-01T00:00:00Z', merge_commit_sha: 'm' })).toEqual({
      number: 7, url: base.html_url, branch: 'b', base: 'main', title: 't', author: '', state: 'closed', merged: true, mergeCommitSha: 'm', headSha: 'h', mergeable: null, mergeableState: 'unknown',
    });
  });
  it('ignores the test-merge sha of an open PR', () => {
    const info = pullRequestInfo({ ...base, state: 'open', merged_at: null, merge_commit_sha: 'test-merge', merged: false, merged_by: null, mergeable: true, mergeable_state: 'clean' });
    expect(info).toMatchObject({ merged: false, mergeable: true, mergeableState: 'clean' });
    expect(info.mergeCommitSha).toBeUndefined();
  });
});
