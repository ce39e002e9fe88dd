// The running operator: leader election, the key queue and its reconciler, the
// outbox relay, and what wakes a key — the periodic resync, etcd watches, the
// RollbackAttempt informer and JetStream events. Only the leader reconciles and
// relays; standbys keep campaigning and are ready to take over.
import type { AuditLog } from './audit/audit-log.ts';
import { AuditOutbox } from './audit/outbox.ts';
import { PER_POD_CONSUMER_PREFIX, wakeConsumerName, type EventBus, type JetStreamBus, type EventConsumer } from './bus/jetstream.ts';
import { OutboxRelay } from './bus/outbox-relay.ts';
import { AttemptGauges } from './observability/attempt-gauges.ts';
import type { Logger } from './observability/log.ts';
import { storedGauges } from './observability/metrics.ts';
import { ApplicationReconciler, parseKey, WriteConflict, type ApplicationReconcilerDeps } from './reconcilers/application.ts';
import { AttemptCleanup } from './reconcilers/attempt-cleanup.ts';
import { KeyQueue, type ReconcileResult } from './reconcilers/queue.ts';
import type { ApplicationView } from './ports/argocd.ts';
import type { AttemptObjectCleanupPort } from './ports/kubernetes.ts';
import { API_VERSION, KINDS } from './api/group.ts';
import { appKey, attemptName, type AttemptRecord } from './fsm/record.ts';
import { repositoryRefusal } from './governance/repository.ts';
import type { ResetOutcome, ResetRequest } from './server/reset.ts';
import { AttemptStore, KEYS } from './store/attempt-store.ts';
import type { KV } from './store/kv.ts';
import { LeaderElector } from './store/leader.ts';

export interface OperatorOptions extends Pick<ApplicationReconcilerDeps, 'argocd' | 'github' | 'cluster' | 'history' | 'attempts' | 'monitoring' | 'metrics' | 'log' | 'argocdNamespace' | 'events' | 'allowedOwner' | 'githubHosts' | 'approvalEnforcement'> {
  kv: KV;
  bus: EventBus & Partial<Pick<JetStreamBus, 'consume'>>;
  audit: AuditLog;
  identity: string;
  argocdNamespace: string;
  leaderElection: boolean;
  /** The installation's durable JetStream consumer (wakeConsumerName of its etcd prefix); `ai-operator-wake` when not given. */
  eventConsumer?: string;
  /** Where an older version kept that consumer (the shared AI_OPERATOR stream): deleted there once idle. */
  retiredConsumer?: { stream: string; filterSubject: string };
  /**
   * Called before an app that may get an attempt is reconciled (Degraded, or its degradation being counted,
   * and no attempt of this installation's holds it): the claim an app without a policy needs is taken here.
   */
  prepare?: (app: ApplicationView) => Promise<void>;
  /**
   * Which Applications the resync queues: `monitoring` by default. With claims, also the apps another installation
   * or nobody has claimed yet: an app whose claim is still to be taken must be reconciled to take it.
   */
  resyncs?: (app: ApplicationView) => boolean;
  resyncIntervalMs?: number;
  relayIntervalMs?: number;
  leaderTtlSeconds?: number;
  concurrency?: number;
  /** Called by the leader after each resync with every watched Application (policy statuses). */
  afterResync?: (apps: ApplicationView[]) => Promise<void>;
  /** How long an ended attempt is kept (ATTEMPT_RETENTION, seconds): its record's lease; 7 days when not given. */
  retentionSeconds?: number;
  /**
   * The RollbackAttempt objects the leader cleans up (branches, expired objects): after each resync, and a few
   * seconds after an attempt lets go of its app. None when not given.
   */
  cleanupObjects?: AttemptObjectCleanupPort;
  /** How long after an attempt let go of its app its cleanup runs: by then its object shows it ended. */
  cleanupDelayMs?: number;
}

export class Operator {
  private readonly options: OperatorOptions;
  private readonly log: Logger;
  readonly leader?: LeaderElector;
  readonly store: AttemptStore;
  readonly queue: KeyQueue;
  readonly relay: OutboxRelay;
  /** This replica's audit records that etcd holds for its chain (every replica drains its own; the leader adopts). */
  readonly auditOutbox: AuditOutbox;
  private readonly reconciler: ApplicationReconciler;
  /** Rollback branches and expired RollbackAttempt objects of ended attempts, swept after each resync and soon after an attempt ends. */
  readonly cleanup?: AttemptCleanup;
  private resyncTimer?: NodeJS.Timeout;
  private stopWatch?: () => Promise<void>;
  /** The wake-up consumer, while leader: the installation has one durable consumer, and a standby must not take its messages. */
  private consumer?: Promise<EventConsumer | undefined>;
  private started = false;
  /** App keys with an active attempt, kept from the etcd watch. */
  private readonly active = new Set<string>();
  /** App keys whose degradation is being counted before any attempt (a health key). */
  private readonly pending = new Set<string>();
  private activeSynced = false;
  private activeChanges = 0;
  /**
   * Per app with an active attempt: that attempt, and why this replica may not carry it on (its repository is
   * outside this replica's GITHUB_ORG), read once per attempt; dropped when the app's active key changes.
   */
  private readonly attemptOrigins = new Map<string, { correlationId: string; refusal?: string }>();
  /** The attempt gauges, read from etcd by the leader at each resync and soon after each write. */
  private readonly gauges: AttemptGauges;
  private gaugesTimer?: NodeJS.Timeout;
  private cleanupTimer?: NodeJS.Timeout;
  private gaugesRunning?: Promise<void>;
  private gaugesAgain = false;

  constructor(options: OperatorOptions) {
    this.options = options;
    this.log = options.log.child('Operator');
    if (options.leaderElection) {
      this.leader = new LeaderElector(options.kv, options.identity, options.log.child('LeaderElection'), {
        ...(options.leaderTtlSeconds !== undefined ? { ttlSeconds: options.leaderTtlSeconds } : {}),
        onElected: () => this.onElected(),
        onDeposed: (why) => this.onDeposed(why),
      });
    }
    this.store = new AttemptStore(options.kv, this.leader ? () => this.leader!.fence() : undefined, undefined, options.retentionSeconds);
    if (options.cleanupObjects) {
      this.cleanup = new AttemptCleanup({
        store: this.store, github: options.github, objects: options.cleanupObjects, log: options.log.child('AttemptCleanup'), retentionSeconds: this.store.retentionSeconds,
      });
    }
    this.relay = new OutboxRelay({ store: this.store, bus: options.bus, log: options.log.child('OutboxRelay'), metrics: options.metrics, audit: options.audit });
    const auditChain = options.audit.chainId ?? options.identity;
    this.auditOutbox = new AuditOutbox({ store: this.store, audit: options.audit, chainId: auditChain, log: options.log.child('AuditOutbox') });
    this.reconciler = new ApplicationReconciler({
      store: this.store, argocd: options.argocd, github: options.github, cluster: options.cluster, history: options.history,
      attempts: options.attempts, monitoring: options.monitoring, audit: options.audit, auditChain, metrics: options.metrics,
      log: options.log.child('Reconciler'), argocdNamespace: options.argocdNamespace,
      ...(options.events ? { events: options.events } : {}), ...(options.allowedOwner ? { allowedOwner: options.allowedOwner } : {}), ...(options.githubHosts ? { githubHosts: options.githubHosts } : {}),
      ...(options.approvalEnforcement ? { approvalEnforcement: options.approvalEnforcement } : {}),
      onEventsWritten: () => {
        this.relay.wake();
        this.refreshGaugesSoon();
      },
      hasStoredState: (key) => (this.activeSynced ? this.active.has(key) || this.pending.has(key) : undefined),
    });
    this.queue = new KeyQueue((key) => this.reconcileAsLeader(key), options.log.child('Queue'), {
      concurrency: options.concurrency ?? 4, metrics: options.metrics.queue('application'),
    });
    this.gauges = new AttemptGauges(this.store);
  }

  // Only the leader reconciles. A write fenced out means leadership just moved:
  // no backoff then — the next leader's resync (ours, if re-elected) takes the key.
  private async reconcileAsLeader(key: string): Promise<ReconcileResult> {
    if (!this.isLeader()) return {};
    try {
      if (await this.leftAlone(key)) return {};
      return await this.reconciler.reconcile(key);
    } catch (error) {
      if (error instanceof WriteConflict && error.reason === 'fenced') {
        this.log.warn('Write fenced out: not the leader any more', { key });
        return {};
      }
      throw error;
    }
  }

  /**
   * What comes before the reconciler: true when this replica leaves the key alone. An attempt this replica could
   * not have started — its repository outside this replica's GITHUB_ORG (a replica of the same installation
   * configured for another org) — is not carried on with this replica's token: it is left as it is, in etcd
   * and on GitHub, for a replica whose GITHUB_ORG it is in, and that is said once. Aborting it instead would
   * need this token to close its PR, and would end for good an attempt the right replica can finish. Otherwise,
   * an app that may get an attempt is prepared (its claim, when no policy governs it).
   */
  private async leftAlone(key: string): Promise<boolean> {
    const ref = parseKey(key);
    const storeKey = appKey(ref, this.options.argocdNamespace);
    const active = this.activeSynced ? this.active.has(storeKey) : undefined;
    if (active !== false) {
      const origin = this.options.allowedOwner ? await this.attemptOrigin(storeKey, ref) : undefined;
      if (origin?.refusal) return true;
      // An attempt of this installation's holds the app: nothing to claim.
      if (origin || active === true) return false;
    }
    if (this.options.prepare) {
      const app = await this.options.argocd.getApplication(ref);
      if (app && (app.health === 'Degraded' || this.pending.has(storeKey))) await this.options.prepare(app);
    }
    return false;
  }

  /** The app's active attempt and whether this replica may carry it on; undefined when none is active. */
  private async attemptOrigin(storeKey: string, ref: { namespace: string; name: string }): Promise<{ correlationId: string; refusal?: string } | undefined> {
    const known = this.attemptOrigins.get(storeKey);
    if (known) return known;
    const { active } = await this.store.loadApp(storeKey);
    if (!active) return undefined;
    const { record } = active;
    const source = record.source ?? (await this.options.argocd.getApplication(ref))?.source;
    const refusal = repositoryRefusal(source, this.options.allowedOwner, this.options.githubHosts);
    const origin = { correlationId: record.correlationId, ...(refusal ? { refusal } : {}) };
    this.attemptOrigins.set(storeKey, origin);
    if (refusal) this.sayLeftAlone(record, refusal);
    return origin;
  }

  private sayLeftAlone(record: AttemptRecord, refusal: string): void {
    const name = attemptName(record.app, record.correlationId);
    const message = `Left RollbackAttempt ${record.app.namespace}/${name} (${record.state}) as it is: ${refusal}. This replica never started it and does not carry it on with its own token; a replica whose GITHUB_ORG holds the repository does (check GITHUB_ORG on every replica of this installation)`;
    this.log.warn(message, { correlationId: record.correlationId, app: `${record.app.namespace}/${record.app.name}`, state: record.state });
    this.options.events?.emit({
      regarding: { apiVersion: API_VERSION, kind: KINDS.attempt, namespace: record.app.namespace, name },
      related: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', ...record.app },
      type: 'Warning', reason: 'AttemptOutsideGitHubOrg', action: 'LeaveAlone', note: message,
    });
  }

  /** Why the app's targetRevision names no branch, when the reconciler found that out (see ApplicationReconciler.targetRefusal). */
  targetRefusal(app: ApplicationView): ReturnType<ApplicationReconciler['targetRefusal']> {
    return this.reconciler.targetRefusal(app);
  }

  isLeader(): boolean {
    return this.leader ? this.leader.isLeader() : this.started;
  }

  /**
   * POST /reset/{correlationId}: the attempt goes Abort -> Idle through the
   * reconciler, as the reset annotation takes it. The caller was authorized for
   * the namespaces in `request.namespaces` before this is called (server/reset.ts);
   * an attempt outside them is answered as one that does not exist. Only the
   * leader acts. The id is looked up by its index key; on a miss, once per
   * leadership term, the attempts written before the index existed are indexed
   * (the one scan) and the id looked up again. The caller's right to update the
   * RollbackAttempt itself is asked before its state is told. Waits up to
   * `waitMs` for the record to leave Abort (one reconcile: close the PR, then the
   * transition); past that the reset is still under way and the answer says so.
   */
  async reset(correlationId: string, request: ResetRequest, waitMs = 15_000): Promise<ResetOutcome> {
    // Nobody unauthorized gets here; if someone did, nothing is read for them.
    if (request.namespaces !== 'all' && request.namespaces.length === 0) return { result: 'not-found' };
    if (!this.isLeader()) return { result: 'not-leader', leader: (await this.options.kv.get(KEYS.leader))?.value };
    let location = await this.store.locateAttempt(correlationId);
    if (!location && !this.store.indexComplete) {
      const report = await this.store.indexUnindexed();
      if (report.indexed.length > 0) this.log.info('Indexed attempts written before the correlationId index', { count: report.indexed.length });
      if (report.unreadable.length > 0) this.log.warn('Could not index attempts whose record cannot be read', { keys: report.unreadable.join(',') });
      location = await this.store.locateAttempt(correlationId);
    }
    if (!location || (request.namespaces !== 'all' && !request.namespaces.includes(location.namespace))) return { result: 'not-found' };
    const stored = await this.store.getAttempt(location.appKey, correlationId);
    if (!stored) return { result: 'not-found' };
    const { record } = stored;
    const attempt = { namespace: record.app.namespace, name: attemptName(record.app, correlationId) };
    if (!(await request.mayReset(attempt))) return { result: 'forbidden', attempt };
    const active = (await this.store.activeId(location.appKey)) === correlationId;
    if (record.state !== 'Abort' || !active) return { result: 'not-aborted', attempt, state: record.state };
    this.reconciler.requestReset(correlationId, { username: request.caller.username, via: `POST /reset/${correlationId}` });
    this.enqueueStoreKey(location.appKey);
    for (const deadline = Date.now() + waitMs; Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 200));
      const now = await this.store.getAttempt(location.appKey, correlationId);
      if (now && now.record.state !== 'Abort') return { result: 'reset', attempt };
    }
    return { result: 'accepted', attempt };
  }

  /** Queue the app's key (namespace/name). */
  enqueue(app: { namespace: string; name: string }, priority: 'normal' | 'low' = 'normal'): void {
    this.queue.add(`${app.namespace}/${app.name}`, priority);
  }

  async start(): Promise<void> {
    this.started = true;
    // Level-triggered from etcd: any change under an app's keys wakes that app.
    this.stopWatch = await this.options.kv.watchPrefix(KEYS.appsPrefix, (key, deleted) => {
      const [app, leaf] = key.slice(KEYS.appsPrefix.length).split('/');
      if (!app) return;
      const index = leaf === 'active' ? this.active : leaf === 'health' ? this.pending : undefined;
      if (index) {
        this.activeChanges++;
        if (deleted) index.delete(app);
        else index.add(app);
      }
      if (leaf === 'active') {
        this.attemptOrigins.delete(app);
        this.gauges.forget(app);
        this.refreshGaugesSoon();
        // The attempt ended (or was reset): its branch need not wait for the next resync's sweep.
        if (deleted) this.cleanupSoon();
      }
      this.enqueueStoreKey(app);
    }, (error) => {
      // Until the next full read the index may be stale: fall back to reading etcd.
      this.activeSynced = false;
      this.attemptOrigins.clear();
      this.log.warn('etcd watch failed; the resync still covers every app', { error: error.message });
    });
    await this.refreshActive();
    // What a kill left between a commit and its audit records goes into the chain before anything new.
    await this.auditOutbox.drain().catch((error: Error) => this.log.warn('Could not record the audit outbox; retrying', { error: error.message }));
    this.auditOutbox.start(this.options.resyncIntervalMs ?? 30_000, () => this.isLeader());
    if (this.leader) {
      await this.leader.start();
    } else {
      this.onElected();
    }
    this.scheduleResync();
  }

  async stop(): Promise<void> {
    this.started = false;
    clearTimeout(this.resyncTimer);
    clearTimeout(this.gaugesTimer);
    this.gaugesTimer = undefined;
    clearTimeout(this.cleanupTimer);
    this.cleanupTimer = undefined;
    await this.queue.stop();
    await this.relay.stop();
    await this.stopConsumer();
    await this.stopWatch?.();
    await this.leader?.stop();
  }

  /**
   * A resync asked for by a change (a RollbackPolicy's, an election): never rejects, since nothing awaits it. A
   * failure (etcd down) is logged, and the periodic resync tries again.
   */
  resyncSoon(why: string): void {
    void this.resync().catch((error: Error) => this.log.warn('Resync failed; the periodic resync tries again', { why, error: error.message }));
  }

  /** Every watched app and every app with an active attempt goes through the queue. */
  async resync(): Promise<void> {
    if (!this.isLeader()) return;
    const [apps, active] = await Promise.all([this.options.argocd.listApplications(), this.refreshActive()]);
    // The sweep waits behind events; apps with an active attempt go at normal priority.
    const resyncs = this.options.resyncs ?? ((app: ApplicationView) => this.options.monitoring(app) !== undefined);
    for (const app of apps) if (resyncs(app)) this.enqueue(app.ref, 'low');
    for (const key of active) this.enqueueStoreKey(key);
    await this.refreshGauges().catch((error: Error) => this.log.warn('Could not read the attempt gauges from etcd', { error: error.message }));
    await this.options.afterResync?.(apps);
    // Not awaited: a slow GitHub must not hold the resync that wakes the apps.
    if (this.cleanup) void this.cleanup.sweep().catch((error: Error) => this.log.warn('Cleanup of ended attempts failed', { error: error.message }));
  }

  /** One sweep a few seconds after attempts let go of their apps: a burst of endings costs one sweep. */
  private cleanupSoon(): void {
    if (!this.cleanup || !this.isLeader() || this.cleanupTimer) return;
    this.cleanupTimer = setTimeout(() => {
      this.cleanupTimer = undefined;
      void this.cleanup?.sweep().catch((error: Error) => this.log.warn('Cleanup of ended attempts failed', { error: error.message }));
    }, this.options.cleanupDelayMs ?? 3000);
    this.cleanupTimer.unref?.();
  }

  /** The attempt gauges from etcd, 2 s after a write: a burst of writes costs one read of the active attempts, not one per write (Prometheus scrapes far less often). */
  private refreshGaugesSoon(): void {
    if (!this.isLeader() || this.gaugesTimer) return;
    this.gaugesTimer = setTimeout(() => {
      this.gaugesTimer = undefined;
      void this.refreshGauges().catch((error: Error) => this.log.warn('Could not read the attempt gauges from etcd', { error: error.message }));
    }, 2000);
    this.gaugesTimer.unref?.();
  }

  /** Reads the active attempts' states and sets the gauges; one read at a time, another after it if asked meanwhile. */
  private async refreshGauges(): Promise<void> {
    if (this.gaugesRunning) {
      this.gaugesAgain = true;
      return this.gaugesRunning;
    }
    this.gaugesRunning = (async () => {
      try {
        do {
          this.gaugesAgain = false;
          if (!this.activeSynced) await this.refreshActive();
          if (!this.isLeader()) return;
          const attempts = await this.gauges.read(this.active);
          // Deposed during the read: a standby exports no attempt gauges.
          if (this.isLeader()) this.options.metrics.setStoredGauges(storedGauges(attempts));
        } while (this.gaugesAgain);
      } finally {
        this.gaugesRunning = undefined;
      }
    })();
    return this.gaugesRunning;
  }

  /** Reads which apps have state in etcd; returns their keys (active attempts and pending degradations). */
  private async refreshActive(): Promise<string[]> {
    const before = this.activeChanges;
    const { active, pending } = await this.store.appsWithState();
    // A change seen by the watch during the read could be older or newer than it: read again.
    if (this.activeChanges !== before) return this.refreshActive();
    this.active.clear();
    this.pending.clear();
    for (const { appKey: key } of active) this.active.add(key);
    for (const key of pending) this.pending.add(key);
    this.gauges.learn(active);
    this.activeSynced = true;
    return [...this.active, ...pending.filter((key) => !this.active.has(key))];
  }

  private enqueueStoreKey(storeKey: string): void {
    // `{namespace}_{name}` outside the Argo CD namespace, the bare name inside it.
    const at = storeKey.indexOf('_');
    this.enqueue(at > 0 ? { namespace: storeKey.slice(0, at), name: storeKey.slice(at + 1) } : { namespace: this.options.argocdNamespace, name: storeKey });
  }

  private scheduleResync(): void {
    if (!this.started) return;
    this.resyncTimer = setTimeout(() => {
      void this.resync()
        .catch((error: Error) => this.log.warn('Resync failed; retrying', { error: error.message }))
        .finally(() => this.scheduleResync());
    }, this.options.resyncIntervalMs ?? 30_000);
    this.resyncTimer.unref?.();
  }

  /** JetStream events wake apps early; the leader alone reads them, since only it reconciles. */
  private startConsumer(): void {
    const bus = this.options.bus;
    if (!bus.consume || this.consumer) return;
    this.consumer = bus.consume({
      durable: this.options.eventConsumer ?? wakeConsumerName(''),
      // An older version's consumers, one per pod, are deleted once idle.
      supersedes: PER_POD_CONSUMER_PREFIX,
      ...(this.options.retiredConsumer ? { retires: this.options.retiredConsumer } : {}),
      handler: (event) => {
        const [namespace, name] = event.subject.split('/');
        if (namespace && name) this.enqueue({ namespace, name });
      },
      onRejected: (rejected) => this.options.audit.record({
        level: 'WARN', module: 'EventBus', actionType: 'EVENT_REJECTED', message: `Rejected a malformed event on ${rejected.subject}`,
        reasoning: rejected.errors, metadata: { subject: rejected.subject, reason: rejected.reason },
      }).then(() => undefined),
    }).catch((error: Error) => {
      this.log.warn('Could not start the event consumer; the resync still covers every app', { error: error.message });
      return undefined;
    });
  }

  private async stopConsumer(): Promise<void> {
    const consumer = this.consumer;
    this.consumer = undefined;
    await (await consumer)?.stop();
  }

  private onElected(): void {
    this.options.metrics.setLeader(true);
    this.startConsumer();
    void this.options.audit.record({ module: 'Operator', actionType: 'LEADER_ELECTED', message: `${this.options.identity} became leader`, metadata: { identity: this.options.identity } })
      .catch((error: Error) => this.log.error('Could not audit leader election', { error: error.message }));
    this.relay.start(this.options.relayIntervalMs ?? 1000);
    this.resyncSoon('elected');
  }

  private onDeposed(why: string): void {
    this.options.metrics.setLeader(false);
    this.options.metrics.clearStoredGauges();
    void this.relay.stop();
    void this.stopConsumer();
    void this.options.audit.record({ level: 'WARN', module: 'Operator', actionType: 'LEADER_LOST', message: `${this.options.identity} lost leadership: ${why}`, metadata: { identity: this.options.identity } })
      .catch((error: Error) => this.log.error('Could not audit leadership loss', { error: error.message }));
  }
}

