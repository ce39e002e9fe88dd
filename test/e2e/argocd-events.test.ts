// What Argo CD's UI and `kubectl describe` show of a rollback: after a staging
// rollback by the real operator, one Kubernetes Event (events.k8s.io/v1) per
// transition on the Application and one on the RollbackAttempt, each with the
// transition's CamelCase reason, the PR's URL in its note once there is a PR, and
// the object's uid (Argo CD and kubectl describe select Events by it).
import { CustomObjectsApi, EventsV1Api, type EventsV1Event } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { attemptName, type AttemptRecord } from '../../src/fsm/record.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const transitionEvents = (events: EventsV1Event[], kind: string) =>
  events.filter((e) => e.regarding?.kind === kind && e.action?.startsWith('To'))
    .sort((a, b) => new Date(a.eventTime).getTime() - new Date(b.eventTime).getTime() || (a.metadata!.name! < b.metadata!.name! ? -1 : 1));

describe('Kubernetes Events of a staging rollback, as Argo CD and kubectl describe show them', () => {
  it('has one Event per transition on the Application and on the RollbackAttempt, with the reason and the PR URL', async () => {
    // Given a staging app rolled back by the operator
    const s = await givenRollbackScenario(stack, 'argocd-events', { environment: 'staging' }, stoppers);
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const record: AttemptRecord = await s.inState('RollbackComplete', 90_000);
    const url = record.pullRequest!.url;
    expect(url).toMatch(/^http/);

    const kc = kubeConfig(stack);
    const objects = kc.makeApiClient(CustomObjectsApi);
    const name = attemptName(record.app, record.correlationId);
    const app = await objects.getNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: s.namespace, plural: 'applications', name: s.app }) as { metadata: { uid: string } };
    const attempt = await objects.getNamespacedCustomObject({ group: 'ai-operator.io', version: 'v1alpha1', namespace: s.namespace, plural: 'rollbackattempts', name }) as { metadata: { uid: string } };

    // When the Events are all written (the recorder drains its queue in the background)
    const n = record.transitions.length;
    const events = await eventually('one transition Event per transition on each object', async () => {
      const all = (await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: s.namespace })).items;
      return transitionEvents(all, 'Application').length >= n && transitionEvents(all, 'RollbackAttempt').length >= n ? all : undefined;
    }, 30_000, 250);

    console.info(`kubectl get events -n ${s.namespace}\n${await kubectlOk(stack, ['get', 'events', '-n', s.namespace, '--sort-by=.metadata.creationTimestamp'])}`);
    const described = await kubectlOk(stack, ['describe', 'rollbackattempt', '-n', s.namespace, name]);
    console.info(`kubectl describe rollbackattempt -n ${s.namespace} ${name}\n${described}`);

    // Then each object has exactly one Event per transition, in order, with the transition's reason
    const expected = record.transitions.map((t) => ({ reason: t.reason, action: `To${t.to}`, type: t.to === 'Abort' ? 'Warning' : 'Normal' }));
    for (const [kind, uid] of [['Application', app.metadata.uid], ['RollbackAttempt', attempt.metadata.uid]] as const) {
      const mine = transitionEvents(events, kind);
      expect(mine.map((e) => ({ reason: e.reason, action: e.action, type: e.type })), kind).toEqual(expected);
      for (const [i, e] of mine.entries()) {
        const t = record.transitions[i]!;
        expect(e.reason).toMatch(/^[A-Z][A-Za-z0-9]*$/);
        expect(e.note).toMatch(new RegExp(`^${t.from} -> ${t.to}`));
        // The PR's URL from the transition that opened it on
        if (record.transitions.findIndex((x) => x.to === 'PRCreated') <= i) expect(e.note, `${kind} ${t.to}`).toContain(`(PR #${record.pullRequest!.number} ${url})`);
        else expect(e.note).not.toContain('PR #');
        // Selected by uid in Argo CD's UI (Application) and in kubectl describe (both)
        expect(e.regarding?.uid, `${kind} ${t.to} regarding.uid`).toBe(uid);
      }
    }
    expect(transitionEvents(events, 'RollbackAttempt').map((e) => e.related?.name)).toEqual(Array(n).fill(s.app));

    // And kubectl describe lists every transition's Event on the attempt
    const eventsSection = described.slice(described.indexOf('Events:'));
    for (const t of record.transitions) expect(eventsSection).toMatch(new RegExp(`Normal\\s+${t.reason}\\s+.*${t.from} -> ${t.to}`));
    expect(eventsSection).toContain(url);
  }, 180_000);
});
