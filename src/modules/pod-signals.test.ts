import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ContainerFacts, PodFacts, PodSignalSettings, RevisionPods } from '../fsm/record.ts';
import { containerEvidence, failingWaitingReason, failsEarly, MAX_EVIDENCE } from './pod-signals.ts';

const SETTINGS: PodSignalSettings = { enabled: true, minRestarts: 3, waitingSeconds: 60 };
const NOW = new Date('2026-12-07T10:00:00Z');
const ago = (seconds: number) => new Date(NOW.getTime() - seconds * 1000).toISOString();

const crashLooping = (restartCount: number): ContainerFacts => ({
  name: 'web', ready: false, restartCount, waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s restarting failed container=web' },
  lastTerminated: { reason: 'Error', exitCode: 1, finishedAt: ago(5) },
});
const waitingIn = (reason: string): ContainerFacts => ({ name: 'web', ready: false, restartCount: 0, waiting: { reason } });
const running = (restartCount = 0): ContainerFacts => ({ name: 'web', ready: true, restartCount });

function pod(name: string, containers: ContainerFacts[], options: { ready?: boolean; startedSecondsAgo?: number } = {}): PodFacts {
  return { name, ready: options.ready ?? false, startedAt: ago(options.startedSecondsAgo ?? 30), containers };
}
function revision(pods: PodFacts[], extra: Partial<RevisionPods> = {}): RevisionPods {
  return { kind: 'Deployment', namespace: 'shop', name: 'web', revision: '7d9f8c6b5', pods, ...extra };
}

describe('failingWaitingReason: Argo CD\'s Degraded waiting reasons for a Pod (health_pod.go), plus InvalidImageName', () => {
  it.each(['ImagePullBackOff', 'ErrImagePull', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError', 'InvalidImageName', 'ErrImageNeverPull'])('%s fails', (reason) => {
    expect(failingWaitingReason(reason)).toBe(true);
  });
  it.each(['ContainerCreating', 'PodInitializing', ''])('%s is a start, not a failure', (reason) => {
    expect(failingWaitingReason(reason)).toBe(false);
  });
});

describe('failsEarly', () => {
  it('a crash loop with 3 restarts and no pod Ready fails, naming the pods, reasons and restart counts', () => {
    const early = failsEarly([revision([pod('web-7d9f8c6b5-a', [crashLooping(3)]), pod('web-7d9f8c6b5-b', [crashLooping(4)])])], SETTINGS, NOW);
    expect(early).toEqual({
      signal: 'CrashLoopBackOff',
      detail: 'the current revision of Deployment/web (revision 7d9f8c6b5) fails early: web-7d9f8c6b5-a/web: CrashLoopBackOff, 3 restarts; '
        + 'web-7d9f8c6b5-b/web: CrashLoopBackOff, 4 restarts',
      pods: [
        { workload: 'Deployment/web', pod: 'web-7d9f8c6b5-a', container: 'web', reason: 'CrashLoopBackOff', restarts: 3 },
        { workload: 'Deployment/web', pod: 'web-7d9f8c6b5-b', container: 'web', reason: 'CrashLoopBackOff', restarts: 4 },
      ],
    });
  });

  it('two restarts are not enough; minRestarts is the policy\'s', () => {
    expect(failsEarly([revision([pod('a', [crashLooping(2)])])], SETTINGS, NOW)).toBeUndefined();
    expect(failsEarly([revision([pod('a', [crashLooping(2)])])], { ...SETTINGS, minRestarts: 2 }, NOW)?.signal).toBe('CrashLoopBackOff');
  });

  it('a revision with one pod Ready and one crash-looping is left to Argo CD', () => {
    expect(failsEarly([revision([pod('a', [running()], { ready: true }), pod('b', [crashLooping(9)])])], SETTINGS, NOW)).toBeUndefined();
  });

  it('a release that crashed twice and then ran is not failing', () => {
    expect(failsEarly([revision([pod('a', [running(2)], { ready: true })])], SETTINGS, NOW)).toBeUndefined();
  });

  it('an image that cannot be pulled fails once it waited waitingSeconds since the pod started, however ErrImagePull and ImagePullBackOff alternate', () => {
    expect(failsEarly([revision([pod('a', [waitingIn('ImagePullBackOff')], { startedSecondsAgo: 59 })])], SETTINGS, NOW)).toBeUndefined();
    const early = failsEarly([revision([pod('a', [waitingIn('ErrImagePull')], { startedSecondsAgo: 61 })])], SETTINGS, NOW);
    expect(early?.signal).toBe('ErrImagePull');
    expect(early?.pods[0]).toMatchObject({ reason: 'ErrImagePull', restarts: 0, waitingSeconds: 61 });
    expect(early?.detail).toContain('a/web: ErrImagePull, 0 restarts, waiting 61 s');
  });

  it('a slow pull (ContainerCreating) never fails, however long it takes', () => {
    expect(failsEarly([revision([pod('a', [waitingIn('ContainerCreating')], { startedSecondsAgo: 3600 })])], SETTINGS, NOW)).toBeUndefined();
  });

  it('CreateContainerConfigError and InvalidImageName count like a failed pull', () => {
    for (const reason of ['CreateContainerConfigError', 'InvalidImageName']) {
      expect(failsEarly([revision([pod('a', [waitingIn(reason)], { startedSecondsAgo: 90 })])], SETTINGS, NOW)?.signal).toBe(reason);
    }
  });

  it('a container that ran before waits from its last termination, not from its pod\'s start', () => {
    const c: ContainerFacts = { name: 'web', ready: false, restartCount: 1, waiting: { reason: 'CreateContainerError' }, lastTerminated: { reason: 'Error', finishedAt: ago(20) } };
    expect(failsEarly([revision([pod('a', [c], { startedSecondsAgo: 600 })])], SETTINGS, NOW)).toBeUndefined();
  });

  it('a container without a known start is never judged by its wait', () => {
    expect(failsEarly([revision([{ name: 'a', ready: false, containers: [waitingIn('ImagePullBackOff')] }])], SETTINGS, NOW)).toBeUndefined();
  });

  it('OOMKilled minRestarts times fails, running between kills or waiting in a back-off', () => {
    const oom = (restartCount: number, state: Partial<ContainerFacts> = {}): ContainerFacts => ({
      name: 'web', ready: false, restartCount, lastTerminated: { reason: 'OOMKilled', exitCode: 137, finishedAt: ago(3) }, ...state,
    });
    expect(failsEarly([revision([pod('a', [oom(3)])])], SETTINGS, NOW)?.signal).toBe('OOMKilled');
    expect(failsEarly([revision([pod('a', [oom(3, { waiting: { reason: 'CrashLoopBackOff' } })])])], SETTINGS, NOW)?.signal).toBe('OOMKilled');
    // Terminated now, two restarts before: the third kill.
    expect(failsEarly([revision([pod('a', [oom(2, { terminated: { reason: 'OOMKilled', exitCode: 137 } })])])], SETTINGS, NOW)?.signal).toBe('OOMKilled');
    expect(failsEarly([revision([pod('a', [oom(1)])])], SETTINGS, NOW)).toBeUndefined();
  });

  it('an init container crash-looping fails the pod too', () => {
    const init: ContainerFacts = { ...crashLooping(5), name: 'migrate', init: true };
    expect(failsEarly([revision([pod('a', [init, waitingIn('PodInitializing')])])], SETTINGS, NOW)?.pods).toEqual([
      { workload: 'Deployment/web', pod: 'a', container: 'migrate', reason: 'CrashLoopBackOff', restarts: 5 },
    ]);
  });

  it('a StatefulSet\'s updateRevision is named as its revision', () => {
    const early = failsEarly([revision([pod('db-0', [crashLooping(3)])], { kind: 'StatefulSet', name: 'db', revision: 'db-5c9f7' })], SETTINGS, NOW);
    expect(early?.detail).toMatch(/^the current revision of StatefulSet\/db \(revision db-5c9f7\) fails early: db-0\/web: CrashLoopBackOff/);
  });

  it('names the workload before each container when two workloads fail', () => {
    const early = failsEarly([
      revision([pod('web-1', [crashLooping(3)])]),
      revision([pod('db-0', [waitingIn('ImagePullBackOff')], { startedSecondsAgo: 70 })], { kind: 'StatefulSet', name: 'db', revision: 'db-5c9f7' }),
    ], SETTINGS, NOW);
    expect(early?.detail).toBe('the current revision of Deployment/web (revision 7d9f8c6b5), StatefulSet/db (revision db-5c9f7) fails early: '
      + 'Deployment/web web-1/web: CrashLoopBackOff, 3 restarts; StatefulSet/db db-0/web: ImagePullBackOff, 0 restarts, waiting 70 s');
    expect(early?.signal).toBe('CrashLoopBackOff');
  });

  it('says nothing when disabled, with no workload, or with no pod of the current revision yet', () => {
    const bad = [revision([pod('a', [crashLooping(5)])])];
    expect(failsEarly(bad, { ...SETTINGS, enabled: false }, NOW)).toBeUndefined();
    expect(failsEarly(bad, undefined, NOW)).toBeUndefined();
    expect(failsEarly([], SETTINGS, NOW)).toBeUndefined();
    expect(failsEarly([revision([])], SETTINGS, NOW)).toBeUndefined();
  });

  it('keeps at most MAX_EVIDENCE containers, sorted, and names three in the detail', () => {
    const pods = Array.from({ length: 15 }, (_, i) => pod(`web-${String(i).padStart(2, '0')}`, [crashLooping(3 + i)]));
    const early = failsEarly([revision(pods.reverse())], SETTINGS, NOW)!;
    expect(early.pods).toHaveLength(MAX_EVIDENCE);
    expect(early.pods[0]!.pod).toBe('web-00');
    expect(early.detail).toMatch(/; 12 more container\(s\)$/);
  });

  // ---- properties --------------------------------------------------------------------------

  const container: fc.Arbitrary<ContainerFacts> = fc.record({
    name: fc.constantFrom('web', 'sidecar'),
    ready: fc.boolean(),
    restartCount: fc.integer({ min: 0, max: 20 }),
    waiting: fc.option(fc.record({ reason: fc.constantFrom('CrashLoopBackOff', 'ImagePullBackOff', 'ErrImagePull', 'ContainerCreating', 'CreateContainerConfigError', 'PodInitializing') }), { nil: undefined }),
    lastTerminated: fc.option(fc.record({ reason: fc.constantFrom('Error', 'OOMKilled', 'Completed'), finishedAt: fc.integer({ min: 0, max: 600 }).map(ago) }), { nil: undefined }),
  }, { requiredKeys: ['name', 'ready', 'restartCount'] });
  const pods = fc.array(fc.record({
    name: fc.string({ minLength: 1, maxLength: 5 }),
    ready: fc.boolean(),
    startedAt: fc.integer({ min: 0, max: 600 }).map(ago),
    containers: fc.array(container, { minLength: 1, maxLength: 3 }),
  }), { maxLength: 5 });
  const settings = fc.record({ enabled: fc.constant(true), minRestarts: fc.integer({ min: 1, max: 10 }), waitingSeconds: fc.integer({ min: 1, max: 600 }) });

  it('property: a revision with a Ready pod never fails; one without fails exactly when some container gives evidence', () => {
    fc.assert(fc.property(pods, settings, (list, s) => {
      const early = failsEarly([revision(list)], s, NOW);
      if (list.some((p) => p.ready)) return early === undefined;
      const any = list.some((p) => p.containers.some((c) => containerEvidence(c, p, 'Deployment/web', s, NOW) !== undefined));
      return (early !== undefined) === any && (early === undefined || early.signal === early.pods[0]!.reason);
    }), { numRuns: 500 });
  });

  it('property: more restarts or a longer wait never turn a failing revision into a passing one (monotone)', () => {
    fc.assert(fc.property(pods, settings, fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 600 }), (list, s, more, later) => {
      const before = failsEarly([revision(list)], s, NOW);
      const after = failsEarly([revision(list.map((p) => ({ ...p, containers: p.containers.map((c) => ({ ...c, restartCount: c.restartCount + more })) })))], s, new Date(NOW.getTime() + later * 1000));
      return before === undefined || after !== undefined;
    }), { numRuns: 500 });
  });

  it('property: a higher minRestarts or waitingSeconds never fails a revision that a lower one passes', () => {
    fc.assert(fc.property(pods, settings, fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 300 }), (list, s, dr, dw) => {
      const strict = failsEarly([revision(list)], { ...s, minRestarts: s.minRestarts + dr, waitingSeconds: s.waitingSeconds + dw }, NOW);
      return strict === undefined || failsEarly([revision(list)], s, NOW) !== undefined;
    }), { numRuns: 500 });
  });

  it('property: other revisions never matter — only the ones handed in are judged', () => {
    fc.assert(fc.property(pods, pods, settings, (mine, others, s) => {
      const alone = failsEarly([revision(mine)], s, NOW);
      const withHealthyOther = failsEarly([revision(mine), revision(others.map((p) => ({ ...p, ready: true })), { name: 'api' })], s, NOW);
      return (alone === undefined) === (withHealthyOther === undefined);
    }), { numRuns: 300 });
  });
});
