// RollbackAttempt objects on the Kubernetes API: the window onto the etcd record.
// The operator creates one per attempt and rewrites its status from the record
// (never the other way round); humans steer attempts through its annotations,
// which the watch (kube/watch.ts) follows so an annotation wakes the app's
// reconcile at once. Every request goes through call().
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { ANNOTATIONS, API_VERSION, GROUP, KINDS, LABELS, OPERATOR_ANNOTATIONS, PLURALS, VERSION } from '../api/group.ts';
import { attemptName, labelValue, type AppRef, type AttemptRecord } from '../fsm/record.ts';
import { inProgress } from '../fsm/table.ts';
import type { Logger } from '../observability/log.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { AttemptObjectCleanupPort, AttemptObjectsPort, EndedAttemptObject, HumanRequests } from '../ports/kubernetes.ts';
import { call, classifyHttpError } from './call.ts';
import { customObjectSource, type CustomObjectsOptions } from './kube/custom-objects.ts';
import { Watch } from './kube/watch.ts';

const PLURAL = PLURALS.attempt;

interface RollbackAttemptObject extends KubernetesObject {
  spec?: { application: { name: string; namespace: string }; correlationId: string; approvers?: { users?: string[]; groups?: string[] } };
  status?: Record<string, unknown>;
}

const truncate = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/**
 * RollbackAttempt.status from the etcd record (SPEC §3), of the object's
 * `generation` (left out while unknown: a merge patch then keeps the last one). Pure.
 */
export function statusOf(record: AttemptRecord, generation?: number): Record<string, unknown> {
  // The `Active` condition: True while the machine works on the attempt (an aborted one holds the app but waits).
  const active = inProgress(record.state);
  return {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    phase: record.state,
    reason: record.reason,
    message: truncate(record.message, 32_000),
    degradation: record.degradation,
    ...(record.currentRevision ? { currentRevision: record.currentRevision } : {}),
    ...(record.rolledBackFrom ? { rolledBackFrom: record.rolledBackFrom } : {}),
    ...(record.candidate ? {
      candidate: {
        revision: record.candidate.revision,
        shortRevision: record.candidate.shortRevision,
        ...(record.candidate.uptime !== null ? { uptime: record.candidate.uptime } : {}),
        evidence: truncate(record.candidate.evidence, 4096),
        ciState: record.candidate.ciState,
        ...(record.candidate.deploymentId !== undefined ? { deploymentId: record.candidate.deploymentId } : {}),
        // The schema's bounds: a set longer than 256 paths is summed up in the PR body, which lists them all.
        ...(record.candidate.paths ? { paths: record.candidate.paths.slice(0, 256).map((p) => truncate(p, 1024)) } : {}),
      },
    } : {}),
    ...(record.affected ? {
      affectedApplications: record.affected.slice(0, 256).map((a) => ({ namespace: a.namespace, name: a.name, environment: a.environment, paths: a.paths.slice(0, 64).map((p) => truncate(p, 1024)) })),
    } : {}),
    ...(record.pullRequest ? { pullRequest: { ...record.pullRequest, ref: `#${record.pullRequest.number}`, ...(record.rollbackCommit ? { rollbackCommit: record.rollbackCommit.sha } : {}) } } : {}),
    invariants: record.invariants.map((i) => ({ ...i, detail: truncate(i.detail, 2048) })),
    ...(record.approval ? { approval: record.approval } : {}),
    transitions: record.transitions.slice(-64),
    conditions: conditionsOf(record, active),
  };
}

const apiTime = (at: string) => at.replace(/\.\d{3}Z$/, 'Z');

/** `Active`, and `Approved` once a production approval was recorded or refused. */
function conditionsOf(record: AttemptRecord, active: boolean): Array<Record<string, unknown>> {
  const conditions: Array<Record<string, unknown>> = [{
    type: 'Active',
    status: active ? 'True' : 'False',
    reason: record.reason,
    message: truncate(record.message || record.reason, 32_000),
    lastTransitionTime: apiTime(record.since),
  }];
  if (record.approvalBlocked && !record.approval) {
    conditions.push({ type: 'Approved', status: 'False', reason: 'ApprovalNotEnforced', message: truncate(`no approval is recorded while the API server does not enforce who may approve: ${record.approvalBlocked}`, 32_000), lastTransitionTime: apiTime(record.since) });
  } else if (record.approval) {
    const commit = record.approval.commitSha ? ` for ${record.approval.commitSha.slice(0, 7)}` : '';
    conditions.push({ type: 'Approved', status: 'True', reason: 'ApprovalRecorded', message: `approved by ${record.approval.approvedBy}${commit}`, lastTransitionTime: apiTime(record.approval.approvedAt) });
  } else if (record.approvalWithdrawn && (!record.approvalRefused || record.approvalRefused.at <= record.approvalWithdrawn.at)) {
    const withdrawn = record.approvalWithdrawn;
    conditions.push({ type: 'Approved', status: 'False', reason: 'ApprovalWithdrawn', message: truncate(`the approval by ${withdrawn.approvedBy} was withdrawn before the merge: ${withdrawn.detail}`, 32_000), lastTransitionTime: apiTime(withdrawn.at) });
  } else if (record.approvalRefused) {
    const refused = record.approvalRefused;
    conditions.push({ type: 'Approved', status: 'False', reason: 'ApprovalRefused', message: truncate(`approval by ${refused.username || '(empty)'} refused: ${refused.detail}`, 32_000), lastTransitionTime: apiTime(refused.at) });
  }
  return conditions;
}

export interface RollbackAttemptObjectsOptions extends CustomObjectsOptions {
  clock?: () => Date;
  /** The installation's store label value (storeLabel(ETCD_PREFIX)), set on every object it creates. */
  store?: string;
}

/** The value of LABELS.store for an etcd prefix: a digest, since a prefix holds slashes a label value may not. */
export function storeLabel(etcdPrefix: string): string {
  return createHash('sha256').update(`etcd:${etcdPrefix}`).digest('hex').slice(0, 16);
}

export class RollbackAttemptObjects implements AttemptObjectsPort, AttemptObjectCleanupPort {
  private readonly api: CustomObjectsApi;
  private readonly watch: Watch<RollbackAttemptObject>;
  private readonly log: Logger;
  private readonly options: RollbackAttemptObjectsOptions;
  /** Last status written per object, so an unchanged projection costs no request. */
  private readonly written = new Map<string, string>();
  /**
   * When this process first saw each object's current approve value appear (live, on the watch). Only
   * the watch can say when a value appeared: managedFields times are written by clients, so a patch can
   * set them to anything. A value first seen in a list (at start, or a relist after a gap) appeared at
   * some unknown time while nobody watched: its `at` is unknown.
   */
  private readonly approvalsSeen = new Map<string, { value: string; at?: string }>();
  private readonly clock: () => Date;
  /** uid and generation of objects this process created, until the watch has them (bounded by the attempts in flight). */
  private readonly created = new Map<string, { uid?: string; generation?: number }>();

  constructor(kc: KubeConfig, log: Logger, onRequest: (appKey: { namespace: string; name: string }) => void, options: RollbackAttemptObjectsOptions = {}) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.log = log;
    this.options = options;
    this.clock = options.clock ?? (() => new Date());
    this.watch = new Watch<RollbackAttemptObject>({
      kind: KINDS.attempt, log, relistIntervalMs: options.relistIntervalMs, backoffMs: options.restartBackoffMs,
      source: customObjectSource({
        kubeConfig: kc, resource: { group: GROUP, version: VERSION, plural: PLURAL },
        calls: { list: 'listRollbackAttempts', watch: 'watchRollbackAttempts' },
        metrics: options.metrics, timeoutMs: options.timeoutMs, backoffMs: options.backoffMs,
      }),
    });
    this.watch.on((event) => {
      if (event.type === 'relisted') return;
      const object = event.object;
      if (event.type === 'deleted') return void this.forget(`${object.metadata?.namespace}/${object.metadata?.name}`);
      this.noteApproval(object, event.listed === true);
      const app = object.spec?.application;
      if (app && hasRequests(object)) onRequest(app);
    });
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  /** Everything kept about an object that is gone. */
  private forget(key: string): void {
    this.approvalsSeen.delete(key);
    this.written.delete(key);
    this.created.delete(key);
  }

  /** How many entries each per-object memory holds (a test shows they return to where they were). */
  memorySizes(): Record<string, number> {
    return { written: this.written.size, approvalsSeen: this.approvalsSeen.size, created: this.created.size };
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  async project(record: AttemptRecord, options: { final?: boolean } = {}): Promise<void> {
    const name = attemptName(record.app, record.correlationId);
    const namespace = record.app.namespace;
    const key = `${namespace}/${name}`;
    const generation = () => this.watch.get(namespace, name)?.metadata?.generation ?? this.created.get(key)?.generation;
    let status = statusOf(record, generation());
    if (this.written.get(key) === JSON.stringify(status)) return;
    if (!this.watch.get(namespace, name)) {
      await this.ensureExists(record, name, namespace);
      status = statusOf(record, generation());
    }
    const serialised = JSON.stringify(status);
    await this.call('patchRollbackAttemptStatus', () => this.api.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ));
    // Remember only what may still change: an ended or released attempt (an Abort that freed its app) is
    // never projected again, so the map is bounded by the apps that hold an attempt.
    if (options.final || record.state === 'Idle' || record.state === 'RollbackComplete') this.written.delete(key);
    else this.written.set(key, serialised);
  }

  async markStalled(target: { app: AppRef; correlationId: string }, reason: string, message: string): Promise<void> {
    const name = attemptName(target.app, target.correlationId);
    const namespace = target.app.namespace;
    const object = this.watch.get(namespace, name) ?? await this.read(namespace, name);
    if (!object) return;
    const others = ((object.status?.conditions ?? []) as Array<{ type?: string }>).filter((c) => c.type !== 'Stalled');
    const stalled = { type: 'Stalled', status: 'True', reason, message: truncate(message, 32_000), lastTransitionTime: apiTime(this.clock().toISOString()) };
    await this.call('patchRollbackAttemptStatus', () => this.api.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status: { conditions: [...others, stalled] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ));
    // The next projection must write again, and so clear the condition once the attempt moves.
    this.written.delete(`${namespace}/${name}`);
  }

  async requests(record: AttemptRecord): Promise<HumanRequests> {
    const name = attemptName(record.app, record.correlationId);
    const object = this.watch.get(record.app.namespace, name) ?? await this.read(record.app.namespace, name);
    const requests = requestsOf(object);
    if (requests.approve === undefined) return requests;
    // An object someone else made under this name (deleted and re-created) names other approvers: its approval is not this attempt's.
    if (!sameApprovers(object?.spec?.approvers, record.settings.approvers) || object?.spec?.correlationId !== record.correlationId) {
      this.log.warn('Ignored an approval on a RollbackAttempt whose spec is not the attempt\'s', { correlationId: record.correlationId, name, namespace: record.app.namespace });
      const { approve: _ignored, ...rest } = requests;
      return rest;
    }
    const seen = this.approvalsSeen.get(`${record.app.namespace}/${name}`);
    const created = object?.metadata?.creationTimestamp;
    return {
      ...requests,
      ...(seen?.value === requests.approve && seen.at ? { approveWrittenAt: seen.at } : {}),
      // Set by the API server, never by a client: enforcement unbroken since before it means every write was checked.
      ...(created ? { objectCreatedAt: new Date(created as unknown as string).toISOString() } : {}),
    };
  }

  /** Remembers when the watch first showed an object's current approve value (unknown when first seen in a list). */
  private noteApproval(object: RollbackAttemptObject, listed: boolean): void {
    const key = `${object.metadata?.namespace}/${object.metadata?.name}`;
    const value = object.metadata?.annotations?.[ANNOTATIONS.approve];
    if (value === undefined) this.approvalsSeen.delete(key);
    else if (this.approvalsSeen.get(key)?.value !== value) this.approvalsSeen.set(key, listed ? { value } : { value, at: this.clock().toISOString() });
  }

  uidOf(record: AttemptRecord): string | undefined {
    const name = attemptName(record.app, record.correlationId);
    return this.watch.get(record.app.namespace, name)?.metadata?.uid ?? this.created.get(`${record.app.namespace}/${name}`)?.uid;
  }

  async removeApproval(record: AttemptRecord): Promise<void> {
    const name = attemptName(record.app, record.correlationId);
    await this.call('removeRollbackAttemptApproval', () => this.api.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: record.app.namespace, plural: PLURAL, name, body: { metadata: { annotations: { [ANNOTATIONS.approve]: null } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ));
    this.log.warn('Removed an approve annotation the API server did not check', { correlationId: record.correlationId, name, namespace: record.app.namespace });
  }

  endedObjects(): EndedAttemptObject[] {
    const ended: EndedAttemptObject[] = [];
    for (const object of this.watch.list()) {
      const { namespace, name, uid, resourceVersion, labels, annotations } = object.metadata ?? {};
      const active = ((object.status?.conditions ?? []) as Array<{ type?: string; status?: string; lastTransitionTime?: string }>).find((c) => c.type === 'Active');
      const correlationId = object.spec?.correlationId;
      // One object with a timestamp that does not parse is left out, not every sweep failed over it.
      if (!namespace || !name || !uid || !resourceVersion || !correlationId || active?.status !== 'False' || !active.lastTransitionTime || Number.isNaN(Date.parse(active.lastTransitionTime))) continue;
      const store = labels?.[LABELS.store];
      const branch = annotations?.[OPERATOR_ANNOTATIONS.branch];
      const pr = object.status?.pullRequest as EndedAttemptObject['pullRequest'] | undefined;
      const transitions = (object.status?.transitions ?? []) as Array<{ reason?: string }>;
      ended.push({
        namespace, name, uid, resourceVersion, correlationId, endedAt: new Date(active.lastTransitionTime).toISOString(),
        ours: store === undefined ? undefined : store === this.options.store, ...(branch !== undefined ? { branch } : {}),
        ...(pr && typeof pr.number === 'number' && typeof pr.url === 'string' && typeof pr.branch === 'string' ? {
          pullRequest: { number: pr.number, url: pr.url, branch: pr.branch, state: pr.state, ...(typeof pr.rollbackCommit === 'string' ? { rollbackCommit: pr.rollbackCommit } : {}) },
        } : {}),
        closedByPerson: transitions.some((t) => t.reason === 'PullRequestClosed'),
      });
    }
    return ended;
  }

  async noteBranch(object: Pick<EndedAttemptObject, 'namespace' | 'name' | 'uid'>, outcome: string, options: { label: boolean }): Promise<void> {
    const { namespace, name, uid } = object;
    await this.call('noteRollbackAttemptBranch', () => this.api.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: {
        metadata: { uid, annotations: { [OPERATOR_ANNOTATIONS.branch]: truncate(outcome, 1024) }, ...(options.label && this.options.store ? { labels: { [LABELS.store]: this.options.store } } : {}) },
      } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ));
  }

  async deleteObject(object: Pick<EndedAttemptObject, 'namespace' | 'name' | 'uid'>): Promise<void> {
    const { namespace, name, uid } = object;
    try {
      // The uid precondition: an object re-created under the same name since is not this one.
      await this.call('deleteRollbackAttempt', () => this.api.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { preconditions: { uid } } }));
      this.log.info('Deleted RollbackAttempt', { name, namespace, reason: 'RetentionExpired' });
    } catch (error) {
      if (!(error instanceof IntegrationError && error.code === 'NOT_FOUND')) throw error;
    }
    this.forget(`${namespace}/${name}`);
  }

  private async read(namespace: string, name: string): Promise<RollbackAttemptObject | undefined> {
    try {
      return await this.call('getRollbackAttempt', () => this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name })) as RollbackAttemptObject;
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  private async ensureExists(record: AttemptRecord, name: string, namespace: string): Promise<void> {
    const body = {
      apiVersion: API_VERSION,
      kind: KINDS.attempt,
      // A label value holds 63 characters; an Application's name may have 253 (spec.application keeps it whole).
      metadata: {
        name, namespace,
        labels: { [LABELS.application]: labelValue(record.app.name), [LABELS.environment]: record.environment, ...(this.options.store ? { [LABELS.store]: this.options.store } : {}) },
      },
      spec: {
        application: record.app,
        environment: record.environment,
        correlationId: record.correlationId,
        ...(record.policyRef ? { policyRef: record.policyRef } : {}),
        // The admission policy decides from the request alone who may approve: it reads them here (spec is immutable).
        approvers: { users: record.settings.approvers.users, groups: record.settings.approvers.groups },
      },
    };
    try {
      const created = await this.call('createRollbackAttempt', () => this.api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, body })) as RollbackAttemptObject;
      // Until the watch shows it; past a few hundred, the oldest are the watch's by now.
      if (this.created.size >= 1000) this.created.delete(this.created.keys().next().value!);
      this.created.set(`${namespace}/${name}`, { uid: created.metadata?.uid, generation: created.metadata?.generation });
      this.log.info('Created RollbackAttempt', { correlationId: record.correlationId, name, namespace });
    } catch (error) {
      // Already there (an earlier try landed, or the watch has not shown it yet).
      if (!(error instanceof IntegrationError && error.code === 'CONFLICT')) throw error;
    }
  }

  private call<T>(name: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return call(name, run, { classify: classifyHttpError, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}

function hasRequests(object: RollbackAttemptObject): boolean {
  const a = object.metadata?.annotations ?? {};
  return ANNOTATIONS.approve in a || ANNOTATIONS.reset in a || ANNOTATIONS.abort in a;
}

function sameApprovers(a: { users?: string[]; groups?: string[] } | undefined, b: { users: string[]; groups: string[] }): boolean {
  const same = (x: string[] = [], y: string[]) => x.length === y.length && [...x].sort().every((v, i) => v === [...y].sort()[i]);
  return same(a?.users, b.users) && same(a?.groups, b.groups);
}

export function requestsOf(object: KubernetesObject | undefined): HumanRequests {
  const a = object?.metadata?.annotations ?? {};
  return {
    ...(a[ANNOTATIONS.approve] !== undefined ? { approve: a[ANNOTATIONS.approve] } : {}),
    ...(a[ANNOTATIONS.reset] === 'true' ? { reset: true } : {}),
    ...(a[ANNOTATIONS.abort] !== undefined ? { abort: a[ANNOTATIONS.abort] } : {}),
  };
}
