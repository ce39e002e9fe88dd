// One valid event of each type, for tests here and elsewhere (and as a quick
// reference for what each event carries).
import { appSubject, makeEvent, type AppRef, type CloudEvent, type EventData, type EventType } from '../fsm/cloud-events.ts';

const app: AppRef = { namespace: 'argocd', name: 'payment-service' };
const base = { app, environment: 'staging' } as const;

export const EXAMPLE_DATA: EventData = {
  'degradation.detected': { ...base, healthStatus: 'Degraded', revision: 'b7c8d9e', checks: 1 },
  'degradation.confirmed': { ...base, checks: 3, firstSeenAt: '2026-02-27T10:29:30Z' },
  'degradation.cleared': { ...base, checks: 2, reason: 'TransientDegradation' },
  'candidate.resolved': { ...base, currentRevision: 'b7c8d9e', candidateRevision: 'a1b2c3d', uptime: 0.995, mode: 'metrics', evidence: 'uptime 0.995 over 24h' },
  'pr.created': { ...base, number: 42, url: 'https://github.example/acme/deploy/pull/42', branch: 'ai-operator/rollback/payment-service/a1b2c3d', adopted: false },
  'ci.completed': { ...base, number: 42, headSha: 'f00dbabe', state: 'success' },
  'merge.approved': { ...base, number: 42, approvedBy: 'ai-operator', auto: true },
  'pr.merged': { ...base, number: 42, mergeCommitSha: 'c0ffee1', autoMerged: true },
  'pr.closed': { ...base, number: 42, reason: 'HealthRestoredBeforeMerge' },
  'rollback.completed': { ...base, revision: 'a1b2c3d', recoverySeconds: 94.5 },
  'rollback.aborted': { ...base, fromState: 'PRCreated', reason: 'CIFailure', message: 'CI failed on the rollback pull request' },
  'fsm.transition': { ...base, from: 'Idle', to: 'DegradationDetected', reason: 'DegradationObserved', version: 1 },
};

export const EXAMPLE_CORRELATION_ID = '5b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d';

export function exampleEvent<T extends EventType>(type: T, overrides: { id?: string; correlationId?: string; app?: AppRef } = {}): CloudEvent<T> {
  const data = { ...EXAMPLE_DATA[type], ...(overrides.app ? { app: overrides.app } : {}) };
  return makeEvent(type, {
    subject: appSubject(data.app),
    correlationId: overrides.correlationId ?? EXAMPLE_CORRELATION_ID,
    time: '2026-02-27T10:30:00.123Z',
    data,
    ...(overrides.id ? { id: overrides.id } : {}),
  });
}
