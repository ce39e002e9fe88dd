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

/** An answer outside Prometheus' API description, or one no uptime can be read from: asking again gets the same. */
function unreadable(detail: string): IntegrationError {
  return new IntegrationError(PROMETHEUS_CALL, 'INVALID_ARGUMENT', detail);
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A sample's `[time, "value"]` pair, field by field (`at` names it in the message). */
function sampleValue(pair: unknown, at: string): unknown {
  if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[1] !== 'string') {
    throw unreadable(`${at} is ${JSON.stringify(pair)?.slice(0, 80) ?? 'missing'}, not a [time, "value"] pair`);
  }
  return pair[1];
}

/**
 * The number an instant query answered: one sample (or a scalar) → its value;
 * nothing, NaN or ±Inf (0/0 and x/0 over an empty window) → undefined. Every
 * other shape — a matrix or a string, several series, a field of the wrong type,
 * a value that is not a ratio from 0 to 1 — is INVALID_ARGUMENT naming the field,
 * so the candidate search falls back to CI and says why (never a TypeError).
 */
export function valueOf(body: unknown): number | undefined {
  if (!isObject(body)) throw unreadable(`the answer is ${JSON.stringify(body)?.slice(0, 80)}, not a JSON object`);
  if (body.status !== 'success') {
    throw unreadable(`status is ${JSON.stringify(body.status) ?? 'missing'}${typeof body.error === 'string' ? ` (${body.error.slice(0, 200)})` : ''}, not "success"`);
  }
  const data = body.data;
  if (!isObject(data)) throw unreadable('data is missing from a "success" answer');
  let raw: unknown;
  if (data.resultType === 'scalar') {
    raw = sampleValue(data.result, 'data.result');
  } else if (data.resultType === 'vector') {
    const samples = data.result;
    if (!Array.isArray(samples)) throw unreadable(`data.result of a vector is ${JSON.stringify(samples)?.slice(0, 80) ?? 'missing'}, not a list`);
    if (samples.length === 0) return undefined;
    // Several series mean the template lacks an aggregation: which one is "the"
    // uptime is unknowable, so the caller must fall back rather than guess.
    if (samples.length > 1) throw unreadable(`the query returned ${samples.length} series; an uptime query must return one`);
    const sample: unknown = samples[0];
    raw = sampleValue(isObject(sample) ? sample.value : undefined, 'data.result[0].value');
  } else {
    const type = typeof data.resultType === 'string' ? `a ${data.resultType}` : `resultType ${JSON.stringify(data.resultType) ?? 'missing'}`;
    throw unreadable(`the query returned ${type}; an uptime query must return a vector or a scalar`);
  }
  // Prometheus writes NaN and infinities as these words (0/0 and x/0 over an empty window).
  if (raw === 'NaN' || raw === '+Inf' || raw === '-Inf') return undefined;
  // Number() would read '' as 0 and '0x1' as 1.
  if (typeof raw !== 'string' || !/^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(raw)) {
    throw unreadable(`the sample value ${JSON.stringify(raw)} is not a number`);
  }
  const value = Number(raw);
  // I5 compares a share of Healthy samples with minUptime: a count or a percentage would pass any minimum.
  if (value < 0 || value > 1) throw unreadable(`the query returned ${value}, not a ratio from 0 to 1`);
  return value;
}

/** The JSON of a 200 answer, or why it is not Prometheus' (an HTML login page, a body cut short). */
function parseAnswer(text: string, contentType: string | null): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    // A proxy's error page or a cut connection may be gone on the next try: transient.
    const start = text.slice(0, 60).replace(/\s+/g, ' ');
    throw new IntegrationError(PROMETHEUS_CALL, 'UNAVAILABLE', `answered 200 with a body that is not JSON (content-type ${contentType ?? 'none'}, ${text.length} bytes, starting ${JSON.stringify(start)})`);
  }
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
      return valueOf(parseAnswer(text, response.headers.get('content-type')));
    }, { classify, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}
