// What an ended attempt leaves behind, and when it goes (README "Retention").
//
// Run by the leader after each resync and a few seconds after an attempt lets
// go of its app, from the RollbackAttempt watch cache:
//   - the rollback branch of an attempt that ended with its PR merged, or closed
//     by the operator, is deleted — only while its head is still the rollback
//     commit recorded on the attempt (GitHubPort.deleteBranch compares first);
//     what became of it is written on the object (OPERATOR_ANNOTATIONS.branch),
//     so each attempt's branch is looked at once;
//   - the object of an attempt whose etcd record has expired (the record's lease
//     is ATTEMPT_RETENTION) is deleted: the window goes with what it showed.
// etcd is read only for objects not yet annotated and objects past the
// retention, and an attempt found holding its app (aborted, waiting for a
// person) again only once its object changed: a quiet sweep costs no request.
import { branchName, repoFromUrl, type AttemptRecord, type RepoRef } from '../fsm/record.ts';
import { Reason, inProgress } from '../fsm/table.ts';
import type { Logger } from '../observability/log.ts';
import type { BranchDeletion, GitHubPort } from '../ports/github.ts';
import type { AttemptObjectCleanupPort, EndedAttemptObject } from '../ports/kubernetes.ts';
import type { AttemptStore } from '../store/attempt-store.ts';

export type BranchPlan =
  | { action: 'wait' }
  | { action: 'delete'; repo: RepoRef; branch: string; sha: string; merged: boolean }
  | { action: 'keep'; why: string };

/** What the branch cleanup goes by: read from the etcd record, or from the object's status once the record expired. */
export interface BranchFacts {
  /** The attempt still holds its app (in progress, or aborted and waiting for a human): its PR may still change. */
  holding: boolean;
  pullRequest?: { number: number; branch: string; state: 'open' | 'closed' | 'merged' };
  repo?: RepoRef;
  /** The rollback commit the operator built: the only head it deletes. */
  rollbackCommit?: string;
  /** A person closed the PR (PullRequestClosed). */
  closedByPerson: boolean;
}

export function factsOfRecord(record: AttemptRecord, holding: boolean): BranchFacts {
  const repo = record.source ? repoFromUrl(record.source.repoURL) : undefined;
  return {
    holding: holding || inProgress(record.state),
    ...(record.pullRequest ? { pullRequest: { ...record.pullRequest, branch: record.pullRequest.branch || branchName(record.app, record.correlationId) } } : {}),
    ...(repo ? { repo } : {}),
    ...(record.rollbackCommit ? { rollbackCommit: record.rollbackCommit.sha } : {}),
    closedByPerson: record.transitions.some((t) => t.reason === Reason.PullRequestClosed),
  };
}

export function factsOfObject(object: EndedAttemptObject): BranchFacts {
  const pr = object.pullRequest;
  // The PR's URL names its repository: https://github.com/{owner}/{repo}/pull/{number}.
  const repo = pr ? repoFromUrl(pr.url.replace(/\/pull\/\d+\/?$/, '')) : undefined;
  return {
    holding: false,
    ...(pr ? { pullRequest: { number: pr.number, branch: pr.branch, state: pr.state } } : {}),
    ...(repo ? { repo } : {}),
    ...(pr?.rollbackCommit ? { rollbackCommit: pr.rollbackCommit } : {}),
    closedByPerson: object.closedByPerson,
  };
}

/** What becomes of an attempt's rollback branch. Pure. */
export function branchPlan(facts: BranchFacts): BranchPlan {
  if (facts.holding) return { action: 'wait' };
  const pr = facts.pullRequest;
  if (!pr) return { action: 'keep', why: 'no pull request was opened' };
  if (!facts.repo) return { action: 'keep', why: 'the attempt names no GitHub repository' };
  // A record written before the rollback commit was kept: nothing to compare the head with, so never deleted.
  if (!facts.rollbackCommit) return { action: 'keep', why: 'no rollback commit is recorded to compare its head with' };
  if (pr.state === 'open') return { action: 'keep', why: `pull request #${pr.number} is still open` };
  // Closed by a person: their decision, and their branch to delete (or reopen the PR from).
  if (pr.state === 'closed' && facts.closedByPerson) return { action: 'keep', why: `pull request #${pr.number} was closed by a person` };
  return { action: 'delete', repo: facts.repo, branch: pr.branch, sha: facts.rollbackCommit, merged: pr.state === 'merged' };
}

/** The annotation value of a deletion's outcome. */
export function branchNote(outcome: BranchDeletion | { outcome: 'kept'; why: string }): string {
  switch (outcome.outcome) {
    case 'deleted': return `deleted at ${outcome.sha}`;
    case 'gone': return 'gone: already deleted';
    default: return `kept: ${outcome.why}`;
  }
}

export interface AttemptCleanupDeps {
  store: Pick<AttemptStore, 'locateAttempt' | 'getAttempt' | 'activeId'>;
  github: Pick<GitHubPort, 'deleteBranch'>;
  objects: AttemptObjectCleanupPort;
  log: Logger;
  retentionSeconds: number;
  clock?: () => Date;
}

export interface CleanupReport {
  branchesDeleted: number;
  branchesKept: number;
  objectsDeleted: number;
}

/**
 * How long an object found holding its app is not looked at again while it is unchanged. Leaving Abort rewrites its
 * status, so the change is what brings it back; the bound is for a status write that was lost.
 */
const HOLDING_RECHECK_MS = 10 * 60_000;

export class AttemptCleanup {
  private readonly deps: AttemptCleanupDeps;
  private running?: Promise<CleanupReport>;
  /** Objects whose attempt held its app when last read, by uid: the resourceVersion read and when. */
  private readonly holding = new Map<string, { resourceVersion: string; at: number }>();

  constructor(deps: AttemptCleanupDeps) {
    this.deps = deps;
  }

  /** One sweep; a sweep asked for while one runs joins it. */
  sweep(): Promise<CleanupReport> {
    this.running ??= this.run().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async run(): Promise<CleanupReport> {
    const now = (this.deps.clock ?? (() => new Date()))().getTime();
    const report: CleanupReport = { branchesDeleted: 0, branchesKept: 0, objectsDeleted: 0 };
    const listed = new Set<string>();
    for (const object of this.deps.objects.endedObjects()) {
      listed.add(object.uid);
      // Another installation's: its record is in another store.
      if (object.ours === false) continue;
      const expired = Date.parse(object.endedAt) + this.deps.retentionSeconds * 1000 <= now;
      if (object.branch !== undefined && !expired) continue;
      const held = this.holding.get(object.uid);
      if (held?.resourceVersion === object.resourceVersion && now - held.at < HOLDING_RECHECK_MS) continue;
      try {
        if (await this.cleanUp(object, expired, report) === 'holding') this.holding.set(object.uid, { resourceVersion: object.resourceVersion, at: now });
        else this.holding.delete(object.uid);
      } catch (error) {
        // One object's failure (GitHub down, a conflict) waits for the next sweep; the others go on.
        this.deps.log.warn('Could not clean up an ended attempt', { name: object.name, namespace: object.namespace, correlationId: object.correlationId, error: (error as Error).message });
      }
    }
    for (const uid of this.holding.keys()) if (!listed.has(uid)) this.holding.delete(uid);
    return report;
  }

  /** Cleans up after one object; says whether its attempt still holds its app (nothing done: the branch waits). */
  private async cleanUp(object: EndedAttemptObject, expired: boolean, report: CleanupReport): Promise<'holding' | 'looked'> {
    const { store, objects } = this.deps;
    const location = await store.locateAttempt(object.correlationId);
    const stored = location ? await store.getAttempt(location.appKey, object.correlationId) : undefined;
    if (!stored) {
      if (object.ours === undefined) {
        // Made before objects were labelled, its record gone: nothing proves it this installation's. Said
        // once on the object (so it is not read again), left for a person to delete.
        if (object.branch === undefined) await objects.noteBranch(object, 'unknown: no record of this attempt in this installation\'s store', { label: false });
        return 'looked';
      }
      // The record expired (a leader away longer than the retention, or a short retention): the branch is
      // cleaned up from what the status last showed, then the object goes with the record.
      if (object.branch === undefined) await this.cleanBranch(object, factsOfObject(object), report);
      if (expired) {
        await objects.deleteObject(object);
        report.objectsDeleted++;
      }
      return 'looked';
    }
    if (object.branch !== undefined) return 'looked';
    const holding = (await store.activeId(location!.appKey)) === object.correlationId;
    return this.cleanBranch(object, factsOfRecord(stored.record, holding), report);
  }

  private async cleanBranch(object: EndedAttemptObject, facts: BranchFacts, report: CleanupReport): Promise<'holding' | 'looked'> {
    const { objects, github, log } = this.deps;
    const plan = branchPlan(facts);
    if (plan.action === 'wait') return 'holding';
    const outcome = plan.action === 'keep' ? { outcome: 'kept' as const, why: plan.why } : await github.deleteBranch(plan.repo, plan.branch, plan.sha, { merged: plan.merged });
    const fields = { correlationId: object.correlationId, name: object.name, namespace: object.namespace, ...(plan.action === 'delete' ? { branch: plan.branch } : {}) };
    if (outcome.outcome === 'deleted') {
      report.branchesDeleted++;
      log.info('Deleted rollback branch', { ...fields, sha: outcome.sha });
    } else if (outcome.outcome === 'kept') {
      report.branchesKept++;
      log.info('Kept rollback branch', { ...fields, why: outcome.why });
    }
    await objects.noteBranch(object, branchNote(outcome), { label: true });
    return 'looked';
  }
}
