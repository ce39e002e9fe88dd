// Metrics history for candidate selection (SPEC §6.3): one instant query through
// Prometheus' HTTP API. The candidate resolver renders the query (and escapes
// its label values); this file only asks and reads the answer.
import { IntegrationError } from '../ports/errors.ts';
import type { MetricsHistoryPort } from '../ports/prometheus.ts';
import { call, classifyHttpError, type CallMetrics, type Classified, HttpStatusError } from './call.ts';

export const PROMETHEUS_CALL = 'queryPrometheus';

export interface PrometheusHistoryOptions {
  /** Base URL, e.g. http://prometheus:9090 (a path prefix is kept). */
  url: string;
  metrics?: CallMetrics;
  timeoutMs?: number;
  /** Delays before retries 1–3; tests shorten them. */
  backoffMs?: readonly number[];
  /** Extra request headers, e.g. an Authorization header for a protected Prometheus. */
  headers?: Record<string, string>;
}

/** The part of Prometheus' query response this port reads. */
interface QueryResponse {
  status: 'success' | 'error';
  error?: string;
  errorType?: string;
  data?: { resultType: string; result: unknown };
}

// Prometheus answers 422 when an expression cannot be executed: the query is at
// fault, not the server, so it must not be read as a conflict nor retried.
function classify(error: unknown): Classified {
  if (error instanceof HttpStatusError && (error.status === 400 || error.status === 422)) {
    return { code: 'INVALID_ARGUMENT', message: `HTTP ${error.status}: ${error.message}` };
  }
  return classifyHttpError(error);
}

/**
 * The number an instant query answered: one sample (or a scalar) → its value;
 * nothing, NaN or ±Inf (0/0 and x/0 over an empty window) → undefined.
 */
export function valueOf(body: QueryResponse): number | undefined {
  const data = body.data;
  if (body.status !== 'success' || !data) throw new Error(`unexpected response: ${JSON.stringify(body).slice(0, 200)}`);
  let raw: unknown;
  if (data.resultType === 'scalar') {
    raw = (data.result as [number, string])[1];
  } else if (data.resultType === 'vector') {
    const samples = data.result as Array<{ value: [number, string] }>;
    if (samples.length === 0) return undefined;
    // Several series mean the template lacks an aggregation: which one is "the"
    // uptime is unknowable, so the caller must fall back rather than guess.
    if (samples.length > 1) throw new IntegrationError(PROMETHEUS_CALL, 'INVALID_ARGUMENT', `the query returned ${samples.length} series; an uptime query must return one`);
    raw = samples[0]!.value[1];
  } else {
    throw new IntegrationError(PROMETHEUS_CALL, 'INVALID_ARGUMENT', `the query returned a ${data.resultType}; an uptime query must return a vector or a scalar`);
  }
  const value = Number(raw);
  return Number.isFinite(value) ? value : undefined;
}

export class PrometheusHistory implements MetricsHistoryPort {
  private readonly endpoint: string;
  private readonly options: PrometheusHistoryOptions;

  constructor(options: PrometheusHistoryOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/api/v1/query`;
    this.options = options;
  }

  async uptime(query: string, at: number): Promise<number | undefined> {
    const url = `${this.endpoint}?${new URLSearchParams({ query, time: String(at) })}`;
    return call(PROMETHEUS_CALL, async (signal) => {
      const response = await fetch(url, { signal, headers: { accept: 'application/json', ...this.options.headers } });
      const text = await response.text();
      if (!response.ok) {
        // Prometheus explains a failed query in the JSON body's `error`.
        const detail = (() => {
          try {
            return (JSON.parse(text) as QueryResponse).error ?? text;
          } catch (error) {
            if (error instanceof SyntaxError) return text;
            throw error;
          }
        })();
        throw new HttpStatusError('Prometheus', response.status, response.headers, detail.slice(0, 500));
      }
      return valueOf(JSON.parse(text) as QueryResponse);
    }, { classify, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}
