// Operator configuration from the environment (SPEC §12): the seed's variables
// with its defaults, plus what the implementation needs. Every variable is read
// once, here; a missing or malformed one stops start-up with one line that names
// it and says what was expected. Secret values never appear in those lines.
// The settings defaults every policy falls back on are built here too.
import { DEFAULT_INSTALLATION, streamNameFor, subjectPrefixFor } from './fsm/cloud-events.ts';
import type { GitHubAuth } from './integrations/github.ts';
import { LOG_LEVELS, type LogLevel } from './observability/log.ts';
import { OTLP_PROTOCOLS, SAMPLERS, type OtlpProtocol, type SamplerName, type TracingConfig } from './observability/tracing.ts';
import { DEFAULT_POD_SIGNALS, type Defaults } from './policy/settings.ts';
import { DEFAULT_LEADER_LEASE_SEC } from './store/leader.ts';

export interface Config {
  pollIntervalSec: number;
  degradationPersistenceChecks: number;
  healthRestorationSec: number;
  candidateSearchTimeoutSec: number;
  ciWaitTimeoutSec: number;
  mergeApprovalTimeoutSec: number;
  recoveryTimeoutSec: number;
  cooldownSec: number;
  /** MAX_ATTEMPTS_PER_HOUR: attempts per app per hour before the app is held for a human (0: no bound). */
  maxAttemptsPerHour: number;
  /**
   * How long an ended attempt is kept (ATTEMPT_RETENTION): its etcd record and index key expire with a lease
   * of this length, and its RollbackAttempt object is deleted once the record is gone.
   */
  attemptRetentionSec: number;
  logLevel: LogLevel;
  natsServers: string[];
  etcdEndpoints: string[];
  /** Every key lives under it ('' = the root), e.g. for two installations sharing one etcd. */
  etcdPrefix: string;
  /**
   * The installation's name (INSTALLATION_NAME; by default from the etcd prefix, `default` for none):
   * what a RollbackPolicy's spec.installation names, what its status claims, and what sets its NATS names apart.
   */
  installationName: string;
  /** The JetStream stream of its events (NATS_STREAM; by default the installation's own, AI_OPERATOR for `default`). */
  natsStream: string;
  /** Its events' subjects are `{natsSubjectPrefix}.{type}` (NATS_SUBJECT_PREFIX; `ai-operator` for `default`, else `ai-operator-{name}`). */
  natsSubjectPrefix: string;
  prometheusUrl: string;
  elasticsearchUrl: string;
  elasticsearchApiKey?: string;
  githubOrg: string;
  githubApiUrl: string;
  githubAuth: GitHubAuth;
  /**
   * GitHub's secondary limits on content-creating requests (every POST, PATCH, PUT, DELETE), kept by all attempts
   * together (GITHUB_WRITES_PER_MINUTE, GITHUB_WRITES_PER_HOUR: GitHub's documented 80 and 500; an Enterprise
   * Server's administrator sets its own).
   */
  githubWritesPerMinute: number;
  githubWritesPerHour: number;
  /** Points a minute per REST endpoint (GITHUB_POINTS_PER_MINUTE: GitHub's 900; a GET costs 1, a write 5). */
  githubPointsPerMinute: number;
  /** How often CI still pending on a rollback PR is read (GITHUB_CI_POLL_SECONDS; by default 6 intervals, at most 60 s). */
  githubCiPollSec: number;
  monitoredApps: string[];
  argocdUrl?: string;
  argocdToken?: string;
  argocdNamespace: string;
  /** Namespaces whose Applications are watched; empty: all. */
  watchNamespaces: string[];
  auditFallbackDir: string;
  dryRun: boolean;
  leaderElection: boolean;
  /**
   * LEADER_LEASE_SECONDS: the leader key's lease. A leader that dies without a word (SIGKILL, a lost node) is
   * replaced once it expires; the leader renews every third of it.
   */
  leaderLeaseSec: number;
  httpPort: number;
  /** The ValidatingAdmissionPolicy that enforces who may approve, and its binding (config/admission/). */
  approvalPolicyName: string;
  approvalPolicyBindingName: string;
  /** OpenTelemetry tracing from the standard OTEL_* variables; undefined (off) when no OTLP endpoint is set. */
  tracing?: TracingConfig;
}

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, expected: string, got?: string) {
    super(`${variable}: expected ${expected}${got === undefined ? '' : `, got ${got}`}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

export class ConfigErrors extends Error {
  readonly errors: ConfigError[];
  constructor(errors: ConfigError[]) {
    super(errors.map((e) => `invalid configuration: ${e.message}`).join('\n'));
    this.name = 'ConfigErrors';
    this.errors = errors;
  }
}

type Env = Record<string, string | undefined>;

/**
 * A value as an error line may echo it: quoted (so a newline stays on the line),
 * a URL's credentials replaced (NATS_URL, ETCD_ENDPOINTS and ELASTICSEARCH_URL
 * may carry them), and cut at 100 characters.
 */
function show(value: string): string {
  // user:password@ or a bare token@ (NATS token auth): both are secrets.
  const hidden = value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/@\s]+@/i, '$1***@');
  const quoted = JSON.stringify(hidden);
  return quoted.length > 100 ? `${quoted.slice(0, 99)}…" (${value.length} characters)` : quoted;
}

// With their lengths: a 64-character namespace passed here and failed at the API server.
const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const APP_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
// Empty (the whole keyspace) or /segment[/segment…]: several operators can share one etcd.
const ETCD_PREFIX = /^(\/[A-Za-z0-9._-]+)*$/;
// The name of a cluster-scoped object such as a ValidatingAdmissionPolicy (a DNS subdomain).
const OBJECT_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const GITHUB_OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;
// A JetStream stream name, and one NATS subject token (no `.`, `*`, `>`): one token, so no prefix nests under another.
const NATS_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The installation's name when INSTALLATION_NAME is not set: `default` for the
 * empty etcd prefix, else the prefix as a DNS label (`/team-a` → `team-a`,
 * `/e2e/Run_1` → `e2e-run-1`); undefined when nothing of it is left. Pure.
 */
export function installationNameFrom(etcdPrefix: string): string | undefined {
  if (etcdPrefix === '') return DEFAULT_INSTALLATION;
  const name = etcdPrefix.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 63).replace(/^-+|-+$/g, '');
  return name === '' ? undefined : name;
}

// A reader per kind of value. Each returns the parsed value or throws ConfigError.
// `shown` is what may be echoed back: never the value of a secret.
class Reader {
  readonly errors: ConfigError[] = [];
  private readonly env: Env;
  constructor(env: Env) { this.env = env; }

  private raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  private attempt<T>(fn: () => T, fallback: T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof ConfigError) {
        this.errors.push(error);
        return fallback;
      }
      throw error;
    }
  }

  integer(name: string, fallback: number, min: number, max: number, unit = ''): number {
    return this.attempt(() => {
      const value = this.raw(name);
      if (value === undefined) return fallback;
      const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        throw new ConfigError(name, `an integer from ${min} to ${max}${unit ? ` (${unit})` : ''}`, show(value));
      }
      return n;
    }, fallback);
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    return this.attempt(() => {
      const value = this.raw(name);
      if (value === undefined) return fallback;
      const match = allowed.find((a) => a === value.toUpperCase() || a === value);
      if (!match) throw new ConfigError(name, `one of ${allowed.join(', ')}`, show(value));
      return match;
    }, fallback);
  }

  boolean(name: string, fallback: boolean): boolean {
    return this.attempt(() => {
      const value = this.raw(name)?.toLowerCase();
      if (value === undefined) return fallback;
      if (['true', '1', 'yes'].includes(value)) return true;
      if (['false', '0', 'no'].includes(value)) return false;
      throw new ConfigError(name, 'true or false', show(this.raw(name)!));
    }, fallback);
  }

  url(name: string, fallback: string | undefined, schemes: readonly string[]): string | undefined {
    return this.attempt(() => {
      const value = this.raw(name) ?? fallback;
      if (value === undefined) return undefined;
      checkUrl(name, value, schemes);
      return value.replace(/\/+$/, '');
    }, fallback);
  }

  urlList(name: string, fallback: string, schemes: readonly string[], defaultScheme: string): string[] {
    return this.attempt(() => {
      const items = (this.raw(name) ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
      if (items.length === 0) throw new ConfigError(name, `a comma-separated list of ${schemes.join('/')} URLs or host:port`);
      return items.map((item) => {
        const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(item) ? item : `${defaultScheme}://${item}`;
        checkUrl(name, withScheme, schemes, item);
        return withScheme;
      });
    }, []);
  }

  matching(name: string, fallback: string | undefined, pattern: RegExp, expected: string): string | undefined {
    return this.attempt(() => {
      const value = this.raw(name) ?? fallback;
      if (value === undefined) return undefined;
      if (!pattern.test(value)) throw new ConfigError(name, expected, show(value));
      return value;
    }, fallback);
  }

  required(name: string, pattern: RegExp, expected: string): string {
    return this.attempt(() => {
      const value = this.raw(name);
      if (value === undefined) throw new ConfigError(name, `${expected} (required, not set)`);
      if (!pattern.test(value)) throw new ConfigError(name, expected, show(value));
      return value;
    }, '');
  }

  list(name: string, pattern: RegExp, expected: string): string[] {
    return this.attempt(() => {
      const items = (this.raw(name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      const bad = items.find((item) => !pattern.test(item));
      if (bad !== undefined) throw new ConfigError(name, `a comma-separated list of ${expected}`, `${show(bad)} in the list`);
      return [...new Set(items)];
    }, []);
  }

  secret(name: string): string | undefined {
    const value = this.raw(name);
    if (value !== undefined && /\s/.test(value)) {
      this.errors.push(new ConfigError(name, 'a token without whitespace', '(value hidden)'));
    }
    return value;
  }

  /**
   * `k1=v1,k2=v2` with percent-encoded values (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS). A
   * header's value may be a secret: only its key is ever echoed.
   */
  keyValues(name: string, secret: boolean): Record<string, string> {
    return this.attempt(() => {
      const value = this.raw(name);
      const out: Record<string, string> = {};
      for (const item of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
        const at = item.indexOf('=');
        const key = at > 0 ? item.slice(0, at).trim() : '';
        let decoded: string | undefined;
        try {
          decoded = at > 0 ? decodeURIComponent(item.slice(at + 1).trim()) : undefined;
        } catch {
          decoded = undefined;
        }
        if (key === '' || decoded === undefined) {
          throw new ConfigError(name, 'a comma-separated list of key=value (values percent-encoded)', secret ? `${show(key || '(no key)')} in the list (value hidden)` : `${show(item)} in the list`);
        }
        out[key] = decoded;
      }
      return out;
    }, {});
  }

  /** A number in [min, max] (OTEL_TRACES_SAMPLER_ARG). */
  fraction(name: string, fallback: number, min: number, max: number): number {
    return this.attempt(() => {
      const value = this.raw(name);
      if (value === undefined) return fallback;
      const n = /^[0-9]*\.?[0-9]+$/.test(value) ? Number(value) : Number.NaN;
      if (!Number.isFinite(n) || n < min || n > max) throw new ConfigError(name, `a number from ${min} to ${max}`, show(value));
      return n;
    }, fallback);
  }

  /**
   * OpenTelemetry's own variables, as its SDKs read them
   * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/): tracing is on when
   * an OTLP endpoint is set (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, used as is, or OTEL_EXPORTER_OTLP_ENDPOINT,
   * to which /v1/traces is added) and OTEL_SDK_DISABLED is not true. OTLP over HTTP only: grpc is refused.
   * The export batch is OpenTelemetry's default (512 spans).
   */
  tracing(): TracingConfig | undefined {
    const disabled = this.boolean('OTEL_SDK_DISABLED', false);
    const signal = this.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', undefined, ['http', 'https']);
    const base = this.url('OTEL_EXPORTER_OTLP_ENDPOINT', undefined, ['http', 'https']);
    const protocol = this.attempt<OtlpProtocol>(() => {
      const value = this.raw('OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf';
      const match = OTLP_PROTOCOLS.find((p) => p === value);
      if (!match) throw new ConfigError('OTEL_EXPORTER_OTLP_PROTOCOL', `${OTLP_PROTOCOLS.join(' or ')} (grpc is not built in: use the collector's OTLP/HTTP port, 4318)`, show(value));
      return match;
    }, 'http/protobuf');
    const sampler = this.attempt<SamplerName>(() => {
      const value = this.raw('OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on';
      const match = SAMPLERS.find((p) => p === value);
      if (!match) throw new ConfigError('OTEL_TRACES_SAMPLER', `one of ${SAMPLERS.join(', ')}`, show(value));
      return match;
    }, 'parentbased_always_on');
    const samplerRatio = this.fraction('OTEL_TRACES_SAMPLER_ARG', 1, 0, 1);
    const resourceAttributes = this.keyValues('OTEL_RESOURCE_ATTRIBUTES', false);
    const serviceName = this.matching('OTEL_SERVICE_NAME', resourceAttributes['service.name'] ?? 'ai-operator', /^\S(.*\S)?$/, 'a service name')!;
    const headers = this.keyValues('OTEL_EXPORTER_OTLP_HEADERS', true);
    const timeoutMs = this.integer('OTEL_EXPORTER_OTLP_TIMEOUT', 10_000, 1, 600_000, 'milliseconds');
    const maxQueueSize = this.integer('OTEL_BSP_MAX_QUEUE_SIZE', 2048, 1, 1_000_000);
    const scheduledDelayMs = this.integer('OTEL_BSP_SCHEDULE_DELAY', 5000, 0, 3_600_000, 'milliseconds');
    const exportTimeoutMs = this.integer('OTEL_BSP_EXPORT_TIMEOUT', 30_000, 1, 3_600_000, 'milliseconds');
    const endpoint = signal ?? (base === undefined ? undefined : `${base}/v1/traces`);
    if (disabled || endpoint === undefined) return undefined;
    return {
      endpoint, protocol, headers, timeoutMs, sampler, samplerRatio, serviceName, resourceAttributes,
      maxQueueSize, maxExportBatchSize: Math.min(512, maxQueueSize), scheduledDelayMs, exportTimeoutMs,
    };
  }

  githubAuth(): GitHubAuth {
    return this.attempt<GitHubAuth>(() => {
      const token = this.secret('GITHUB_TOKEN');
      const appIdRaw = this.raw('GITHUB_APP_ID');
      if (appIdRaw === undefined) {
        if (token === undefined) throw new ConfigError('GITHUB_TOKEN', 'a GitHub token, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY (required, not set)');
        return { kind: 'token', token };
      }
      const appId = this.integer('GITHUB_APP_ID', 0, 1, Number.MAX_SAFE_INTEGER);
      const privateKey = this.raw('GITHUB_APP_PRIVATE_KEY')?.replace(/\\n/g, '\n');
      if (privateKey === undefined) throw new ConfigError('GITHUB_APP_PRIVATE_KEY', 'the GitHub App private key (PEM) when GITHUB_APP_ID is set (required, not set)');
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey)) throw new ConfigError('GITHUB_APP_PRIVATE_KEY', 'a PEM private key', '(value hidden)');
      const installation = this.raw('GITHUB_APP_INSTALLATION_ID');
      return installation === undefined
        ? { kind: 'app', appId, privateKey }
        : { kind: 'app', appId, privateKey, installationId: this.integer('GITHUB_APP_INSTALLATION_ID', 0, 1, Number.MAX_SAFE_INTEGER) };
    }, { kind: 'token', token: '' });
  }
}

function checkUrl(name: string, value: string, schemes: readonly string[], shown = value): void {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(name, `a ${schemes.join(' or ')} URL`, show(shown));
  }
  if (!schemes.includes(parsed.protocol.replace(/:$/, '')) || parsed.hostname === '') {
    throw new ConfigError(name, `a ${schemes.join(' or ')} URL`, show(shown));
  }
}

/** Only what a command line needs to reach Elasticsearch, read and checked as loadConfig reads them. */
export function loadElasticsearchConfig(env: Env = process.env): Pick<Config, 'elasticsearchUrl' | 'elasticsearchApiKey'> {
  const r = new Reader(env);
  const config = {
    elasticsearchUrl: r.url('ELASTICSEARCH_URL', 'http://elasticsearch:9200', ['http', 'https'])!,
    elasticsearchApiKey: r.secret('ELASTICSEARCH_API_KEY'),
  };
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return config;
}

/** Reads and validates the whole configuration; throws ConfigErrors listing every bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const argocdUrl = r.url('ARGOCD_URL', undefined, ['http', 'https']);
  const argocdToken = r.secret('ARGOCD_TOKEN');
  if (argocdUrl !== undefined && argocdToken === undefined) {
    r.errors.push(new ConfigError('ARGOCD_TOKEN', 'an Argo CD API token when ARGOCD_URL is set (required, not set)'));
  }
  const healthRestorationSec = r.integer('HEALTH_RESTORATION_DURATION', 60, 1, 86_400, 'seconds');
  const recoveryTimeoutSec = r.integer('RECOVERY_TIMEOUT', 600, 1, 86_400, 'seconds');
  const timeoutsReadable = !r.errors.some((e) => e.variable === 'HEALTH_RESTORATION_DURATION' || e.variable === 'RECOVERY_TIMEOUT');
  if (timeoutsReadable && recoveryTimeoutSec <= healthRestorationSec) {
    r.errors.push(new ConfigError('RECOVERY_TIMEOUT', `more seconds than HEALTH_RESTORATION_DURATION (${healthRestorationSec})`, String(recoveryTimeoutSec)));
  }
  const etcdPrefix = r.matching('ETCD_PREFIX', '', ETCD_PREFIX, 'an etcd key prefix such as /team-a (a leading slash, no trailing one)')!;
  const derivedName = installationNameFrom(etcdPrefix);
  const installationName = derivedName === undefined
    ? r.required('INSTALLATION_NAME', DNS_LABEL, `a DNS label such as team-a (ETCD_PREFIX ${show(etcdPrefix)} makes no name)`)
    : r.matching('INSTALLATION_NAME', derivedName, DNS_LABEL, 'a DNS label such as team-a (lower case letters, digits and hyphens, up to 63)')!;
  const pollIntervalSec = r.integer('POLL_INTERVAL_SEC', 10, 1, 3600, 'seconds');
  const config: Config = {
    pollIntervalSec,
    degradationPersistenceChecks: r.integer('DEGRADATION_PERSISTENCE_CHECKS', 3, 1, 100),
    healthRestorationSec,
    candidateSearchTimeoutSec: r.integer('CANDIDATE_SEARCH_TIMEOUT', 120, 1, 3600, 'seconds'),
    ciWaitTimeoutSec: r.integer('CI_WAIT_TIMEOUT', 300, 1, 86_400, 'seconds'),
    mergeApprovalTimeoutSec: r.integer('MERGE_APPROVAL_TIMEOUT', 3600, 1, 604_800, 'seconds'),
    recoveryTimeoutSec,
    cooldownSec: r.integer('ROLLBACK_COOLDOWN', 1800, 0, 604_800, 'seconds'),
    maxAttemptsPerHour: r.integer('MAX_ATTEMPTS_PER_HOUR', 3, 0, 1000),
    attemptRetentionSec: r.integer('ATTEMPT_RETENTION', 604_800, 10, 31_536_000, 'seconds'),
    logLevel: r.oneOf('LOG_LEVEL', 'INFO', LOG_LEVELS),
    natsServers: r.urlList('NATS_URL', 'nats://nats:4222', ['nats', 'tls'], 'nats'),
    etcdEndpoints: r.urlList('ETCD_ENDPOINTS', 'etcd:2379', ['http', 'https'], 'http'),
    etcdPrefix,
    installationName,
    natsStream: r.matching('NATS_STREAM', streamNameFor(installationName), NATS_NAME, 'a JetStream stream name (letters, digits, _ and -, up to 64)')!,
    natsSubjectPrefix: r.matching('NATS_SUBJECT_PREFIX', subjectPrefixFor(installationName), NATS_NAME, 'one NATS subject token (letters, digits, _ and -, up to 64; no dots)')!,
    prometheusUrl: r.url('PROMETHEUS_URL', 'http://prometheus:9090', ['http', 'https'])!,
    elasticsearchUrl: r.url('ELASTICSEARCH_URL', 'http://elasticsearch:9200', ['http', 'https'])!,
    elasticsearchApiKey: r.secret('ELASTICSEARCH_API_KEY'),
    githubOrg: r.required('GITHUB_ORG', GITHUB_OWNER, 'a GitHub organization or user name (letters, digits, single hyphens, up to 39)'),
    githubApiUrl: r.url('GITHUB_API_URL', 'https://api.github.com', ['http', 'https'])!,
    githubAuth: r.githubAuth(),
    githubWritesPerMinute: r.integer('GITHUB_WRITES_PER_MINUTE', 80, 1, 1_000_000),
    githubWritesPerHour: r.integer('GITHUB_WRITES_PER_HOUR', 500, 1, 60_000_000),
    githubPointsPerMinute: r.integer('GITHUB_POINTS_PER_MINUTE', 900, 5, 10_000_000),
    githubCiPollSec: r.integer('GITHUB_CI_POLL_SECONDS', Math.min(60, 6 * pollIntervalSec), 1, 3600, 'seconds'),
    monitoredApps: r.list('MONITORED_APPS', APP_NAME, 'Argo CD Application names'),
    argocdUrl,
    argocdToken,
    argocdNamespace: r.matching('ARGOCD_NAMESPACE', 'argocd', DNS_LABEL, 'a Kubernetes namespace name')!,
    watchNamespaces: r.list('WATCH_NAMESPACES', DNS_LABEL, 'Kubernetes namespace names'),
    auditFallbackDir: r.matching('AUDIT_FALLBACK_DIR', '/var/lib/ai-operator/audit', /^\//, 'an absolute directory path')!,
    dryRun: r.boolean('DRY_RUN', false),
    leaderElection: r.boolean('LEADER_ELECTION', true),
    leaderLeaseSec: r.integer('LEADER_LEASE_SECONDS', DEFAULT_LEADER_LEASE_SEC, 3, 60, 'seconds'),
    httpPort: r.integer('HTTP_PORT', 8080, 1, 65_535),
    approvalPolicyName: r.matching('APPROVAL_POLICY_NAME', 'ai-operator-approvals', OBJECT_NAME, 'a ValidatingAdmissionPolicy name (lowercase DNS subdomain)')!,
    approvalPolicyBindingName: r.matching('APPROVAL_POLICY_BINDING_NAME', 'ai-operator-approvals', OBJECT_NAME, 'a ValidatingAdmissionPolicyBinding name (lowercase DNS subdomain)')!,
  };
  const tracing = r.tracing();
  if (tracing) config.tracing = tracing;
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return config;
}

/**
 * A revision's share of Healthy samples over its deployed window, from Argo CD's own metric (SPEC §6.3). Per
 * app instance: `namespace` is the Application's, so a same-named app in another namespace (apps in any
 * namespace, or another Argo CD's) never counts towards this one's uptime. A window with samples but none
 * Healthy is 0, not "no data" (`or vector(0)`: the Healthy count alone is empty then): read as no data, a
 * revision Degraded throughout would send the search to CI-only selection, which could choose it.
 */
export const DEFAULT_UPTIME_QUERY =
  '(sum(count_over_time(argocd_app_info{name="$app",namespace="$namespace",health_status="Healthy"}[$window])) or vector(0)) / sum(count_over_time(argocd_app_info{name="$app",namespace="$namespace"}[$window]))';

/**
 * The settings of an app where its RollbackPolicy is silent, or when none selects it:
 * the environment's values, and for what no variable sets the RollbackPolicy CRD's
 * schema defaults (crds/ai-operator.io_rollbackpolicies.yaml).
 */
export function policyDefaults(config: Config): Defaults {
  return {
    intervalSeconds: config.pollIntervalSec,
    persistenceChecks: config.degradationPersistenceChecks,
    uptimeQuery: DEFAULT_UPTIME_QUERY,
    minUptime: 0.99,
    window: '24h',
    maxCommits: 50,
    searchTimeoutSeconds: config.candidateSearchTimeoutSec,
    ciTimeoutSeconds: config.ciWaitTimeoutSec,
    approvalTimeoutSeconds: config.mergeApprovalTimeoutSec,
    mergeMethod: 'squash',
    healthRestorationSeconds: config.healthRestorationSec,
    recoveryTimeoutSeconds: config.recoveryTimeoutSec,
    cooldownSeconds: config.cooldownSec,
    maxAttemptsPerHour: config.maxAttemptsPerHour,
    dryRun: config.dryRun,
    podSignals: DEFAULT_POD_SIGNALS,
    monitoredApps: config.monitoredApps,
  };
}
