// Reading traces back from Jaeger's query API (`GET /api/traces/{traceId}`, the
// JSON its UI reads), and printing one as an indented tree.

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
