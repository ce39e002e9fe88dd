// Whether the current revision of an app's workloads fails early (issue 21; SPEC §7 I2): read
// from its pods, long before Argo CD calls the app Degraded. Argo CD takes a Deployment's
// health from its status alone, so a new ReplicaSet whose pods crash-loop or cannot pull their
// image leaves the app Progressing until `progressDeadlineSeconds` (600 s by default) runs
// out. Pure: the pods of each workload's current revision (the new ReplicaSet, the
// StatefulSet's updateRevision) are read by the cluster port; nothing older counts.
import type { ContainerFacts, FailsEarly, PodEvidence, PodFacts, PodSignalSettings, RevisionPods } from '../fsm/record.ts';

/** How many containers the evidence keeps (the detail names the rest by count). */
export const MAX_EVIDENCE = 10;
/** How many the one-line detail names. */
const NAMED_IN_DETAIL = 3;
/** The detail's length at most (the RollbackAttempt's status.degradation.signal.detail allows 4096). */
const MAX_DETAIL = 2048;

/**
 * Whether a container waiting for this reason is failing, not just starting. The reference is
 * Argo CD's own Pod health (gitops-engine pkg/health/health_pod.go, getCorev1PodHealth, read at
 * argoproj/gitops-engine@5baed5604d2d; Argo CD 3.6 vendors the same code as
 * argo-cd/gitops-engine): a container of a `restartPolicy: Always` pod waiting with a reason that
 * starts with `Err` or ends with `Error` or `BackOff` makes the pod Degraded — ErrImagePull,
 * ImagePullBackOff, CreateContainerConfigError, CreateContainerError, RunContainerError, … .
 * `InvalidImageName` (kubelet's ErrInvalidImageName, never retried) matches none of those
 * patterns and is added, as issue 21 names it. `ContainerCreating` and `PodInitializing` (a slow
 * pull, a slow start) are not failures. CrashLoopBackOff matches too, but counts by its restarts
 * (containerEvidence), never by how long it waits.
 */
export function failingWaitingReason(reason: string): boolean {
  return reason.startsWith('Err') || reason.endsWith('Error') || reason.endsWith('BackOff') || reason === 'InvalidImageName';
}

/** When a container began waiting: its last termination, or, never having run, its pod's start. */
function waitingSince(container: ContainerFacts, pod: PodFacts): string | undefined {
  return container.lastTerminated?.finishedAt ?? pod.startedAt;
}

/** Why this container fails early, or undefined when it does not (yet). */
export function containerEvidence(container: ContainerFacts, pod: PodFacts, workload: string, settings: Pick<PodSignalSettings, 'minRestarts' | 'waitingSeconds'>, now: Date): PodEvidence | undefined {
  const base = { workload, pod: pod.name, container: container.name, restarts: container.restartCount };
  // Kubernetes keeps the last termination only: terminated `minRestarts` times, the last of them by the OOM killer.
  const terminations = container.restartCount + (container.terminated ? 1 : 0);
  const oomKilled = container.terminated?.reason === 'OOMKilled' || container.lastTerminated?.reason === 'OOMKilled';
  if (oomKilled && terminations >= settings.minRestarts) return { ...base, reason: 'OOMKilled' };
  const reason = container.waiting?.reason;
  if (!reason) return undefined;
  if (reason === 'CrashLoopBackOff') return container.restartCount >= settings.minRestarts ? { ...base, reason } : undefined;
  if (!failingWaitingReason(reason)) return undefined;
  const since = waitingSince(container, pod);
  const seconds = since === undefined ? Number.NaN : (now.getTime() - Date.parse(since)) / 1000;
  // ErrImagePull and ImagePullBackOff take turns while a pull keeps failing: the wait is counted from the start, not from the last flip.
  if (!(seconds >= settings.waitingSeconds)) return undefined;
  return { ...base, reason, waitingSeconds: Math.floor(seconds) };
}

/** `web-7d9f-abcde/web: CrashLoopBackOff, 4 restarts` (waiting time for a waiting reason). */
export function describeEvidence(e: PodEvidence): string {
  const restarts = `${e.restarts} restart${e.restarts === 1 ? '' : 's'}`;
  return `${e.pod}/${e.container}: ${e.reason}, ${restarts}${e.waitingSeconds !== undefined ? `, waiting ${e.waitingSeconds} s` : ''}`;
}

/**
 * The current revision fails early when one of its containers does (containerEvidence) and no pod
 * of that revision is Ready: a revision with some pods Ready and one crashing is not a failed
 * release, and is left to Argo CD's health. A workload with no pods of its current revision yet
 * says nothing. Undefined when nothing fails early, or when the signal is off.
 */
export function failsEarly(revisions: readonly RevisionPods[], settings: PodSignalSettings | undefined, now: Date): FailsEarly | undefined {
  if (!settings?.enabled) return undefined;
  const evidence: PodEvidence[] = [];
  const failing = new Set<string>();
  for (const revision of revisions) {
    if (revision.pods.length === 0 || revision.pods.some((p) => p.ready)) continue;
    const workload = `${revision.kind}/${revision.name}`;
    for (const pod of revision.pods) {
      for (const container of pod.containers) {
        const found = containerEvidence(container, pod, workload, settings, now);
        if (found) {
          evidence.push(found);
          failing.add(`${workload} (revision ${revision.revision})`);
        }
      }
    }
  }
  if (evidence.length === 0) return undefined;
  evidence.sort((a, b) => a.workload.localeCompare(b.workload) || a.pod.localeCompare(b.pod) || a.container.localeCompare(b.container));
  // The workload is named before each container only when more than one fails.
  const named = evidence.slice(0, NAMED_IN_DETAIL).map((e) => `${failing.size > 1 ? `${e.workload} ` : ''}${describeEvidence(e)}`);
  const more = evidence.length > NAMED_IN_DETAIL ? `; ${evidence.length - NAMED_IN_DETAIL} more container(s)` : '';
  return {
    signal: evidence[0]!.reason,
    detail: `the current revision of ${[...failing].join(', ')} fails early: ${named.join('; ')}${more}`.slice(0, MAX_DETAIL),
    pods: evidence.slice(0, MAX_EVIDENCE),
  };
}
