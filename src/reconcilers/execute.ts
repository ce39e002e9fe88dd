// The effects of a decision's intents (execute in observe → decide → commit →
// execute → project): each idempotent, each taken only on facts observed before
// the decision; a failure after its retries is remembered for the next decide
// (intent-failure.ts says what it means) and said once per distinct failure.
import { sayIntent, type Said } from '../decide/record-keeping.ts';
import { decide, type Intent } from '../decide/machine.ts';
import { isUnder, type AttemptRecord, restoredPaths } from '../fsm/record.ts';
import { comments, openPullRequest } from '../modules/pr-generator.ts';
import { IntegrationError, NothingToRestoreError } from '../ports/errors.ts';
import type { OpenedPullRequest } from '../ports/github.ts';
import type { ApplicationReconcilerDeps } from './deps.ts';
import type { Observed, Observer, RoundMemo } from './observe.ts';

export class Executor {
  /** PR openings under way per repository and branch, with the paths each restores (exclusive()). */
  private readonly opening = new Map<string, Array<{ paths: string[]; done: Promise<void> }>>();
  /**
   * The last intent failure audited per attempt: the same failure again (an outage that lasts) is not audited
   * again — one record per distinct failure, not per try. Forgotten at the attempt's next transition.
   */
  private readonly failureSaid = new Map<string, string>();
  private readonly deps: ApplicationReconcilerDeps;
  private readonly observer: Observer;
  private readonly say: (storeKey: string, said: Said, appUid: string | undefined) => Promise<void>;

  constructor(deps: ApplicationReconcilerDeps, observer: Observer, say: (storeKey: string, said: Said, appUid: string | undefined) => Promise<void>) {
    this.deps = deps;
    this.observer = observer;
    this.say = say;
  }

  /** A failure seen again in the attempt's new state is news again. */
  forgetFailure(correlationId: string): void {
    this.failureSaid.delete(correlationId);
  }

  get openingsUnderWay(): number {
    return this.opening.size;
  }

  // Intents only write: every fact they need was observed before the decision.
  async execute(storeKey: string, intents: Intent[], record: AttemptRecord, observed: Observed): Promise<RoundMemo> {
    const memo: RoundMemo = {};
    for (const intent of intents) {
      try {
        const opened = await this.carryOut(intent, record, observed, memo);
        await this.say(storeKey, sayIntent(intent, record, opened ? { opened } : {}), observed.app?.uid);
      } catch (error) {
        if (!(error instanceof IntegrationError)) throw error;
        memo.failure = { code: error.code, message: error.message, call: error.call };
        const number = 'number' in intent ? intent.number : undefined;
        memo.intentFailure = { kind: intent.kind, ...(number !== undefined ? { number } : {}), code: error.code, message: error.message };
        const first = this.firstSaid(record.correlationId, `${intent.kind}#${number ?? ''} ${error.message}`);
        await this.say(storeKey, sayIntent(intent, record, { failure: { code: error.code, message: error.message, call: error.call, first } }), observed.app?.uid);
        break;
      }
    }
    return memo;
  }

  /** One intent's effect; the PR it opened, if it is one that opens. */
  private async carryOut(intent: Intent, record: AttemptRecord, observed: Observed, memo: RoundMemo): Promise<OpenedPullRequest | undefined> {
    const { github } = this.deps;
    const repo = observed.repo;
    if (!repo) throw new IntegrationError(intent.kind, 'INVALID_ARGUMENT', `the attempt's source has no GitHub repository URL`);
    switch (intent.kind) {
      case 'openPullRequest': {
        const { preflight } = intent;
        // Checked where the PR is opened, alone among the attempts restoring overlapping paths of the same branch:
        // another app's reconcile may be opening one restoring the same files right now.
        const pr = await this.exclusive(`${repo.owner}/${repo.repo}@${preflight.base}`, restoredPaths(record, observed.app?.source), async () => {
          const competing = await this.observer.competingPullRequests(record, observed.app, repo, preflight.base);
          if (competing.length > 0) {
            memo.competing = competing;
            return undefined;
          }
          return openPullRequest(github, repo, {
            record, app: observed.app!, checks: observed.facts.checks, undone: record.candidate?.undone ?? [], invariants: preflight.invariants ?? [],
            files: preflight.files ?? [], affected: preflight.affected ?? [],
            ...(preflight.deployments ? { deployments: preflight.deployments } : {}),
          }).catch((error: unknown) => {
            // The branch moved since the preview (the PR this attempt waited for was merged): nothing was written,
            // and the next round measures again — it waits for that merge to be deployed, or finds nothing to roll back.
            if (!(error instanceof NothingToRestoreError)) throw error;
            this.deps.log.info('Opened no pull request: nothing left to restore', { correlationId: record.correlationId, reason: error.message });
            return undefined;
          });
        });
        // Another attempt's PR restores these files now: the next round reads it and waits for it.
        if (pr) {
          memo.opened = pr;
          memo.preflight = preflight;
        }
        return pr;
      }
      case 'mergePullRequest':
        await github.mergePullRequest(repo, intent.number, { sha: intent.headSha, method: intent.method });
        return undefined;
      case 'closePullRequest':
        await github.closePullRequest(repo, intent.number, intent.comment);
        return undefined;
      case 'commentPullRequest':
        await github.commentPullRequest(repo, intent.number, intent.marker, intent.comment);
        return undefined;
      case 'removeApproval':
        await this.deps.attempts.removeApproval(record);
        return undefined;
      case 'requestApproval':
        await github.commentPullRequest(repo, intent.number, `approval-${record.correlationId}`, comments.approvalRequested(record));
        return undefined;
    }
  }

  /** Whether this failure of the attempt is new (not the one audited last); remembers it. Bounded. */
  private firstSaid(correlationId: string, failure: string): boolean {
    if (this.failureSaid.get(correlationId) === failure) return false;
    this.failureSaid.delete(correlationId);
    this.failureSaid.set(correlationId, failure);
    if (this.failureSaid.size > 1000) this.failureSaid.delete(this.failureSaid.keys().next().value!);
    return true;
  }

  /**
   * Runs `work` once no other work of the same key whose paths overlap these is running: two apps rendering
   * one shared base, reconciled side by side, would otherwise both find no PR restoring it and both open one.
   * Apps whose sets are disjoint (most of a burst) open their PRs side by side.
   */
  private async exclusive<T>(key: string, paths: string[], work: () => Promise<T>): Promise<T> {
    const overlaps = (a: string[], b: string[]) => a.some((p) => b.some((q) => isUnder(p, q) || isUnder(q, p)));
    for (;;) {
      const busy = (this.opening.get(key) ?? []).filter((e) => overlaps(e.paths, paths));
      if (busy.length === 0) break;
      await Promise.all(busy.map((e) => e.done));
    }
    // No await between the last look and this: nobody else can register an overlapping work in between.
    let release!: () => void;
    const entry = { paths, done: new Promise<void>((resolve) => { release = resolve; }) };
    this.opening.set(key, [...(this.opening.get(key) ?? []), entry]);
    try {
      return await work();
    } finally {
      const rest = (this.opening.get(key) ?? []).filter((e) => e !== entry);
      if (rest.length > 0) this.opening.set(key, rest);
      else this.opening.delete(key);
      release();
    }
  }
}
