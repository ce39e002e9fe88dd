// The branch cleanup's rule (branchPlan) and a sweep over fakes: what is deleted, kept, waited for.
import { describe, expect, it } from 'vitest';
import type { AttemptRecord } from '../fsm/record.ts';
import { createLogger } from '../observability/log.ts';
import type { BranchDeletion } from '../ports/github.ts';
import type { EndedAttemptObject } from '../ports/kubernetes.ts';
import { AttemptCleanup, branchPlan, factsOfObject, factsOfRecord } from './attempt-cleanup.ts';

const repo = { owner: 'acme', repo: 'gitops' };
const record = (patch: Partial<AttemptRecord>): AttemptRecord => ({
  correlationId: 'c1', app: { namespace: 'argocd', name: 'cart' }, environment: 'staging', state: 'RollbackComplete', reason: 'HealthRestored',
  message: '', since: '2026-03-01T10:00:00.000Z', version: 8, createdAt: '2026-03-01T09:00:00.000Z', degradation: { firstSeenAt: '', checks: 3 },
  invariants: [], transitions: [], settings: {} as AttemptRecord['settings'],
  source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/cart', targetRevision: 'main' },
  pullRequest: { number: 4, url: 'https://github.com/acme/gitops/pull/4', branch: 'ai-operator/rollback/cart-c1', state: 'merged' },
  rollbackCommit: { sha: 'a'.repeat(40), parent: 'b'.repeat(40) } as AttemptRecord['rollbackCommit'],
  ...patch,
});

describe('branchPlan', () => {
  it('deletes the branch of a merged PR, and of one the operator closed, at the rollback commit', () => {
    expect(branchPlan(factsOfRecord(record({}), false))).toEqual({ action: 'delete', repo, branch: 'ai-operator/rollback/cart-c1', sha: 'a'.repeat(40), merged: true });
    const closed = record({ state: 'Idle', reason: 'HealthRestoredBeforeMerge', pullRequest: { ...record({}).pullRequest!, state: 'closed' } });
    expect(branchPlan(factsOfRecord(closed, false))).toMatchObject({ action: 'delete', merged: false });
  });

  it('waits while the attempt holds its app, keeps a PR a person closed, an open PR, and a branch with no recorded commit', () => {
    expect(branchPlan(factsOfRecord(record({ state: 'Abort' }), true))).toEqual({ action: 'wait' });
    expect(branchPlan(factsOfRecord(record({ state: 'PRCreated' }), false))).toEqual({ action: 'wait' });
    const byPerson = record({ state: 'Idle', pullRequest: { ...record({}).pullRequest!, state: 'closed' }, transitions: [{ from: 'PRCreated', to: 'Abort', at: '', reason: 'PullRequestClosed' }] });
    expect(branchPlan(factsOfRecord(byPerson, false))).toEqual({ action: 'keep', why: 'pull request #4 was closed by a person' });
    expect(branchPlan(factsOfRecord(record({ state: 'Abort', pullRequest: { ...record({}).pullRequest!, state: 'open' } }), false))).toMatchObject({ action: 'keep' });
    const { rollbackCommit: _none, ...old } = record({});
    expect(branchPlan(factsOfRecord(old as AttemptRecord, false))).toMatchObject({ action: 'keep', why: expect.stringContaining('no rollback commit') });
  });

  it('reads the same from the object status once the record expired (the repository from the PR URL)', () => {
    const object: EndedAttemptObject = {
      namespace: 'argocd', name: 'cart-c1', uid: 'u', resourceVersion: '7', correlationId: 'c1', endedAt: '2026-03-01T10:00:00.000Z', ours: true, closedByPerson: false,
      pullRequest: { number: 4, url: 'https://github.com/acme/gitops/pull/4', branch: 'ai-operator/rollback/cart-c1', state: 'merged', rollbackCommit: 'a'.repeat(40) },
    };
    expect(branchPlan(factsOfObject(object))).toEqual({ action: 'delete', repo, branch: 'ai-operator/rollback/cart-c1', sha: 'a'.repeat(40), merged: true });
  });
});

describe('AttemptCleanup', () => {
  it('deletes each ended attempt\'s branch once, then its object once the record has expired; never another installation\'s', async () => {
    let now = Date.parse('2026-03-01T10:00:30.000Z');
    const records = new Map<string, AttemptRecord>([['c1', record({})]]);
    const notes = new Map<string, string>();
    const deleted: string[] = [];
    const deletions: string[] = [];
    const object = (cid: string, ours: boolean): EndedAttemptObject => ({
      namespace: 'argocd', name: `cart-${cid}`, uid: `u-${cid}`, resourceVersion: '7', correlationId: cid, endedAt: '2026-03-01T10:00:00.000Z', ours, closedByPerson: false,
      ...(notes.has(cid) ? { branch: notes.get(cid)! } : {}),
    });
    const cleanup = new AttemptCleanup({
      store: {
        locateAttempt: async (cid) => (records.has(cid) ? { appKey: 'cart', namespace: 'argocd' } : undefined),
        getAttempt: async (_app, cid) => (records.has(cid) ? { record: records.get(cid)!, checks: [], modRevision: '1' } : undefined),
        activeId: async () => undefined,
      },
      github: { deleteBranch: async (_r, branch, sha): Promise<BranchDeletion> => { deletions.push(branch); return { outcome: 'deleted', sha }; } },
      objects: {
        endedObjects: () => [object('c1', true), object('other', false)].filter((o) => !deleted.includes(o.name)),
        noteBranch: async (o, outcome) => { notes.set(o.name.slice('cart-'.length), outcome); },
        deleteObject: async (o) => { deleted.push(o.name); },
      },
      log: createLogger('ERROR'), retentionSeconds: 60, clock: () => new Date(now),
    });
    expect(await cleanup.sweep()).toEqual({ branchesDeleted: 1, branchesKept: 0, objectsDeleted: 0 });
    expect(notes.get('c1')).toBe(`deleted at ${'a'.repeat(40)}`);
    expect(await cleanup.sweep()).toEqual({ branchesDeleted: 0, branchesKept: 0, objectsDeleted: 0 });
    // The record's lease ran out: the object goes; the other installation's stays.
    now += 60_000;
    records.delete('c1');
    expect(await cleanup.sweep()).toEqual({ branchesDeleted: 0, branchesKept: 0, objectsDeleted: 1 });
    expect(deleted).toEqual(['cart-c1']);
    expect(deletions).toEqual(['ai-operator/rollback/cart-c1']);
  });

  it('reads an attempt that holds its app once, and again only when its object changed or ten minutes passed', async () => {
    let now = Date.parse('2026-03-01T10:00:30.000Z');
    let stored = record({ state: 'Abort', reason: 'CIFailure', pullRequest: { ...record({}).pullRequest!, state: 'open' } });
    let active: string | undefined = 'c1';
    let resourceVersion = '7';
    const reads: string[] = [];
    const notes: string[] = [];
    const cleanup = new AttemptCleanup({
      store: {
        locateAttempt: async (cid) => { reads.push(`index ${cid}`); return { appKey: 'cart', namespace: 'argocd' }; },
        getAttempt: async () => { reads.push('record'); return { record: stored, checks: [], modRevision: '1' }; },
        activeId: async () => { reads.push('active'); return active; },
      },
      github: { deleteBranch: async (_r, _b, sha): Promise<BranchDeletion> => ({ outcome: 'deleted', sha }) },
      objects: {
        endedObjects: () => [{ namespace: 'argocd', name: 'cart-c1', uid: 'u-c1', resourceVersion, correlationId: 'c1', endedAt: '2026-03-01T10:00:00.000Z', ours: true, closedByPerson: false, ...(notes.length ? { branch: notes[0]! } : {}) }],
        noteBranch: async (_o, outcome) => { notes.push(outcome); },
        deleteObject: async () => {},
      },
      log: createLogger('ERROR'), retentionSeconds: 3600, clock: () => new Date(now),
    });
    // Aborted, holding its app: read once, then left alone while its object is unchanged
    await cleanup.sweep();
    await cleanup.sweep();
    now += 9 * 60_000;
    await cleanup.sweep();
    expect(reads).toEqual(['index c1', 'record', 'active']);
    // Ten minutes on, unchanged: read again (a status write may have been lost)
    now += 60_000;
    await cleanup.sweep();
    expect(reads).toHaveLength(6);
    // Reset by a person: its status changed, so it is read at the next sweep and its branch kept (the PR is open)
    stored = { ...stored, state: 'Idle', reason: 'Reset' };
    active = undefined;
    resourceVersion = '8';
    await cleanup.sweep();
    expect(reads).toHaveLength(9);
    expect(notes).toEqual(['kept: pull request #4 is still open']);
  });
});
