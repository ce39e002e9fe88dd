// A real Jaeger v2 (the OpenTelemetry Collector-based `jaeger` binary) on
// loopback: OTLP/HTTP in, in-memory trace storage, its query API out
// (`GET /api/traces/{traceId}`, the API its UI reads). Every port is a free one,
// so stacks started side by side on one machine never clash.
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
