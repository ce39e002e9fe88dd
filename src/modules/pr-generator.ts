// PRGenerator (SPEC §6.4): the rollback pull request — one commit restoring the
// app's source set to the candidate's trees, on a branch named after the attempt,
// with a body that explains why, what is undone (per path of the set), which
// other apps it changes, why this target, the invariants and what happens next. Before creating, it adopts an open PR of the same branch,
// so retries and restarts can never open two.
import { ANNOTATIONS } from '../api/group.ts';
import { formatDuration } from '../fsm/format.ts';
import { affectsBeyondStaging, attemptBranch, isUnder, noApproversNote, branchName, attemptName, restoredPaths, shortSha, type AffectedApp, type AttemptRecord, type HealthCheck, type InvariantResult } from '../fsm/record.ts';
import { rolloutFigures, type DeploymentReplicas } from '../governance/merge-verdict.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { ChangedFile, CommitInfo, GitHubPort, OpenedPullRequest, RepoRef } from '../ports/github.ts';

export interface PullRequestContext {
  record: AttemptRecord;
  app: ApplicationView;
  checks: HealthCheck[];
  deployments?: DeploymentReplicas[];
  undone: CommitInfo[];
  invariants: InvariantResult[];
  /** The files the rollback commit changes (the preview's). */
  files: ChangedFile[];
  /** The other Applications those files deploy. */
  affected: AffectedApp[];
}

/** How many changed files the body names per path before it counts the rest. */
const FILES_PER_PATH = 20;


/** The set's paths, each with the files the commit changes under it: what a reviewer checks first. */
function changesByPath(paths: string[], files: ChangedFile[]): string[] {
  return paths.map((path) => {
    const mine = files.filter((f) => isUnder(path, f.path));
    const named = mine.slice(0, FILES_PER_PATH).map((f) => `\`${f.path}\` ${f.change === 'deleted' ? '(deleted: absent then)' : '(restored)'}`);
    const more = mine.length > FILES_PER_PATH ? [`${mine.length - FILES_PER_PATH} more`] : [];
    return `- \`${path || '.'}\`: ${mine.length === 0 ? 'unchanged' : [...named, ...more].join(', ')}`;
  });
}

export function pullRequestTitle(record: AttemptRecord): string {
  return `Rollback ${record.app.name} (${record.environment}) to ${record.candidate?.shortRevision ?? '?'}`;
}

export function approveCommand(record: AttemptRecord): string {
  return `kubectl annotate rollbackattempt ${attemptName(record.app, record.correlationId)} -n ${record.app.namespace} ${ANNOTATIONS.approve}=<your-username> --overwrite`;
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function pullRequestBody(ctx: PullRequestContext): string {
  const { record, app } = ctx;
  const candidate = record.candidate!;
  const signal = record.degradation.signal;
  const lines: string[] = [
    `## Why`,
    ``,
    signal
      ? `Argo CD reported **${app.ref.name}** (${record.environment}) \`Progressing\` while the pods of its current revision failed early ` +
        `(\`${signal.signal}\`) on ${ctx.checks.length} consecutive checks, every ${formatDuration(record.settings.intervalSeconds)}, from ${record.degradation.firstSeenAt}. ` +
        `Argo CD calls a Deployment \`Degraded\` only once its rollout exceeds \`progressDeadlineSeconds\` (600 s unless the manifest says otherwise): waiting for it would leave this release failing for that long.`
      : `Argo CD reported **${app.ref.name}** (${record.environment}) \`Degraded\` on ${ctx.checks.length} consecutive checks, ` +
        `every ${formatDuration(record.settings.intervalSeconds)}, from ${record.degradation.firstSeenAt}.`,
    ``,
    `| check | at | health | revision |`,
    `|---|---|---|---|`,
    ...ctx.checks.map((c, i) => `| ${i + 1} | ${c.at} | ${c.status}${c.signal ? `, pods failing early (${c.signal})` : ''} | ${c.revision ? `\`${shortSha(c.revision)}\`` : '—'} |`),
  ];
  if (signal) {
    lines.push(
      ``,
      `The pods of the current revision when the degradation was confirmed:`,
      ``,
      `| workload | pod | container | reason | restarts | waiting |`,
      `|---|---|---|---|---|---|`,
      ...signal.pods.map((p) => `| \`${cell(p.workload)}\` | \`${cell(p.pod)}\` | \`${cell(p.container)}\` | ${cell(p.reason)} | ${p.restarts} | ${p.waitingSeconds !== undefined ? formatDuration(p.waitingSeconds) : '—'} |`),
    );
  }
  if (ctx.deployments && ctx.deployments.length > 0) {
    lines.push(``, `Rollout of the current revision: ${ctx.deployments.map((d) => `\`${rolloutFigures(d)}\``).join(', ')}.`);
  }
  lines.push(
    ``,
    `## What this undoes`,
    ``,
    `This restores the app's source set — what Argo CD renders it from — to its trees at \`${candidate.shortRevision}\`` +
      `${candidate.deploymentId !== undefined ? ` (deployment #${candidate.deploymentId})` : ''}; nothing outside these paths changes:`,
    ``,
    ...changesByPath(restoredPaths(record, app.source), ctx.files),
    ``,
    ...(record.rolledBackFrom ? [`Rolled back from \`${shortSha(record.rolledBackFrom)}\`, the last commit that changed the set at the deployed revision${record.currentRevision && record.currentRevision !== record.rolledBackFrom ? ` \`${shortSha(record.currentRevision)}\`` : ''}.`, ``] : []),
    `Commits undone:`,
    ``,
    ...(ctx.undone.length > 0
      ? ctx.undone.map((c) => `- [\`${shortSha(c.sha)}\`](${c.url}) ${cell(c.message.split('\n')[0] || '(no message)')} — ${c.author || 'unknown'}`)
      : [record.currentRevision
        ? `- (the commits between \`${candidate.shortRevision}\` and \`${shortSha(record.currentRevision)}\` could not be listed)`
        : `- (the commits undone since \`${candidate.shortRevision}\` could not be listed)`]),
    ``,
    `## Other applications this changes`,
    ``,
    ...(ctx.affected.length === 0
      ? ['None: no other Application deploys a file this commit changes.']
      : ctx.affected.map((a) => `- **${a.name}** (${a.namespace}, ${a.environment}): ${a.paths.map((p) => `\`${p}\``).join(', ')}`)),
    ``,
    `## Why this target`,
    ``,
    candidate.mode === 'metrics'
      ? `\`${candidate.shortRevision}\` was ${candidate.evidence}.`
      : `${candidate.evidence}. Prometheus could not rank revisions by uptime, so CI results chose the target.`,
    ``,
    `## Invariants`,
    ``,
    `| invariant | result | detail |`,
    `|---|---|---|`,
    ...ctx.invariants.map((i) => `| \`${i.id}\` | ${i.result === 'PASS' ? '✅ PASS' : i.result === 'FAIL' ? '❌ FAIL' : '❔ UNKNOWN'} | ${cell(i.detail) || '—'} |`),
    ``,
    `## What happens next`,
    ``,
    record.environment === 'staging' && affectsBeyondStaging({ affected: ctx.affected })
      ? `This is a **staging** rollback that ${affectsBeyondStaging({ affected: ctx.affected })}: ai-operator will not merge it on its own. ` +
        (noApproversNote(record)
          ? `Note: ${noApproversNote(record)}.`
          : `Once CI is green, an approver runs:\n\n\`\`\`sh\n${approveCommand(record)}\n\`\`\`\n\nWithout approval within ${formatDuration(record.settings.approvalTimeoutSeconds)} the attempt aborts and this PR stays open.`)
      : record.environment === 'staging'
      ? `ai-operator merges this pull request itself once CI is green and all eight invariants pass on fresh reads, then waits for Argo CD to report Healthy for ${formatDuration(record.settings.healthRestorationSeconds)}.`
      : `This is **production**: ai-operator will not merge without an authorized approval. Once CI is green, an approver runs:\n\n\`\`\`sh\n${approveCommand(record)}\n\`\`\`\n\nWithout approval within ${formatDuration(record.settings.approvalTimeoutSeconds)} the attempt aborts and this PR stays open.`,
    ``,
    `Correlation id: \`${record.correlationId}\``,
  );
  return lines.join('\n');
}

/**
 * Opens this attempt's PR. The reconciler looked for it (any state) in the same
 * round, and createPullRequest adopts an open one of the branch before creating,
 * so a crash or a lost answer never yields a second PR.
 */
export function openPullRequest(github: GitHubPort, repo: RepoRef, ctx: PullRequestContext): Promise<OpenedPullRequest> {
  return github.createPullRequest(repo, {
    branch: branchName(ctx.record.app, ctx.record.correlationId),
    base: attemptBranch(ctx.record, ctx.app.source),
    paths: restoredPaths(ctx.record, ctx.app.source),
    targetSha: ctx.record.candidate!.revision,
    title: pullRequestTitle(ctx.record),
    body: pullRequestBody(ctx),
    labels: ['ai-operator', 'rollback', ctx.record.environment],
  });
}


// ---- Comments on the rollback PR: what the operator says when it stops, closes or asks --

const signed = (correlationId: string) => `Correlation id \`${correlationId}\`.`;

export const comments = {
  /** An attempt aborted with its PR open: the PR stays for a human. */
  aborted: (correlationId: string, reason: string, message: string) =>
    `ai-operator stopped this rollback: **${reason}** — ${message}\n\nThe pull request is left open for a human to decide. ${signed(correlationId)}`,
  /** The Application is gone or changed under the attempt: nothing could ever merge or confirm this PR. */
  applicationEnded: (correlationId: string, reason: string, message: string) =>
    `ai-operator stopped this rollback: **${reason}** — ${message}. Closing its rollback pull request. ${signed(correlationId)}`,
  /** A reset after an abort: closed first, so a new attempt never leaves two rollback PRs open for one app. */
  reset: (correlationId: string, abortReason: string) =>
    `Attempt \`${correlationId}\` was reset by a human after it aborted (${abortReason}): closing its rollback pull request.`,
  /** The close was refused for good (issue 19 §1): the PR stays open, a human closes it. Tried once. */
  closeRefused: (correlationId: string, undone: string) =>
    `ai-operator ${undone.replace(/ — close it by hand$/, '')}: this rollback is over, and this pull request should not be merged — close it by hand. ${signed(correlationId)}`,
  healthRestored: (appName: string, correlationId: string) =>
    `Health of ${appName} is back to Healthy before this rollback was merged: closing it. ${signed(correlationId)}`,
  approvalBlocked: (correlationId: string, problem: string) =>
    `This production rollback cannot be approved right now: the API server does not enforce who may approve (${problem}). ai-operator records no approval until the ValidatingAdmissionPolicy for approvals and its binding are installed in Deny mode. ${signed(correlationId)}`,
  approvalRequested: (record: AttemptRecord) =>
    `CI is green and the invariants allow a merge. This ${record.environment === 'production' ? 'production rollback' : `rollback ${affectsBeyondStaging(record) ?? ''} and`} waits for an authorized approver:\n\n\`\`\`sh\n${approveCommand(record)}\n\`\`\``,
};
