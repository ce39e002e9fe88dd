// The alerts live in one place, the PrometheusRule config/prometheus/prometheusrule.yaml.
// The real promtool (the one the stack's Prometheus comes with) lints its groups
// and runs prometheusrule.test.yaml on them; every alert has a case where it fires
// and one where it stays quiet. The PrometheusRule and the ServiceMonitor, as
// `kubectl kustomize config/prometheus` renders them, are accepted by the real API
// server under prometheus-operator's own CRDs (strict field validation, dry run).
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { binaries } from '../../dev/stack/binaries.ts';
import { freshNamespace, kubectl, kubectlOk } from './support/kube.ts';

const run = promisify(execFile);
const stack = inject('stack');
const DIR = fileURLToPath(new URL('../../config/prometheus/', import.meta.url));
const PROVISION = fileURLToPath(new URL('../../dev/scripts/provision.sh', import.meta.url));

interface Rule { alert?: string; record?: string; expr: string }
interface PrometheusRule { kind: string; spec: { groups: Array<{ name: string; rules: Rule[] }> } }
interface RuleTest { alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }

const rule = parse(await readFile(join(DIR, 'prometheusrule.yaml'), 'utf8')) as PrometheusRule;
const unitTests = parse(await readFile(join(DIR, 'prometheusrule.test.yaml'), 'utf8')) as { rule_files: string[]; tests: RuleTest[] };
const alerts = [...new Set(rule.spec.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined))];

async function promtool(args: string[], cwd: string): Promise<{ ok: boolean; output: string }> {
  const { promtool } = await binaries('prometheus');
  return run(promtool!, args, { cwd }).then(
    ({ stdout, stderr }) => ({ ok: true, output: `${stdout}${stderr}` }),
    (error: { stdout?: string; stderr?: string; message: string }) => ({ ok: false, output: `${error.stdout ?? ''}${error.stderr ?? ''}` || error.message }),
  );
}

/** spec.groups as the plain rule file promtool reads, beside a copy of the unit tests. */
async function extracted(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ai-operator-rules-'));
  expect(unitTests.rule_files).toEqual(['prometheusrule.rules.yaml']);
  await writeFile(join(dir, 'prometheusrule.rules.yaml'), stringify({ groups: rule.spec.groups }));
  await copyFile(join(DIR, 'prometheusrule.test.yaml'), join(dir, 'prometheusrule.test.yaml'));
  return dir;
}

describe('alert rules (PrometheusRule config/prometheus/prometheusrule.yaml)', () => {
  it('has the seed\'s five alerts and the ones it lacks', () => {
    expect(rule.kind).toBe('PrometheusRule');
    expect(alerts).toEqual(expect.arrayContaining([
      'AIOperatorHighAbortRate', 'AIOperatorSlowRecovery', 'AIOperatorCIFailures', 'AIOperatorPermissionDenied', 'AIOperatorDown',
      'AIOperatorNotScraped', 'AIOperatorAttemptStuck', 'AIOperatorAttemptStuckAwaitingMerge', 'AIOperatorNoLeader',
      'AIOperatorOutboxBacklog', 'AIOperatorEventDeadLettered', 'AIOperatorAuditSpoolNotDraining',
    ]));
  });

  it('passes promtool check rules with lint errors fatal', async () => {
    const result = await promtool(['check', 'rules', '--lint-fatal', 'prometheusrule.rules.yaml'], await extracted());
    expect(result.ok, result.output).toBe(true);
    expect(result.output).not.toContain('FAILED');
  });

  it('has a case where each alert fires and one where it stays quiet', () => {
    const cases = unitTests.tests.flatMap((t) => t.alert_rule_test ?? []);
    const missing = alerts.flatMap((alert) => [
      ...(cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0) ? [] : [`${alert}: no firing case`]),
      ...(cases.some((c) => c.alertname === alert && c.exp_alerts.length === 0) ? [] : [`${alert}: no quiet case`]),
    ]);
    expect(missing).toEqual([]);
    // and every case is about an alert that exists
    expect(cases.map((c) => c.alertname).filter((name) => !alerts.includes(name))).toEqual([]);
  });

  it('passes promtool test rules', async () => {
    const result = await promtool(['test', 'rules', 'prometheusrule.test.yaml'], await extracted());
    expect(result.ok, `promtool test rules prometheusrule.test.yaml:\n${result.output}`).toBe(true);
  });
});

describe('config/prometheus on the real API server, under prometheus-operator\'s CRDs', () => {
  let namespace: string;
  let objects: Array<Record<string, unknown> & { kind: string; metadata: Record<string, unknown> }>;

  beforeAll(async () => {
    // The two CRDs from prometheus-operator's module (dev/scripts/provision.sh); cluster-scoped and
    // inert without the operator: nothing else on the stack changes.
    const { stdout } = await run('bash', [PROVISION, 'prometheus-operator-crds'], { timeout: 10 * 60_000 });
    const crds = Object.fromEntries(stdout.trim().split('\n').map((line) => line.split('=') as [string, string]));
    await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '-f', crds['prometheusrules-crd']!, '-f', crds['servicemonitors-crd']!]);
    await kubectlOk(stack, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/prometheusrules.monitoring.coreos.com', 'crd/servicemonitors.monitoring.coreos.com']);
    namespace = await freshNamespace(stack, 'prometheus-config');
    const rendered = await kubectlOk(stack, ['kustomize', 'config/prometheus']);
    objects = parseAllDocuments(rendered).map((d) => d.toJS() as (typeof objects)[number]);
  }, 11 * 60_000);

  const dryRun = (object: Record<string, unknown>) =>
    kubectl(stack, ['create', '--dry-run=server', '--validate=strict', '-o', 'json', '-f', '-'], JSON.stringify(object));
  /** The object in the test's namespace (the shipped one says ai-operator-system). */
  const here = (object: (typeof objects)[number]): (typeof objects)[number] => ({ ...object, metadata: { ...object.metadata, namespace } });

  it('renders the PrometheusRule and the ServiceMonitor', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['PrometheusRule', 'ServiceMonitor']);
  });

  it('has both accepted by the API server\'s schemas', async () => {
    for (const object of objects) {
      const result = await dryRun(here(object));
      expect(result.stderr, object.kind).toBe('');
      expect(result.code, object.kind).toBe(0);
    }
  });

  it('is checked for real: a misspelt field is refused', async () => {
    const monitor = here(objects.find((o) => o.kind === 'ServiceMonitor')!);
    const spec = monitor.spec as { endpoints: Array<Record<string, unknown>> };
    const typo = { ...monitor, spec: { ...spec, endpoints: [{ ...spec.endpoints[0], intervall: '30s' }] } };
    const result = await dryRun(typo);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('intervall');
  });

  it('scrapes the operator\'s Service: label app.kubernetes.io/name=ai-operator, port http, /metrics, job ai-operator', () => {
    const monitor = objects.find((o) => o.kind === 'ServiceMonitor') as unknown as {
      spec: { jobLabel: string; selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> };
    };
    expect(monitor.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'ai-operator' });
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
    // The rules select job="ai-operator": that is the value of this label on the Service.
    expect(monitor.spec.jobLabel).toBe('app.kubernetes.io/name');
  });
});
