import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigErrors, DEFAULT_UPTIME_QUERY, installationNameFrom, loadConfig, policyDefaults } from './config.ts';

const minimal = { GITHUB_ORG: 'acme', GITHUB_TOKEN: 'ghp_secret123' };

function errorsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...minimal, ...env });
  } catch (error) {
    if (error instanceof ConfigErrors) return error.message.split('\n');
    throw error;
  }
  return [];
}

describe('loadConfig', () => {
  it('applies the seed defaults', () => {
    const config = loadConfig(minimal);
    expect(config).toMatchObject({
      pollIntervalSec: 10,
      degradationPersistenceChecks: 3,
      healthRestorationSec: 60,
      candidateSearchTimeoutSec: 120,
      ciWaitTimeoutSec: 300,
      mergeApprovalTimeoutSec: 3600,
      attemptRetentionSec: 604_800,
      logLevel: 'INFO',
      natsServers: ['nats://nats:4222'],
      etcdEndpoints: ['http://etcd:2379'],
      etcdPrefix: '',
      prometheusUrl: 'http://prometheus:9090',
      elasticsearchUrl: 'http://elasticsearch:9200',
      githubOrg: 'acme',
      githubApiUrl: 'https://api.github.com',
      githubAuth: { kind: 'token', token: 'ghp_secret123' },
      githubWritesPerMinute: 80,
      githubWritesPerHour: 500,
      githubPointsPerMinute: 900,
      githubCiPollSec: 60,
      monitoredApps: [],
      argocdNamespace: 'argocd',
      watchNamespaces: [],
      dryRun: false,
      leaderElection: true,
      httpPort: 8080,
      approvalPolicyName: 'ai-operator-approvals',
      approvalPolicyBindingName: 'ai-operator-approvals',
    });
  });

  it('reads every variable it is given', () => {
    const config = loadConfig({
      ...minimal,
      POLL_INTERVAL_SEC: '5', DEGRADATION_PERSISTENCE_CHECKS: '4', HEALTH_RESTORATION_DURATION: '30',
      CANDIDATE_SEARCH_TIMEOUT: '60', CI_WAIT_TIMEOUT: '90', MERGE_APPROVAL_TIMEOUT: '120', RECOVERY_TIMEOUT: '300',
      ROLLBACK_COOLDOWN: '0', ATTEMPT_RETENTION: '86400', LOG_LEVEL: 'debug', NATS_URL: 'nats://a:4222, nats://b:4222', ETCD_ENDPOINTS: 'e1:2379,https://e2:2379', ETCD_PREFIX: '/team-a/prod',
      PROMETHEUS_URL: 'http://prom:9090/', ELASTICSEARCH_URL: 'https://es:9200', ELASTICSEARCH_API_KEY: 'k',
      GITHUB_API_URL: 'https://ghe.example.com/api/v3', MONITORED_APPS: 'payment-service, order-service,payment-service',
      ARGOCD_URL: 'https://argocd.example.com', ARGOCD_TOKEN: 't', ARGOCD_NAMESPACE: 'gitops',
      AUDIT_FALLBACK_DIR: '/data/audit', DRY_RUN: 'true', LEADER_ELECTION: 'false', LEADER_LEASE_SECONDS: '10', HTTP_PORT: '9000',
      APPROVAL_POLICY_NAME: 'approvals.example.com', APPROVAL_POLICY_BINDING_NAME: 'approvals-team-a',
      GITHUB_WRITES_PER_MINUTE: '1000', GITHUB_WRITES_PER_HOUR: '20000', GITHUB_POINTS_PER_MINUTE: '9000', GITHUB_CI_POLL_SECONDS: '15',
    });
    expect(config).toMatchObject({
      githubWritesPerMinute: 1000, githubWritesPerHour: 20_000, githubPointsPerMinute: 9000, githubCiPollSec: 15,
      pollIntervalSec: 5, degradationPersistenceChecks: 4, healthRestorationSec: 30, candidateSearchTimeoutSec: 60,
      ciWaitTimeoutSec: 90, mergeApprovalTimeoutSec: 120, recoveryTimeoutSec: 300, cooldownSec: 0, attemptRetentionSec: 86_400, logLevel: 'DEBUG',
      natsServers: ['nats://a:4222', 'nats://b:4222'], etcdEndpoints: ['http://e1:2379', 'https://e2:2379'], etcdPrefix: '/team-a/prod',
      prometheusUrl: 'http://prom:9090', elasticsearchUrl: 'https://es:9200', elasticsearchApiKey: 'k',
      githubApiUrl: 'https://ghe.example.com/api/v3', monitoredApps: ['payment-service', 'order-service'],
      argocdUrl: 'https://argocd.example.com', argocdToken: 't', argocdNamespace: 'gitops',
      auditFallbackDir: '/data/audit', dryRun: true, leaderElection: false, leaderLeaseSec: 10, httpPort: 9000,
      approvalPolicyName: 'approvals.example.com', approvalPolicyBindingName: 'approvals-team-a',
    });
  });

  it('reads CI still pending every 6 intervals by default, at most every minute', () => {
    expect(loadConfig({ ...minimal, POLL_INTERVAL_SEC: '1' }).githubCiPollSec).toBe(6);
    expect(loadConfig({ ...minimal, POLL_INTERVAL_SEC: '30' }).githubCiPollSec).toBe(60);
    expect(errorsOf({ GITHUB_WRITES_PER_MINUTE: '0', GITHUB_CI_POLL_SECONDS: '1h' })).toEqual([
      'invalid configuration: GITHUB_WRITES_PER_MINUTE: expected an integer from 1 to 1000000, got "0"',
      'invalid configuration: GITHUB_CI_POLL_SECONDS: expected an integer from 1 to 3600 (seconds), got "1h"',
    ]);
  });

  it('names the installation from its etcd prefix, and gives it its own stream and subjects (issue 19 §3)', () => {
    const named = (env: Record<string, string>) => {
      const c = loadConfig({ ...minimal, ...env });
      return { name: c.installationName, stream: c.natsStream, subjects: c.natsSubjectPrefix };
    };
    // No prefix: the installation `default`, with SPEC §9's stream and subjects
    expect(named({})).toEqual({ name: 'default', stream: 'AI_OPERATOR', subjects: 'ai-operator' });
    expect(named({ ETCD_PREFIX: '/team-a' })).toEqual({ name: 'team-a', stream: 'AI_OPERATOR_TEAM_A', subjects: 'ai-operator-team-a' });
    expect(named({ ETCD_PREFIX: '/e2e/Run_1.x' })).toEqual({ name: 'e2e-run-1-x', stream: 'AI_OPERATOR_E2E_RUN_1_X', subjects: 'ai-operator-e2e-run-1-x' });
    // A name set explicitly wins over the prefix, and the NATS names follow it unless they are set too
    expect(named({ ETCD_PREFIX: '/team-a', INSTALLATION_NAME: 'payments' })).toEqual({ name: 'payments', stream: 'AI_OPERATOR_PAYMENTS', subjects: 'ai-operator-payments' });
    expect(named({ ETCD_PREFIX: '/team-a', NATS_STREAM: 'AI_OPERATOR', NATS_SUBJECT_PREFIX: 'team-a' })).toEqual({ name: 'team-a', stream: 'AI_OPERATOR', subjects: 'team-a' });
    expect(named({ INSTALLATION_NAME: 'default', ETCD_PREFIX: '/old' })).toEqual({ name: 'default', stream: 'AI_OPERATOR', subjects: 'ai-operator' });
  });

  it('derives a DNS label from any etcd prefix, at most 63 characters, or none when nothing of it is left', () => {
    expect(installationNameFrom('')).toBe('default');
    expect(installationNameFrom('/Team-A')).toBe('team-a');
    expect(installationNameFrom('/a/b/c')).toBe('a-b-c');
    expect(installationNameFrom(`/${'x'.repeat(62)}/y`)).toBe('x'.repeat(62));
    expect(installationNameFrom('/_/.')).toBeUndefined();
  });

  it('accepts GitHub App credentials instead of a token', () => {
    const config = loadConfig({
      GITHUB_ORG: 'acme', GITHUB_APP_ID: '1234', GITHUB_APP_INSTALLATION_ID: '99',
      GITHUB_APP_PRIVATE_KEY: '-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----',
    });
    expect(config.githubAuth).toEqual({ kind: 'app', appId: 1234, installationId: 99, privateKey: '-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----' });
  });

  // Every invalid case: exactly one line, naming the variable and what it expected.
  const invalid: Array<[string, Record<string, string>, RegExp]> = [
    ['POLL_INTERVAL_SEC', { POLL_INTERVAL_SEC: 'ten' }, /integer from 1 to 3600 \(seconds\), got "ten"/],
    ['POLL_INTERVAL_SEC', { POLL_INTERVAL_SEC: '0' }, /integer from 1/],
    ['POLL_INTERVAL_SEC', { POLL_INTERVAL_SEC: '-5' }, /integer from 1/],
    ['POLL_INTERVAL_SEC', { POLL_INTERVAL_SEC: '1.5' }, /integer from 1/],
    ['DEGRADATION_PERSISTENCE_CHECKS', { DEGRADATION_PERSISTENCE_CHECKS: '0' }, /integer from 1 to 100/],
    ['HEALTH_RESTORATION_DURATION', { HEALTH_RESTORATION_DURATION: '60s' }, /integer/],
    ['CANDIDATE_SEARCH_TIMEOUT', { CANDIDATE_SEARCH_TIMEOUT: '99999' }, /integer from 1 to 3600/],
    ['CI_WAIT_TIMEOUT', { CI_WAIT_TIMEOUT: 'abc' }, /integer/],
    ['MERGE_APPROVAL_TIMEOUT', { MERGE_APPROVAL_TIMEOUT: '0' }, /integer from 1/],
    ['RECOVERY_TIMEOUT', { RECOVERY_TIMEOUT: '30' }, /more seconds than HEALTH_RESTORATION_DURATION \(60\)/],
    ['ROLLBACK_COOLDOWN', { ROLLBACK_COOLDOWN: '-1' }, /integer from 0/],
    ['ATTEMPT_RETENTION', { ATTEMPT_RETENTION: '7d' }, /integer from 10 to 31536000 \(seconds\), got "7d"/],
    ['ATTEMPT_RETENTION', { ATTEMPT_RETENTION: '5' }, /integer from 10/],
    ['LEADER_LEASE_SECONDS', { LEADER_LEASE_SECONDS: '2' }, /integer from 3 to 60 \(seconds\), got "2"/],
    ['LOG_LEVEL', { LOG_LEVEL: 'verbose' }, /one of DEBUG, INFO, WARN, ERROR, got "verbose"/],
    ['NATS_URL', { NATS_URL: 'http://nats:4222' }, /nats or tls URL/],
    ['NATS_URL', { NATS_URL: 'nats://' }, /nats or tls URL/],
    ['ETCD_ENDPOINTS', { ETCD_ENDPOINTS: ',' }, /comma-separated list/],
    ['ETCD_ENDPOINTS', { ETCD_ENDPOINTS: 'etcd:2379,ftp://x' }, /http or https URL, got "ftp:\/\/x"/],
    ['ETCD_PREFIX', { ETCD_PREFIX: 'team-a/' }, /etcd key prefix such as \/team-a.*, got "team-a\/"/],
    ['INSTALLATION_NAME', { INSTALLATION_NAME: 'Team_A' }, /a DNS label such as team-a .*, got "Team_A"/],
    ['INSTALLATION_NAME', { INSTALLATION_NAME: 'a'.repeat(64) }, /a DNS label/],
    ['INSTALLATION_NAME', { ETCD_PREFIX: '/_' }, /a DNS label such as team-a \(ETCD_PREFIX "\/_" makes no name\) \(required, not set\)/],
    ['NATS_STREAM', { NATS_STREAM: 'AI.OPERATOR' }, /a JetStream stream name .*, got "AI.OPERATOR"/],
    ['NATS_SUBJECT_PREFIX', { NATS_SUBJECT_PREFIX: 'acme.ai-operator' }, /one NATS subject token .*no dots.*, got "acme.ai-operator"/],
    ['NATS_SUBJECT_PREFIX', { NATS_SUBJECT_PREFIX: 'ai-operator.>' }, /one NATS subject token/],
    ['PROMETHEUS_URL', { PROMETHEUS_URL: 'prometheus:9090' }, /http or https URL/],
    ['ELASTICSEARCH_URL', { ELASTICSEARCH_URL: 'not a url' }, /http or https URL/],
    ['GITHUB_ORG', { GITHUB_ORG: '' }, /required, not set/],
    ['GITHUB_ORG', { GITHUB_ORG: 'bad org!' }, /GitHub organization/],
    ['GITHUB_API_URL', { GITHUB_API_URL: 'api.github.com' }, /http or https URL/],
    ['GITHUB_TOKEN', { GITHUB_TOKEN: '' }, /GitHub token, or GITHUB_APP_ID/],
    ['GITHUB_TOKEN', { GITHUB_TOKEN: 'two words' }, /without whitespace, got \(value hidden\)/],
    ['GITHUB_APP_ID', { GITHUB_TOKEN: '', GITHUB_APP_ID: 'x', GITHUB_APP_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----' }, /integer from 1/],
    ['GITHUB_APP_PRIVATE_KEY', { GITHUB_TOKEN: '', GITHUB_APP_ID: '12' }, /private key \(PEM\).*required/],
    ['GITHUB_APP_PRIVATE_KEY', { GITHUB_TOKEN: '', GITHUB_APP_ID: '12', GITHUB_APP_PRIVATE_KEY: 'secret-not-pem' }, /a PEM private key, got \(value hidden\)/],
    ['GITHUB_APP_INSTALLATION_ID', { GITHUB_APP_ID: '12', GITHUB_APP_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----', GITHUB_APP_INSTALLATION_ID: 'abc' }, /integer/],
    ['MONITORED_APPS', { MONITORED_APPS: 'payment-service,Order_Service' }, /Application names, got "Order_Service" in the list/],
    ['ARGOCD_URL', { ARGOCD_URL: 'argocd.local', ARGOCD_TOKEN: 't' }, /http or https URL/],
    ['ARGOCD_TOKEN', { ARGOCD_URL: 'https://argocd.local' }, /token when ARGOCD_URL is set/],
    ['ARGOCD_NAMESPACE', { ARGOCD_NAMESPACE: 'Argo_CD' }, /Kubernetes namespace name/],
    ['WATCH_NAMESPACES', { WATCH_NAMESPACES: 'argocd,Team_A' }, /Kubernetes namespace names, got "Team_A" in the list/],
    ['AUDIT_FALLBACK_DIR', { AUDIT_FALLBACK_DIR: 'relative/dir' }, /absolute directory path/],
    ['DRY_RUN', { DRY_RUN: 'maybe' }, /true or false, got "maybe"/],
    ['LEADER_ELECTION', { LEADER_ELECTION: 'on' }, /true or false/],
    ['HTTP_PORT', { HTTP_PORT: '70000' }, /integer from 1 to 65535/],
    ['APPROVAL_POLICY_NAME', { APPROVAL_POLICY_NAME: 'AI_Operator' }, /ValidatingAdmissionPolicy name \(lowercase DNS subdomain\), got "AI_Operator"/],
    ['APPROVAL_POLICY_NAME', { APPROVAL_POLICY_NAME: 'a'.repeat(254) }, /ValidatingAdmissionPolicy name/],
    ['APPROVAL_POLICY_BINDING_NAME', { APPROVAL_POLICY_BINDING_NAME: 'binding-' }, /ValidatingAdmissionPolicyBinding name \(lowercase DNS subdomain\), got "binding-"/],
  ];

  it.each(invalid)('rejects a bad %s with one line naming it (%j)', (variable, env, expected) => {
    const lines = errorsOf(env);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^invalid configuration: ${variable}: expected `));
    expect(lines[0]).toMatch(expected);
  });

  it('never echoes a secret value', () => {
    const lines = errorsOf({ GITHUB_TOKEN: 'ghp secret', ARGOCD_URL: 'x', ARGOCD_TOKEN: 'argo secret', ELASTICSEARCH_API_KEY: 'es secret' });
    expect(lines.join('\n')).not.toMatch(/secret/);
  });

  it('reports every bad variable, one line each', () => {
    expect(errorsOf({ POLL_INTERVAL_SEC: 'x', LOG_LEVEL: 'y', DRY_RUN: 'z' })).toHaveLength(3);
  });
});

describe('tracing (OTEL_*)', () => {
  it('is off without an OTLP endpoint, or with OTEL_SDK_DISABLED', () => {
    expect(loadConfig(minimal).tracing).toBeUndefined();
    expect(loadConfig({ ...minimal, OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }).tracing).toBeUndefined();
    expect(loadConfig({ ...minimal, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing).toBeUndefined();
    // As the shipped ConfigMap has them: every key present, the endpoint empty
    expect(loadConfig({ ...minimal, OTEL_SDK_DISABLED: 'false', OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '', OTEL_SERVICE_NAME: '' }).tracing).toBeUndefined();
  });

  it('takes OpenTelemetry\'s defaults once an endpoint is set: /v1/traces on it, http/protobuf, parentbased_always_on, ai-operator', () => {
    expect(loadConfig({ ...minimal, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual({
      endpoint: 'http://collector:4318/v1/traces', protocol: 'http/protobuf', headers: {}, timeoutMs: 10_000,
      sampler: 'parentbased_always_on', samplerRatio: 1, serviceName: 'ai-operator', resourceAttributes: {},
      maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMs: 5000, exportTimeoutMs: 30_000,
    });
  });

  it('reads every variable it is given; the signal-specific endpoint wins', () => {
    const tracing = loadConfig({
      ...minimal,
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://otlp.example.com/api/traces',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=s3cr3t,x-tenant=b%20c', OTEL_EXPORTER_OTLP_TIMEOUT: '5000', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,service.name=ignored,k8s.cluster.name=eu%2C1', OTEL_SERVICE_NAME: 'rollbacks',
      OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_BSP_EXPORT_TIMEOUT: '1000',
    }).tracing;
    expect(tracing).toEqual({
      endpoint: 'https://otlp.example.com/api/traces', protocol: 'http/json', headers: { 'x-api-key': 's3cr3t', 'x-tenant': 'b c' }, timeoutMs: 5000,
      sampler: 'parentbased_traceidratio', samplerRatio: 0.25, serviceName: 'rollbacks',
      resourceAttributes: { 'deployment.environment.name': 'prod', 'service.name': 'ignored', 'k8s.cluster.name': 'eu,1' },
      maxQueueSize: 100, maxExportBatchSize: 100, scheduledDelayMs: 200, exportTimeoutMs: 1000,
    });
    // service.name from the resource attributes when OTEL_SERVICE_NAME is not set
    expect(loadConfig({ ...minimal, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-resource' }).tracing?.serviceName).toBe('from-resource');
  });

  it.each([
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, /^invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT: expected a http or https URL, got "collector:4318"$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, /^invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL: expected http\/protobuf or http\/json \(grpc is not built in: use the collector's OTLP\/HTTP port, 4318\), got "grpc"$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER: 'jaeger_remote' }, /^invalid configuration: OTEL_TRACES_SAMPLER: expected one of always_on, .*, got "jaeger_remote"$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER_ARG: '1.5' }, /^invalid configuration: OTEL_TRACES_SAMPLER_ARG: expected a number from 0 to 1, got "1.5"$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_RESOURCE_ATTRIBUTES: 'team' }, /^invalid configuration: OTEL_RESOURCE_ATTRIBUTES: expected a comma-separated list of key=value \(values percent-encoded\), got "team" in the list$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_BSP_MAX_QUEUE_SIZE: '0' }, /^invalid configuration: OTEL_BSP_MAX_QUEUE_SIZE: expected an integer from 1 to 1000000, got "0"$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'maybe' }, /^invalid configuration: OTEL_SDK_DISABLED: expected true or false, got "maybe"$/],
  ])('stops on a malformed value with one line: %j', (env, line) => {
    const lines = errorsOf(env);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(line);
  });

  it('never echoes a header value (a collector\'s API key)', () => {
    const lines = errorsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cr3t,broken%ZZ=x%ZZs3cr3t' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^invalid configuration: OTEL_EXPORTER_OTLP_HEADERS: expected a comma-separated list of key=value/);
    expect(lines[0]).not.toContain('s3cr3t');
  });
});

// Bad input (issue 12 §4): values an operator's ConfigMap or Secret really holds by mistake.
// Each stops start-up with one line naming the variable — never echoing a credential, never
// split over lines, never a screenful — or, where the value means what it says, is taken.
describe('malformed configuration', () => {
  const cases: Array<{ name: string; input: Record<string, string>; expect: { line: RegExp; hides?: string } | { value: Partial<ReturnType<typeof loadConfig>> } }> = [
    { name: 'a NATS URL with a password and the wrong scheme', input: { NATS_URL: 'http://operator:s3cr3t@nats:4222' },
      expect: { line: /^invalid configuration: NATS_URL: expected a nats or tls URL, got "http:\/\/\*\*\*@nats:4222"$/, hides: 's3cr3t' } },
    { name: 'a NATS token URL without a host', input: { NATS_URL: 'nats://t0ken-value@' },
      expect: { line: /^invalid configuration: NATS_URL: expected a nats or tls URL, got "nats:\/\/\*\*\*@"$/, hides: 't0ken-value' } },
    { name: 'an Elasticsearch URL with credentials and no scheme', input: { ELASTICSEARCH_URL: 'elastic:changeme@es:9200' },
      expect: { line: /^invalid configuration: ELASTICSEARCH_URL: expected a http or https URL, got "\*\*\*@es:9200"$/, hides: 'changeme' } },
    { name: 'an etcd endpoint with credentials and the wrong scheme', input: { ETCD_ENDPOINTS: 'etcd-0:2379,ftp://root:pw-etcd@etcd-1:2379' },
      expect: { line: /^invalid configuration: ETCD_ENDPOINTS: expected a http or https URL, got "ftp:\/\/\*\*\*@etcd-1:2379"$/, hides: 'pw-etcd' } },
    { name: 'a value with a newline (a YAML block scalar)', input: { LOG_LEVEL: 'INFO\nDEBUG' },
      expect: { line: /^invalid configuration: LOG_LEVEL: expected one of DEBUG, INFO, WARN, ERROR, got "INFO\\nDEBUG"$/ } },
    { name: 'a 10,000-character value', input: { ARGOCD_NAMESPACE: 'x'.repeat(10_000) },
      expect: { line: /^invalid configuration: ARGOCD_NAMESPACE: expected a Kubernetes namespace name, got "x{98}…" \(10000 characters\)$/ } },
    { name: 'an exponent', input: { POLL_INTERVAL_SEC: '1e3' }, expect: { line: /^invalid configuration: POLL_INTERVAL_SEC: expected an integer from 1 to 3600 \(seconds\), got "1e3"$/ } },
    { name: 'a hexadecimal number', input: { HTTP_PORT: '0x1F90' }, expect: { line: /^invalid configuration: HTTP_PORT: expected an integer from 1 to 65535, got "0x1F90"$/ } },
    { name: 'full-width digits', input: { CI_WAIT_TIMEOUT: '３００' }, expect: { line: /^invalid configuration: CI_WAIT_TIMEOUT: expected an integer from 1 to 86400 \(seconds\), got "３００"$/ } },
    { name: 'a duration with a unit', input: { MERGE_APPROVAL_TIMEOUT: '1h' }, expect: { line: /^invalid configuration: MERGE_APPROVAL_TIMEOUT: expected an integer from 1 to 604800 \(seconds\), got "1h"$/ } },
    { name: 'a token with a trailing newline inside', input: { GITHUB_TOKEN: 'ghp_abc\nghp_def' },
      expect: { line: /^invalid configuration: GITHUB_TOKEN: expected a token without whitespace, got \(value hidden\)$/, hides: 'ghp_abc' } },
    { name: 'a namespace name of 64 characters', input: { WATCH_NAMESPACES: `argocd,${'n'.repeat(64)}` },
      expect: { line: /^invalid configuration: WATCH_NAMESPACES: expected a comma-separated list of Kubernetes namespace names, got "n{64}" in the list$/ } },
    { name: 'surrounding spaces (a quoted YAML value)', input: { POLL_INTERVAL_SEC: ' 15 ', DRY_RUN: ' TRUE ' }, expect: { value: { pollIntervalSec: 15, dryRun: true } } },
    { name: 'a list of only commas', input: { MONITORED_APPS: ',, ,' }, expect: { value: { monitoredApps: [] } } },
    { name: 'a leading zero', input: { HTTP_PORT: '08080' }, expect: { value: { httpPort: 8080 } } },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    if ('value' in c.expect) {
      expect(loadConfig({ ...minimal, ...c.input })).toMatchObject(c.expect.value);
      return;
    }
    const lines = errorsOf(c.input);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(c.expect.line);
    if (c.expect.hides) expect(lines[0]).not.toContain(c.expect.hides);
  });
});

// Each case starts the operator process: seconds on a busy CI machine, not the unit default of 5.
describe('the operator process with bad configuration', { timeout: 30_000 }, () => {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  const run = promisify(execFile);

  it.each([
    ['POLL_INTERVAL_SEC', { ...minimal, POLL_INTERVAL_SEC: 'soon' }],
    ['GITHUB_ORG', { GITHUB_TOKEN: 'x' }],
    ['ETCD_ENDPOINTS', { ...minimal, ETCD_ENDPOINTS: 'ftp://etcd' }],
  ])('stops at start-up with one line naming %s and a non-zero exit', async (variable, env) => {
    const failure = await run(process.execPath, [main], { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 })
      .then(() => undefined, (error: { code: number; stderr: string; stdout: string }) => error);
    expect(failure).toBeDefined();
    expect(failure!.code).not.toBe(0);
    const lines = failure!.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${variable}: expected`);
    expect(failure!.stdout).toBe('');
  });
});

describe('policyDefaults', () => {
  it('gives a policy-less app the environment\'s values', () => {
    const config = loadConfig({
      ...minimal, POLL_INTERVAL_SEC: '7', DEGRADATION_PERSISTENCE_CHECKS: '5', CANDIDATE_SEARCH_TIMEOUT: '30', CI_WAIT_TIMEOUT: '90',
      MERGE_APPROVAL_TIMEOUT: '900', HEALTH_RESTORATION_DURATION: '20', RECOVERY_TIMEOUT: '400', ROLLBACK_COOLDOWN: '0', MAX_ATTEMPTS_PER_HOUR: '5', DRY_RUN: 'true', MONITORED_APPS: 'web,api',
    });
    expect(policyDefaults(config)).toEqual({
      intervalSeconds: 7, persistenceChecks: 5, searchTimeoutSeconds: 30, ciTimeoutSeconds: 90, approvalTimeoutSeconds: 900,
      healthRestorationSeconds: 20, recoveryTimeoutSeconds: 400, cooldownSeconds: 0, maxAttemptsPerHour: 5, dryRun: true, monitoredApps: ['web', 'api'],
      uptimeQuery: DEFAULT_UPTIME_QUERY, minUptime: 0.99, window: '24h', maxCommits: 50, mergeMethod: 'squash',
      podSignals: { enabled: true, minRestarts: 3, waitingSeconds: 60 },
    });
  });

  it('agrees with the RollbackPolicy schema where no variable sets a value', () => {
    type Schema = { default?: unknown; properties?: Record<string, Schema> };
    const crd = parse(readFileSync(fileURLToPath(new URL('../crds/ai-operator.io_rollbackpolicies.yaml', import.meta.url)), 'utf8')) as {
      spec: { versions: Array<{ schema: { openAPIV3Schema: Schema } }> };
    };
    const spec = crd.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!.properties!;
    const defaults = policyDefaults(loadConfig(minimal));
    expect(defaults.minUptime).toBe(spec.candidate!.properties!.minUptime!.default);
    expect(defaults.window).toBe(spec.candidate!.properties!.window!.default);
    expect(defaults.maxCommits).toBe(spec.candidate!.properties!.maxCommits!.default);
    expect(defaults.mergeMethod).toBe(spec.merge!.properties!.method!.default);
    const podSignals = spec.detection!.properties!.podSignals!.properties!;
    expect(defaults.podSignals).toEqual({ enabled: podSignals.enabled!.default, minRestarts: podSignals.minRestarts!.default, waitingSeconds: podSignals.waitingSeconds!.default });
  });
});
