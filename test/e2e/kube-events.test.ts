// Kubernetes Events on the real API server: what the recorder writes through
// events.k8s.io/v1 is what `kubectl get events` and Argo CD's UI read, a repeat
// becomes one Event's series, and another note another Event.
import { CoreV1Api, CustomObjectsApi, EventsV1Api, type EventsV1Event } from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { kubeEventRecorder, REPORTING_CONTROLLER, type KubeEventRecorder } from '../../src/integrations/kube-events.ts';
import { createLogger } from '../../src/observability/log.ts';
import { METRIC, Metrics } from '../../src/observability/metrics.ts';
import type { EventObjectRef, KubeEvent } from '../../src/ports/kubernetes.ts';
import { freshNamespace, kubeConfig, kubectlOk } from './support/kube.ts';

const stack = inject('stack');

describe('Kubernetes Events recorder on the real API server', () => {
  let namespace: string;
  let app: EventObjectRef;
  let appUid: string;
  let recorder: KubeEventRecorder;
  let metrics: Metrics;
  const logLines: Array<Record<string, unknown>> = [];
  const events = () => kubeConfig(stack).makeApiClient(EventsV1Api);

  const refused = (note: string): KubeEvent => ({
    regarding: app, type: 'Warning', reason: 'NothingToRollBack', action: 'Abort', note,
  });

  async function listEvents(): Promise<EventsV1Event[]> {
    return (await events().listNamespacedEvent({ namespace })).items;
  }

  beforeAll(async () => {
    // Given an Argo CD Application in a fresh namespace, and a recorder that is not told its uid.
    namespace = await freshNamespace(stack, 'kube-events');
    const objects = kubeConfig(stack).makeApiClient(CustomObjectsApi);
    const created = await objects.createNamespacedCustomObject({
      group: 'argoproj.io', version: 'v1alpha1', plural: 'applications', namespace,
      body: {
        apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'payment-service', namespace },
        spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/payment', targetRevision: 'main' }, destination: { namespace: 'payments' } },
      },
    }) as { metadata: { uid: string } };
    appUid = created.metadata.uid;
    app = { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', namespace, name: 'payment-service' };
    metrics = new Metrics();
    recorder = kubeEventRecorder(kubeConfig(stack), {
      instance: 'ai-operator-e2e-0', metrics,
      log: createLogger('DEBUG', {}, (line) => logLines.push(JSON.parse(line) as Record<string, unknown>)),
    });
  });

  it('writes an events.k8s.io/v1 Event on the Application, with its uid looked up', async () => {
    // When the operator emits one Event and flushes.
    recorder.emit(refused('apps/payment on main already matches 0123abc; the degradation is not in Git'));
    await recorder.flush();

    // Then the API server holds exactly that Event.
    const [event, ...others] = await listEvents();
    expect(others).toEqual([]);
    expect(event).toMatchObject({
      type: 'Warning',
      reason: 'NothingToRollBack',
      action: 'Abort',
      note: 'apps/payment on main already matches 0123abc; the degradation is not in Git',
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: 'ai-operator-e2e-0',
      regarding: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', namespace, name: 'payment-service', uid: appUid },
    });
    expect(event!.series).toBeUndefined();
    expect(event!.metadata?.name).toMatch(/^payment-service\.[0-9a-f]+$/);
    // eventTime is a MicroTime; the API server kept its microseconds.
    const raw = await kubectlOk(stack, ['get', 'events.v1.events.k8s.io', '-n', namespace, event!.metadata!.name!, '-o', 'jsonpath={.eventTime}']);
    expect(raw).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('is found by the query Argo CD\'s UI makes for an Application (core/v1, involvedObject name + namespace + uid)', async () => {
    const core = kubeConfig(stack).makeApiClient(CoreV1Api);
    const found = await core.listNamespacedEvent({
      namespace, fieldSelector: `involvedObject.name=payment-service,involvedObject.namespace=${namespace},involvedObject.uid=${appUid}`,
    });
    expect(found.items.map((e) => [e.reason, e.message, e.type, e.reportingComponent])).toEqual([
      ['NothingToRollBack', 'apps/payment on main already matches 0123abc; the degradation is not in Git', 'Warning', REPORTING_CONTROLLER],
    ]);
  });

  it('turns the same Event twice more into one Event with series.count 3, and another note into a second Event', async () => {
    // When the same Event is emitted twice more (each written on its own), then one with another note.
    recorder.emit(refused('apps/payment on main already matches 0123abc; the degradation is not in Git'));
    await recorder.flush();
    recorder.emit(refused('apps/payment on main already matches 0123abc; the degradation is not in Git'));
    await recorder.flush();
    recorder.emit(refused('apps/payment on main already matches 4567def; the degradation is not in Git'));
    await recorder.flush();

    // Then there are two Events: the first with a series of 3, the second new.
    const byNote = new Map((await listEvents()).map((e) => [e.note, e]));
    expect(byNote.size).toBe(2);
    const repeated = byNote.get('apps/payment on main already matches 0123abc; the degradation is not in Git')!;
    expect(repeated.series?.count).toBe(3);
    expect(new Date(repeated.series!.lastObservedTime).getTime()).toBeGreaterThanOrEqual(new Date(repeated.eventTime).getTime());
    const other = byNote.get('apps/payment on main already matches 4567def; the degradation is not in Git')!;
    expect(other.series).toBeUndefined();
    expect(other.regarding?.uid).toBe(appUid);

    // And the metric tells created from updated.
    const values = (await metrics.registry.getSingleMetric(METRIC.kubeEvents)!.get()).values;
    expect(Object.fromEntries(values.map((v) => [v.labels.result, v.value]))).toEqual({ created: 2, updated: 2 });
    expect(logLines.filter((l) => l.level === 'WARN')).toEqual([]);

    // And kubectl shows them as a human sees them.
    const table = await kubectlOk(stack, ['get', 'events', '-n', namespace, '--sort-by=.metadata.creationTimestamp']);
    console.info(`kubectl get events -n ${namespace}\n${table}`);
    const rows = table.trim().split('\n');
    expect(rows[0]).toMatch(/LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE/);
    expect(rows.slice(1)).toHaveLength(2);
    for (const row of rows.slice(1)) expect(row).toMatch(/Warning\s+NothingToRollBack\s+application\/payment-service\s+apps\/payment on main already matches/);
    // -o wide adds the COUNT column, which kubectl reads from series.count.
    const wide = await kubectlOk(stack, ['get', 'events', '-n', namespace, '-o', 'wide', '--sort-by=.metadata.creationTimestamp']);
    console.info(`kubectl get events -n ${namespace} -o wide\n${wide}`);
    expect(wide).toMatch(/0123abc; the degradation is not in Git\s+\S+\s+3\s+payment-service\.[0-9a-f]+\n/);
    expect(wide).toMatch(/4567def; the degradation is not in Git\s+\S+\s+1\s+payment-service\.[0-9a-f]+\n/);
  });

  it('writes an Event on a RollbackAttempt with the uid it is given and the Application as related', async () => {
    const objects = kubeConfig(stack).makeApiClient(CustomObjectsApi);
    const attempt = await objects.createNamespacedCustomObject({
      group: 'ai-operator.io', version: 'v1alpha1', plural: 'rollbackattempts', namespace,
      body: {
        apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt', metadata: { name: 'payment-service-1f3a9c2e', namespace },
        spec: { application: { name: 'payment-service', namespace }, environment: 'production', correlationId: '1f3a9c2e-5b1c-4d2e-8f00-0123456789ab' },
      },
    }) as { metadata: { uid: string } };
    recorder.emit({
      regarding: { apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt', namespace, name: 'payment-service-1f3a9c2e', uid: attempt.metadata.uid },
      related: { ...app, uid: appUid },
      type: 'Warning', reason: 'ApprovalRefused', action: 'Approve', note: `mallory is not among the approvers of RollbackPolicy ${namespace}/production`,
    });
    await recorder.flush();
    const described = await kubectlOk(stack, ['describe', 'rollbackattempt', '-n', namespace, 'payment-service-1f3a9c2e']);
    expect(described).toMatch(/Warning\s+ApprovalRefused\s+.*ai-operator\.io\/operator.*mallory is not among the approvers/);
    const event = (await listEvents()).find((e) => e.reason === 'ApprovalRefused')!;
    expect(event.regarding?.uid).toBe(attempt.metadata.uid);
    expect(event.related).toMatchObject({ kind: 'Application', name: 'payment-service', uid: appUid });
  });
});
