// The fake's answer to "is there anything to roll back?" follows what happened to the path.
import { describe, expect, it } from 'vitest';
import type { KV } from '../../src/store/kv.ts';
import { MemoryKV } from '../../src/store/memory.ts';
import { FakeWorld, fakeSha, scenarioApp } from './world.ts';

const repo = { owner: 'acme', repo: 'gitops' };

describe('FakeWorld.previewRollback', () => {
  it('has something to roll back until the path is restored to the target, by a human or a merged rollback', async () => {
    const world = new FakeWorld(new MemoryKV());
    const { app, commits, good, bad } = scenarioApp('web', 'staging');
    await world.addApp(app);
    await world.setCommits('apps/web', commits);
    const query = { paths: ['apps/web'], branch: 'main', targetSha: good };
    expect(await world.previewRollback(repo, query)).toMatchObject({ changed: 1, headSha: bad });

    // A human reverts web to good: nothing left to roll back to good, still something to roll back to another
    await world.restorePath('apps/web', good);
    expect(await world.previewRollback(repo, query)).toMatchObject({ changed: 0, headSha: fakeSha(`revert:apps/web:${good}`) });
    expect((await world.previewRollback(repo, { ...query, targetSha: commits[3]!.sha })).changed).toBe(1);

    // A rollback to the oldest revision merged: the path now holds that tree, measured on the merge commit
    const pr = await world.createPullRequest(repo, { branch: 'b', base: 'main', paths: ['apps/web'], targetSha: commits[3]!.sha, title: 't', body: 'b', labels: [] });
    await world.mergePullRequest(repo, pr.number, { sha: pr.headSha });
    expect(await world.previewRollback(repo, { ...query, targetSha: commits[3]!.sha })).toMatchObject({ changed: 0, headSha: fakeSha(`merge:${pr.number}`) });
    expect((await world.previewRollback(repo, query)).changed).toBe(1);
    expect(await world.callCount('previewRollback')).toBe(5);
  });

  it('fails as scripted', async () => {
    const world = new FakeWorld(new MemoryKV());
    await world.failNext('previewRollback', 'UNAVAILABLE');
    await expect(world.previewRollback(repo, { paths: ['apps/web'], branch: 'main', targetSha: 'x' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

/** A KV whose process dies (every write after it refused) once a write that merges a PR has gone through. */
function dyingAfterMerge(inner: MemoryKV): KV {
  let dead = false;
  return Object.assign(Object.create(inner) as MemoryKV, {
    txn: async (txn: Parameters<KV['txn']>[0]) => {
      if (dead) throw new Error('killed');
      const result = await inner.txn(txn);
      if (txn.puts.some((p) => p.key.includes('/prs/') && (JSON.parse(p.value) as { merged?: boolean }).merged)) dead = true;
      return result;
    },
  });
}

describe('FakeWorld.mergePullRequest', () => {
  it('merges and plays Argo CD\'s sync in one write: an operator killed right after the merge leaves the app synced', async () => {
    const memory = new MemoryKV();
    const world = new FakeWorld(memory);
    const { app } = scenarioApp('web', 'staging');
    await world.addApp({ ...app, health: 'Degraded' });
    const pr = await world.createPullRequest(repo, { branch: 'b', base: 'main', paths: ['apps/web'], targetSha: 'good', title: 't', body: 'b', labels: [] });

    await new FakeWorld(dyingAfterMerge(memory)).mergePullRequest(repo, pr.number, { sha: pr.headSha }).catch(() => undefined);
    expect((await world.pullRequests())[0]).toMatchObject({ merged: true });
    expect(await world.app(app.ref)).toMatchObject({ syncRevision: fakeSha(`merge:${pr.number}`), health: 'Healthy' });
    expect((await world.previewRollback(repo, { paths: ['apps/web'], branch: 'main', targetSha: 'good' })).changed).toBe(0);
  });
});
