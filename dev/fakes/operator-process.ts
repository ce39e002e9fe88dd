// An operator process for the engine's end-to-end tests: the real Operator
// wiring on the real etcd, NATS JetStream and Kubernetes API server, with the
// GitHub, Argo CD, cluster and Prometheus ports played by the fake world (kept
// in etcd, so it outlives a killed operator). The real integrations replace the
// fake world in src/main.ts.
//
// Environment: the operator's own variables (src/config.ts), plus
//   KUBECONFIG, OPERATOR_ID, ETCD_PREFIX (isolates a test's keys),
//   AI_OPERATOR_STREAM and AI_OPERATOR_SUBJECT_PREFIX (isolate its events).
import { ElasticsearchAuditIndex } from '../../src/audit/elasticsearch-sink.ts';
import { openAuditTrail } from '../../src/audit/trail.ts';
import { KeepAliveKubeConfig } from '../../src/integrations/kube-config.ts';
import { ConfigErrors, loadConfig, policyDefaults } from '../../src/config.ts';
import { JetStreamBus } from '../../src/bus/jetstream.ts';
import { RollbackAttemptObjects } from '../../src/integrations/rollback-attempts.ts';
import { RollbackPolicyObjects } from '../../src/integrations/rollback-policies.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { Operator } from '../../src/operator.ts';
import { RollbackPolicies } from '../../src/reconcilers/rollback-policy.ts';
import { startHttp } from '../../src/server/http.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { FakeWorld } from './world.ts';

let config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigErrors)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(2);
}
const identity = process.env.OPERATOR_ID ?? `operator-${process.pid}`;
const log = createLogger(config.logLevel, { replica: identity });
const kv = new EtcdKV(config.etcdEndpoints, { prefix: config.etcdPrefix });
const world = new FakeWorld(kv);
const metrics = new Metrics();
const audit = await openAuditTrail({
  dir: config.auditFallbackDir, index: new ElasticsearchAuditIndex({ url: config.elasticsearchUrl, apiKey: config.elasticsearchApiKey }),
  log: log.child('AuditShipper'), metrics,
});
const bus = await JetStreamBus.connect({
  servers: config.natsServers, registry: metrics.registry, log: log.child('EventBus'),
  ...(process.env.AI_OPERATOR_STREAM ? { stream: process.env.AI_OPERATOR_STREAM } : {}),
  ...(process.env.AI_OPERATOR_SUBJECT_PREFIX ? { subjectPrefix: process.env.AI_OPERATOR_SUBJECT_PREFIX } : {}),
});
await bus.ensureStream();

const kc = new KeepAliveKubeConfig();
kc.loadFromDefault();
let operator: Operator | undefined;
const attempts = new RollbackAttemptObjects(kc, log.child('RollbackAttempts'), (app) => operator?.enqueue(app), { metrics });
await attempts.start();
const policies = new RollbackPolicies(new RollbackPolicyObjects(kc, { log: log.child('RollbackPolicies'), metrics }), policyDefaults(config), log.child('RollbackPolicies'), () => void operator?.resync(), { allowedOwner: config.githubOrg, namespaces: config.watchNamespaces });
await policies.start();
operator = new Operator({
  kv, bus, argocd: world, github: world, cluster: world, history: world, attempts, approvalEnforcement: world,
  monitoring: (app) => policies.monitoring(app),
  afterResync: (apps) => policies.writeStatuses(apps),
  audit, metrics, log, identity, argocdNamespace: config.argocdNamespace, leaderElection: config.leaderElection,
  resyncIntervalMs: Number(process.env.RESYNC_INTERVAL_MS ?? 2000),
  ...(process.env.LEADER_TTL_SECONDS ? { leaderTtlSeconds: Number(process.env.LEADER_TTL_SECONDS) } : {}),
});
await operator.start();
const server = await startHttp({ port: config.httpPort, host: '127.0.0.1', registry: metrics.registry, readiness: async () => [] });
log.info('Operator started', { identity, leaderElection: config.leaderElection });

const shutdown = async () => {
  await operator!.stop();
  await attempts.stop();
  await policies.stop();
  await bus.close();
  await audit.close();
  await kv.close();
  server.close();
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
