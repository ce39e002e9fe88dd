// Issue 21's acceptance on real Argo CD 3.6 + kube-controller-manager + KWOK, with manifests that
// KEEP the default progressDeadlineSeconds (600 s): Argo CD calls such an app Degraded ten minutes
// after a bad push at the earliest. The operator reads the pods of the current revision while Argo
// CD says Progressing, and
//   (a) a crash-looping release (KWOK: a restart every 5 s) → rollback PR within 90 s of the push,
//       Argo CD still Progressing when it opens → merged → RollbackComplete;
//   (b) an image that cannot be pulled (KWOK: ErrImagePull / ImagePullBackOff) → the same, once it
//       waited waitingSeconds (60 s by default);
//   (c) a slow but healthy release (ContainerCreating for 80 s, then Ready) → no attempt, no PR;
//   (d) a release that crashes twice and then runs → no attempt, no PR.
// Each scenario: its own namespace, repository and operator (support/argocd-real.ts). Timings are
// printed: push → first pod → first failing pod → confirmed → PR opened.
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { BROKEN_RELEASE, CRASH_TWICE_RELEASE, SLOW_RELEASE, TEST_RELEASE_LABEL, UNPULLABLE_RELEASE } from '../../dev/stack/kwok.ts';
import { describeEvidence } from '../../src/modules/pod-signals.ts';
import {
  deploymentYaml, givenGitOpsRepo, json, mergedAndRecovered, secondsSince, sleep, until, untilUptime, type AppStatus, type GitOpsRepo,
} from './support/argocd-real.ts';

vi.setConfig({ maxConcurrency: 4 });

/** Checks every 2 s, three in a row confirm: the persistence rule is the one for Degraded. */
const DETECTION = { intervalSeconds: 2, persistenceChecks: 3 };
const PR_WITHIN_MS = 90_000;

interface Pod {
  metadata: { name: string; creationTimestamp: string; labels?: Record<string, string> };
  status: {
    phase?: string; startTime?: string;
    conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }>;
    containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; state?: { waiting?: { reason?: string } } }>;
  };
}

interface Scenario extends GitOpsRepo {
  app: string;
  good: string;
  release(image: string, label?: string, recoverAfterMs?: number): Promise<string>;
  pods(label: string): Promise<Pod[]>;
}

/** A good release v1 (the default progress deadline), Synced and Healthy in real Argo CD, a staging policy, the operator running. */
async function givenScenario(name: string): Promise<Scenario> {
  const repo = await givenGitOpsRepo({ name, files: { 'README.md': 'x\n' } });
  try {
    const app = `${name}-${repo.id}`;
    const release = (image: string, label?: string, recoverAfterMs?: number) => repo.push(
      { [`apps/${app}/deployment.yaml`]: deploymentYaml(app, repo.target, image, label ? { label, ...(recoverAfterMs ? { recoverAfterMs } : {}) } : undefined, { defaultDeadline: true }) },
      `Release ${image}`,
    );
    const good = await release('v1');
    await repo.createApplication(app, {
      source: { repoURL: repo.repoURL, path: `apps/${app}`, targetRevision: 'main' },
      destination: { server: 'https://kubernetes.default.svc', namespace: repo.target },
      syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] },
    }, { 'ai-operator.enabled': 'true', environment: 'staging' });
    // podSignals is left out: its defaults (enabled, 3 restarts, 60 s) are what is under test.
    await repo.createPolicy('policy', { environment: 'staging', detection: DETECTION, healthRestorationSeconds: 5, candidate: { minUptime: 0.6, window: '1h' } });
    await until(`${app} Synced and Healthy at v1`, () => repo.status(app), (s) => s.sync?.revision === good && s.health?.status === 'Healthy', 90_000);
    const live = await json<{ spec: { progressDeadlineSeconds: number } }>(['get', 'deployment', '-n', repo.target, app]);
    expect(live.spec.progressDeadlineSeconds).toBe(600);
    const pods = async (label: string) => (await json<{ items: Pod[] }>(['get', 'pods', '-n', repo.target, '-l', `${TEST_RELEASE_LABEL}=${label}`])).items;
    return { ...repo, app, good, release, pods };
  } catch (error) {
    await repo.stop();
    throw error;
  }
}

const at = (iso: string) => Date.parse(iso);
const since = (from: number, to: number) => `${((to - from) / 1000).toFixed(1)} s`;

/**
 * Pushes the bad release, and follows it to the rollback PR: the times of the first pod of the new revision,
 * of the first pod failing as the pods' signal reads it, of the confirmation and of the PR, with Argo CD's
 * health when the PR opened.
 */
async function badReleaseToPullRequest(s: Scenario, label: string, failing: (pod: Pod) => number | undefined) {
  const pushedAt = Date.now();
  const bad = await s.release('v2', label);
  await s.refresh(s.app);
  let firstPod: number | undefined;
  let firstFailing: number | undefined;
  let health: AppStatus | undefined;
  const pr = await until('the rollback PR', async () => {
    const pods = await s.pods(label);
    for (const pod of pods) {
      firstPod = Math.min(firstPod ?? Infinity, at(pod.metadata.creationTimestamp));
      const f = failing(pod);
      if (f !== undefined) firstFailing = Math.min(firstFailing ?? Infinity, f);
    }
    const opened = s.pulls()[0];
    // Argo CD's health as close as can be to the moment the PR is seen opened.
    if (opened) health = await s.status(s.app);
    return opened;
  }, (p) => p !== undefined, 180_000, 250);
  const prSeenAt = Date.now();
  const prOpenedAt = at(pr!.createdAt);
  const [record] = await s.attempts(s.app);
  const confirmedAt = at(record!.transitions.find((t) => t.to === 'DegradationDetected')!.at);
  console.log(`pod-signals ${s.app} (${label}, progressDeadlineSeconds 600): push → first pod ${since(pushedAt, firstPod!)}, → first failing pod ${firstFailing ? since(pushedAt, firstFailing) : '?'}, `
    + `→ confirmed ${since(pushedAt, confirmedAt)}, → PR #${pr!.number} opened ${since(pushedAt, prOpenedAt)} (seen ${since(pushedAt, prSeenAt)}); Argo CD then: ${health?.health?.status} (${health?.health?.message ?? ''})`);
  return { bad, pr: pr!, record: record!, health: health!, pushedAt, prOpenedAt, firstFailing };
}

describe('pod signals of the current revision on real Argo CD, default progress deadline (issue 21)', () => {
  it.concurrent('(a) a crash-looping release: rollback PR within 90 s of the push while Argo CD still says Progressing, then RollbackComplete', async () => {
    const started = Date.now();
    const s = await givenScenario('crashloop');
    try {
      await untilUptime(s, s.app, 0.8);
      await s.startOperator();
      const run = await badReleaseToPullRequest(s, BROKEN_RELEASE, (pod) => {
        // What the signal reads: a container in CrashLoopBackOff with 3 restarts or more (the time is when this poll saw it).
        const c = pod.status.containerStatuses?.find((x) => x.state?.waiting?.reason === 'CrashLoopBackOff' && x.restartCount >= 3);
        return c ? Date.now() : undefined;
      });
      expect(run.prOpenedAt - run.pushedAt).toBeLessThanOrEqual(PR_WITHIN_MS);
      expect(run.health.health?.status).toBe('Progressing');
      expect(run.health.sync?.revision).toBe(run.bad);
      // The attempt says what started it, and the PR body says which pods, why, and how often they restarted.
      expect(run.record.degradation.signal).toMatchObject({ signal: 'CrashLoopBackOff' });
      const evidence = run.record.degradation.signal!.pods;
      expect(evidence.length).toBeGreaterThan(0);
      expect(evidence.every((p) => p.reason === 'CrashLoopBackOff' && p.restarts >= 3 && p.workload === `Deployment/${s.app}`)).toBe(true);
      expect(run.pr.body).toContain('`Progressing` while the pods of its current revision failed early (`CrashLoopBackOff`)');
      for (const p of evidence) expect(run.pr.body).toContain(`| \`${p.workload}\` | \`${p.pod}\` | \`${p.container}\` | CrashLoopBackOff | ${p.restarts} | — |`);
      console.log(`pod-signals ${s.app}: the PR's evidence: ${evidence.map(describeEvidence).join('; ')}`);
      // kubectl get rollbackattempt -o yaml shows it too (the CRD's status.degradation.signal).
      const object = await until('the RollbackAttempt\'s status.degradation.signal', () => s.attemptObject(run.record), (o) => o.status?.degradation?.signal !== undefined, 30_000);
      expect(object.status.degradation.signal).toMatchObject({ signal: 'CrashLoopBackOff', pods: evidence.map((p) => ({ pod: p.pod, reason: p.reason, restarts: p.restarts })) });

      const { record } = await mergedAndRecovered(s, s.app);
      expect(record.candidate?.revision).toBe(s.good);
      expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
      expect(record.invariants.find((i) => i.id === 'I2_health_degraded')?.detail).toMatch(/^Argo CD reports Progressing now, and CrashLoopBackOff/);
      console.log(`pod-signals crashloop: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 480_000);

  it.concurrent('(b) an image that cannot be pulled: rollback PR within 90 s of the push while Argo CD still says Progressing, then RollbackComplete', async () => {
    const started = Date.now();
    const s = await givenScenario('imagepull');
    try {
      await untilUptime(s, s.app, 0.8);
      await s.startOperator();
      const run = await badReleaseToPullRequest(s, UNPULLABLE_RELEASE, (pod) => {
        // What the signal reads: waiting in an image-pull error for 60 s since the kubelet took the pod.
        const pulling = pod.status.containerStatuses?.some((x) => ['ErrImagePull', 'ImagePullBackOff'].includes(x.state?.waiting?.reason ?? ''));
        return pulling && pod.status.startTime ? at(pod.status.startTime) + 60_000 : undefined;
      });
      expect(run.prOpenedAt - run.pushedAt).toBeLessThanOrEqual(PR_WITHIN_MS);
      expect(run.health.health?.status).toBe('Progressing');
      expect(['ErrImagePull', 'ImagePullBackOff']).toContain(run.record.degradation.signal?.signal);
      const evidence = run.record.degradation.signal!.pods;
      expect(evidence.every((p) => p.restarts === 0 && (p.waitingSeconds ?? 0) >= 60)).toBe(true);
      expect(run.pr.body).toMatch(/\| `Deployment\/[^`]+` \| `[^`]+` \| `[^`]+` \| (ErrImagePull|ImagePullBackOff) \| 0 \| \d+ s \|/);
      console.log(`pod-signals ${s.app}: the PR's evidence: ${evidence.map(describeEvidence).join('; ')}`);

      const { record } = await mergedAndRecovered(s, s.app);
      expect(record.candidate?.revision).toBe(s.good);
      expect(record.state).toBe('RollbackComplete');
      console.log(`pod-signals imagepull: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 480_000);

  it.concurrent('(c) a slow but healthy release (pulling for 80 s, then Ready): no attempt, no PR', async () => {
    const started = Date.now();
    const s = await givenScenario('slowstart');
    try {
      const operator = await s.startOperator();
      const pushedAt = Date.now();
      const slow = await s.release('v2', SLOW_RELEASE, 80_000);
      await s.refresh(s.app);
      const seen = new Set<string>();
      const healthy = await until('Healthy at the slow release', async () => { const x = await s.status(s.app); seen.add(x.health?.status ?? ''); return x; },
        (x) => x.sync?.revision === slow && x.operationState?.phase === 'Succeeded' && x.health?.status === 'Healthy' && seen.has('Progressing'), 180_000, 250);
      const pods = await s.pods(SLOW_RELEASE);
      // How long each pod waited in ContainerCreating: from the kubelet taking it to Ready.
      const pulledFor = pods.map((p) => (at(p.status.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime!) - at(p.status.startTime!)) / 1000);
      console.log(`pod-signals ${s.app}: push → Healthy ${secondsSince(pushedAt)}; seen ${[...seen].join(', ')}; pulled for ${pulledFor.map((x) => `${x.toFixed(0)} s`).join(', ')}`);
      expect(pulledFor.every((x) => x >= 75)).toBe(true);
      expect(seen).toContain('Progressing');
      expect([...seen]).not.toContain('Degraded');
      // Slower than waitingSeconds (60 s): the pull took longer than that, and that alone is no failure.
      expect(Date.now() - pushedAt).toBeGreaterThan(75_000);
      expect(pods.every((p) => p.status.containerStatuses?.every((c) => c.ready && c.restartCount === 0))).toBe(true);
      expect(healthy.history?.at(-1)?.revision).toBe(slow);
      await sleep(3 * DETECTION.intervalSeconds * 1000);
      expect(await s.attempts()).toEqual([]);
      expect(s.pulls()).toEqual([]);
      // It did look: the pods of the workload namespace were watched while Argo CD said Progressing.
      expect(readFileSync(operator.log, 'utf8')).toMatch(new RegExp(`Watching pods of a Progressing application's namespace.*${s.target}`));
      console.log(`pod-signals slowstart: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 480_000);

  it.concurrent('(d) a release that crashes twice and then runs: no attempt, no PR', async () => {
    const started = Date.now();
    const s = await givenScenario('crashtwice');
    try {
      const operator = await s.startOperator();
      const pushedAt = Date.now();
      const release = await s.release('v2', CRASH_TWICE_RELEASE);
      await s.refresh(s.app);
      const seen = new Set<string>();
      await until('Healthy at the release that crashed twice', async () => { const x = await s.status(s.app); seen.add(x.health?.status ?? ''); return x; },
        (x) => x.sync?.revision === release && x.operationState?.phase === 'Succeeded' && x.health?.status === 'Healthy' && seen.has('Progressing'), 120_000, 250);
      const pods = await s.pods(CRASH_TWICE_RELEASE);
      console.log(`pod-signals ${s.app}: push → Healthy ${secondsSince(pushedAt)}; restarts ${pods.map((p) => p.status.containerStatuses?.[0]?.restartCount).join(', ')}`);
      expect(pods.length).toBe(2);
      expect(pods.every((p) => p.status.containerStatuses?.[0]?.ready === true && p.status.containerStatuses[0].restartCount === 2)).toBe(true);
      await sleep(3 * DETECTION.intervalSeconds * 1000);
      expect(await s.attempts()).toEqual([]);
      expect(s.pulls()).toEqual([]);
      // It did look: the pods of the workload namespace were watched while Argo CD said Progressing.
      expect(readFileSync(operator.log, 'utf8')).toMatch(new RegExp(`Watching pods of a Progressing application's namespace.*${s.target}`));
      console.log(`pod-signals crashtwice: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 480_000);
});
