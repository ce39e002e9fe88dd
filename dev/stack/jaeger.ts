// A real Jaeger v2 (the OpenTelemetry Collector-based `jaeger` binary) on
// loopback: OTLP/HTTP in, in-memory trace storage, its query API out
// (`GET /api/traces/{traceId}`, the API its UI reads). Every port is a free one,
// so stacks started side by side on one machine never clash. Below, reading a
// trace back through that API, and printing it as an indented span tree.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface JaegerInstance {
  /** What OTEL_EXPORTER_OTLP_ENDPOINT is set to (OTLP over HTTP; traces are POSTed to `/v1/traces`). */
  otlpHttp: string;
  /** The query API (and the UI, a placeholder page in this build): `${query}/api/traces/{traceId}`. */
  query: string;
  process: ManagedProcess;
}

/** The collector configuration: one pipeline, OTLP/HTTP → memory, read back through jaeger_query. */
export function jaegerConfig(ports: { otlp: number; query: number; queryGrpc: number; health: number }, maxTraces = 100_000): string {
  return [
    'service:',
    '  extensions: [jaeger_storage, jaeger_query, healthcheckv2]',
    '  pipelines:',
    '    traces:',
    '      receivers: [otlp]',
    '      processors: [batch]',
    '      exporters: [jaeger_storage_exporter]',
    '  telemetry:',
    '    resource:',
    '      service.name: jaeger',
    '    metrics:',
    '      level: none',
    '    traces:',
    '      level: none',
    '    logs:',
    '      level: warn',
    'extensions:',
    '  healthcheckv2:',
    '    use_v2: true',
    '    http:',
    `      endpoint: 127.0.0.1:${ports.health}`,
    '  jaeger_storage:',
    '    backends:',
    '      memstore:',
    '        memory:',
    `          max_traces: ${maxTraces}`,
    '  jaeger_query:',
    // Jaeger tracing itself would send its spans to localhost:4317: another collector's, maybe.
    '    enable_tracing: false',
    '    storage:',
    '      traces: memstore',
    '    http:',
    `      endpoint: 127.0.0.1:${ports.query}`,
    '    grpc:',
    `      endpoint: 127.0.0.1:${ports.queryGrpc}`,
    'receivers:',
    '  otlp:',
    '    protocols:',
    '      http:',
    `        endpoint: 127.0.0.1:${ports.otlp}`,
    'processors:',
    '  batch:',
    '    timeout: 200ms',
    'exporters:',
    '  jaeger_storage_exporter:',
    '    trace_storage: memstore',
    '',
  ].join('\n');
}

export async function startJaeger(workDir: string, name = 'jaeger'): Promise<JaegerInstance> {
  const bin = (await binaries('jaeger')).jaeger!;
  const ports = { otlp: await freePort(), query: await freePort(), queryGrpc: await freePort(), health: await freePort() };
  const config = join(workDir, `${name}.yaml`);
  await writeFile(config, jaegerConfig(ports));
  const proc = spawnManaged(name, bin, [`--config=file:${config}`], join(workDir, `${name}.log`));
  const query = `http://127.0.0.1:${ports.query}`;
  const otlpHttp = `http://127.0.0.1:${ports.otlp}`;
  // Up when the query API answers and the OTLP receiver takes a (empty) request.
  await waitHealthy(proc, async () => await httpOk(`${query}/api/services`) && await otlpAccepts(otlpHttp), 60_000);
  return { otlpHttp, query, process: proc };
}

async function otlpAccepts(base: string): Promise<boolean> {
  try {
    const response = await fetch(`${base}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    return response.ok;
  } catch {
    return false;
  }
}

// ---- reading traces back ----------------------------------------------------------

export interface JaegerTag { key: string; type: string; value: unknown }
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  /** Microseconds since the epoch. */
  startTime: number;
  /** Microseconds. */
  duration: number;
  tags: JaegerTag[];
  logs: Array<{ timestamp: number; fields: JaegerTag[] }>;
  processID: string;
}
export interface JaegerTrace { traceID: string; spans: JaegerSpan[]; processes: Record<string, { serviceName: string; tags: JaegerTag[] }> }

export const tag = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;
/** An array attribute: Jaeger shows it as its JSON text. */
export const list = (span: JaegerSpan, key: string): unknown[] => JSON.parse(String(tag(span, key) ?? '[]')) as unknown[];
export const parentOf = (span: JaegerSpan) => span.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
export const field = (fields: JaegerTag[], key: string) => fields.find((f) => f.key === key)?.value;

export async function jaegerTrace(queryUrl: string, traceId: string): Promise<JaegerTrace | undefined> {
  const response = await fetch(`${queryUrl}/api/traces/${traceId}`);
  if (!response.ok) return undefined;
  return ((await response.json()) as { data: JaegerTrace[] }).data[0];
}

/** The trace as text: one line per span, children indented under their parent, in start order, with its duration. */
export function traceTree(trace: JaegerTrace): string {
  const children = new Map<string | undefined, JaegerSpan[]>();
  const ids = new Set(trace.spans.map((s) => s.spanID));
  for (const span of trace.spans) {
    const parent = parentOf(span);
    const key = parent && ids.has(parent) ? parent : undefined;
    children.set(key, [...(children.get(key) ?? []), span]);
  }
  const t0 = Math.min(...trace.spans.map((s) => s.startTime));
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const span of (children.get(parent) ?? []).sort((a, b) => a.startTime - b.startTime)) {
      const transitions = span.logs.filter((l) => field(l.fields, 'event') === 'transition').map((l) => `${field(l.fields, 'ai_operator.to')}`);
      const error = tag(span, 'error_code') ?? (tag(span, 'otel.status_code') === 'ERROR' ? 'error' : undefined);
      lines.push(`${'  '.repeat(depth)}${span.operationName}  +${((span.startTime - t0) / 1e6).toFixed(3)}s ${(span.duration / 1e3).toFixed(1)}ms`
        + `${transitions.length > 0 ? `  -> ${transitions.join(' -> ')}` : ''}${error ? `  [${String(error)}]` : ''}`);
      walk(span.spanID, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines.join('\n');
}
