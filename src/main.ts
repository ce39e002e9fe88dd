// Wiring only: configuration → ports → reconcilers → HTTP server.
import { hostname } from 'node:os';
import { VersionApi } from '@kubernetes/client-node';
import { ElasticsearchAuditIndex } from './audit/elasticsearch-sink.ts';
import { auditLogTee } from './audit/log-line.ts';
import { SpoolInUseError } from './audit/spool-lock.ts';
import { openAuditTrail } from './audit/trail.ts';
import { KEYS } from './api/etcd.ts';
import { ConfigErrors, loadConfig, policyDefaults, type Config } from './config.ts';
import { JetStreamBus, wakeConsumerName } from './bus/jetstream.ts';
import { STREAM_NAME, SUBJECT_PREFIX } from './fsm/cloud-events.ts';
import { AppClaims } from './integrations/app-claims.ts';
import { ApprovalEnforcementCheck } from './integrations/approval-enforcement.ts';
import { EnforcementMemory } from './store/enforcement-memory.ts';
import { ArgoCdWatcher } from './integrations/argocd.ts';
import { kubeEventRecorder } from './integrations/kube-events.ts';
import { GitHubClient } from './integrations/github.ts';
import { KubeCallerAuth } from './integrations/kube-auth.ts';
import { KeepAliveKubeConfig } from './integrations/kube-config.ts';
import { ClusterReader } from './integrations/kubernetes.ts';
import { PrometheusHistory } from './integrations/prometheus.ts';
import { RollbackAttemptObjects, storeLabel } from './integrations/rollback-attempts.ts';
import { RollbackPolicyObjects } from './integrations/rollback-policies.ts';
import { createLogger, type Logger } from './observability/log.ts';
import { Metrics } from './observability/metrics.ts';
import { startTracing } from './observability/tracing.ts';
import { Operator } from './operator.ts';
import { githubHosts } from './governance/repository.ts';
import { RollbackPolicies } from './reconcilers/rollback-policy.ts';
import { startHttp } from './server/http.ts';
import { readinessProbe } from './server/readiness.ts';
import { resetHandler } from './server/reset.ts';
import { EtcdKV } from './store/etcd.ts';

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigErrors) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

/** Retries a start-up step until it works: a dependency that is down is waited for, never a crash loop. */
async function untilReady<T>(what: string, log: Logger, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempt - 1, 5));
      log.warn(`Waiting for ${what}`, { attempt, retryInMs: delay, error: (error as Error).message });
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

const config = configOrExit();
const identity = process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
const log = createLogger(config.logLevel, { replica: identity, installation: config.installationName });
const metrics = new Metrics({ processMetrics: true });
// OTLP export of one trace per attempt, when an endpoint is configured (OTEL_*); spans it loses are counted.
const tracing = config.tracing
  ? await startTracing({ ...config.tracing, resourceAttributes: { 'service.instance.id': identity, ...config.tracing.resourceAttributes } }, { dropped: (reason, count) => metrics.spansDropped(reason, count) })
  : undefined;
const kc = new KeepAliveKubeConfig();
kc.loadFromDefault();

const kv = new EtcdKV(config.etcdEndpoints, { prefix: config.etcdPrefix });
// Every record is fsync'd to the spool, shipped from there to Elasticsearch, and
// is also a line of the log, where the runbook's jq filters look for it.
// Stops the operator: set once start-up is done; before that, a stop is an exit.
let stop: ((code: number, why: Record<string, unknown>) => void) | undefined;
const audit = await openAuditTrail({
  dir: config.auditFallbackDir, index: new ElasticsearchAuditIndex({ url: config.elasticsearchUrl, apiKey: config.elasticsearchApiKey }),
  log: log.child('AuditShipper'), metrics, onSealed: auditLogTee({ replica: identity }),
  onLockLost: (holder) => {
    log.error('Another operator process took the audit spool (AUDIT_FALLBACK_DIR): stopping, so that one chain has one writer', { dir: config.auditFallbackDir, pid: holder.pid, host: holder.host });
    if (stop) stop(1, { why: 'audit spool taken' });
    else process.exit(1);
  },
}).catch((error: Error) => {
  // Another process writes this spool, or it cannot be used (a foreign lock file, no permission): one line and
  // an exit, as for a bad setting.
  process.stderr.write(error instanceof SpoolInUseError ? `${error.message}\n` : `AUDIT_FALLBACK_DIR ${config.auditFallbackDir}: ${error.message}\n`);
  process.exit(2);
});
const bus = await untilReady('NATS JetStream', log, async () => {
  // The installation's own stream and subjects: another installation's wake consumer never sees its events.
  const connected = await JetStreamBus.connect({
    servers: config.natsServers, registry: metrics.registry, log: log.child('EventBus'), stream: config.natsStream, subjectPrefix: config.natsSubjectPrefix,
  });
  await connected.ensureStream();
  return connected;
});
await untilReady('etcd', log, () => kv.get(KEYS.leader));

const argocd = new ArgoCdWatcher({
  kubeConfig: kc, log: log.child('ArgoCD'), metrics, namespaces: config.watchNamespaces,
  // What it cannot read in a status is ignored, and said where a person looks: once per change, as an Event.
  onShapeProblems: (view, problems) => kubeEvents.emit({
    regarding: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', ...view.ref, ...(view.uid ? { uid: view.uid } : {}) },
    type: 'Warning', reason: 'ApplicationNotUnderstood', action: 'ReadApplication', note: `status not understood; what it names is ignored: ${problems}`,
  }),
  ...(config.argocdUrl && config.argocdToken ? { rest: { url: config.argocdUrl, token: config.argocdToken } } : {}),
});
const github = new GitHubClient({
  baseUrl: config.githubApiUrl, auth: config.githubAuth, org: config.githubOrg, metrics, budgetMetrics: metrics, log: log.child('GitHub'),
  // GitHub's secondary limits, kept by all attempts together; polls of a waiting PR are spaced as configured.
  limits: { writesPerMinute: config.githubWritesPerMinute, writesPerHour: config.githubWritesPerHour, pointsPerMinute: config.githubPointsPerMinute },
  ciPollMs: config.githubCiPollSec * 1000, pullListMaxAgeMs: config.pollIntervalSec * 1000,
});
// Its pod watches (issue 21) start only for namespaces a Progressing app deploys to, and stop once idle.
const cluster = new ClusterReader(kc, { metrics, argocdNamespace: config.argocdNamespace, log: log.child('Pods') });
const history = new PrometheusHistory({ url: config.prometheusUrl, metrics });
const kubeEvents = kubeEventRecorder(kc, { instance: identity, log: log.child('KubeEvents'), metrics });
// Whether the API server enforces who may approve; while it does not, no production approval is recorded.
const approvalEnforcement = ApprovalEnforcementCheck.fromKubeConfig(kc, {
  log: log.child('ApprovalEnforcement'), metrics, memory: new EnforcementMemory(kv),
  policyName: config.approvalPolicyName, bindingName: config.approvalPolicyBindingName,
});

let operator: Operator | undefined;
const attempts = new RollbackAttemptObjects(kc, log.child('RollbackAttempts'), (app) => operator?.enqueue(app), { metrics, store: storeLabel(config.etcdPrefix) });
// Which installation acts on an app: its policy's (spec.installation, or the first to claim it), or, with no
// policy, the holder of its claim Lease. Status writes name the installation as their field manager.
const policies = new RollbackPolicies(new RollbackPolicyObjects(kc, { log: log.child('RollbackPolicies'), metrics, fieldManager: `ai-operator-${config.installationName}` }), policyDefaults(config), log.child('RollbackPolicies'), () => operator?.resyncSoon('a RollbackPolicy changed'), {
  allowedOwner: config.githubOrg, githubHosts: githubHosts(config.githubApiUrl), namespaces: config.watchNamespaces,
  knownRefusal: (app) => operator?.targetRefusal(app),
  installation: config.installationName, claims: new AppClaims(kc, { metrics }), events: kubeEvents,
});
operator = new Operator({
  kv, bus, argocd, github, cluster, history, attempts, cleanupObjects: attempts, retentionSeconds: config.attemptRetentionSec,
  monitoring: (app) => policies.monitoring(app),
  resyncs: (app) => policies.selects(app),
  afterResync: (apps) => policies.writeStatuses(apps),
  audit, metrics, log, identity, argocdNamespace: config.argocdNamespace, leaderElection: config.leaderElection, leaderTtlSeconds: config.leaderLeaseSec,
  // One durable consumer per installation, which its etcd prefix sets apart (as it does the leader key), on the
  // installation's own subjects; the one an older version kept in the shared stream goes once idle.
  eventConsumer: wakeConsumerName(config.etcdPrefix),
  ...(config.natsStream !== STREAM_NAME ? { retiredConsumer: { stream: STREAM_NAME, filterSubject: `${SUBJECT_PREFIX}.>` } } : {}),
  prepare: (app) => policies.prepare(app),
  allowedOwner: config.githubOrg, githubHosts: githubHosts(config.githubApiUrl), events: kubeEvents, approvalEnforcement,
  resyncIntervalMs: Math.max(config.pollIntervalSec * 3, 30) * 1000,
  // Reconciles wait on GitHub and etcd, not CPU: many keys may be in flight at once.
  concurrency: 16,
});
argocd.onChange((ref) => operator?.enqueue(ref));

await untilReady('the Kubernetes API', log, async () => {
  await Promise.all([argocd.start(), attempts.start(), policies.start()]);
});
// Never throws: an unreadable policy is a state (not enforced), not a start-up failure.
await approvalEnforcement.start();
await operator.start();
const apiServer = kc.makeApiClient(VersionApi);
const server = await startHttp({
  port: config.httpPort, registry: metrics.registry,
  readiness: readinessProbe([
    { name: 'etcd', run: async () => { await kv.get(KEYS.leader); return undefined; } },
    { name: 'NATS', run: () => bus.connectionProblem() },
    { name: 'Application watch', run: () => (argocd.isSynced() ? undefined : 'not synced yet') },
    // The watch cache outlives the API server; the fresh reads a merge needs (I2, I3) do not.
    { name: 'Kubernetes API', run: async () => { await apiServer.getCode(); return undefined; } },
  ]),
  reset: resetHandler({
    auth: new KubeCallerAuth(kc, { metrics }), reset: (id, request) => operator!.reset(id, request), log: log.child('Server'),
    // Where RollbackAttempts can be (an Application's namespace), from the watch cache: no etcd read.
    watched: async () => (config.watchNamespaces.length > 0 ? config.watchNamespaces
      : [config.argocdNamespace, ...(await argocd.listApplications()).map((app) => app.ref.namespace)]),
  }),
}).catch((error: Error) => {
  // A port another process holds: one line and an exit, as for a bad setting (what it did so far is in etcd).
  process.stderr.write(`HTTP_PORT ${config.httpPort}: cannot listen: ${error.message}\n`);
  process.exit(2);
});
log.info('Started operator', {
  identity, installation: config.installationName, etcdPrefix: config.etcdPrefix, stream: config.natsStream, subjects: `${config.natsSubjectPrefix}.>`,
  httpPort: config.httpPort, dryRun: config.dryRun, leaderElection: config.leaderElection,
  tracing: config.tracing ? `${config.tracing.protocol} ${config.tracing.endpoint} (${config.tracing.sampler})` : 'off',
});

let stopping = false;
stop = (code, why) => {
  if (stopping) return;
  stopping = true;
  log.info('Shutting down', why);
  void (async () => {
    await operator!.stop();
    await Promise.allSettled([kubeEvents.flush(2000), approvalEnforcement.stop(), argocd.stop(), attempts.stop(), policies.stop(), cluster.stop(), bus.close(), audit.close(), kv.close()]);
    await tracing?.shutdown().catch(() => undefined);
    server.close(() => process.exit(code));
  })();
};
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop!(0, { signal }));
