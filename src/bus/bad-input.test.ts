// Malformed and oversized JetStream messages (issue 12 §4), each handed to the
// consumer's delivery exactly as the client hands it over: rejected with a reason
// and a message that names the field, terminated (never redelivered), counted and
// reported — with the report bounded, however large the message — and the next
// valid event is still handled: one bad message blocks nothing.
import { Counter, Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { exampleEvent } from './examples.ts';
import { deliver, EVENTS_REJECTED_METRIC, type DeliveryContext, type Rejected } from './jetstream.ts';
import type { RejectReason } from './validate.ts';

const SUBJECT = 'ai-operator.pr.created';
const valid = () => structuredClone(exampleEvent('pr.created')) as unknown as Record<string, any>;
const json = (mutate: (e: Record<string, any>) => void) => {
  const event = valid();
  mutate(event);
  return JSON.stringify(event);
};
/** What a log line, an audit record and a term reason may carry of the errors. */
const REPORT_LIMIT = 2_000;

interface EventsBadInputCase {
  name: string;
  input: { subject?: string; body: string | Uint8Array };
  expect: { reason: RejectReason; errors: string | RegExp };
}

const CASES: EventsBadInputCase[] = [
  { name: 'an empty body', input: { body: '' }, expect: { reason: 'NotJSON', errors: 'body: not JSON (Unexpected end of JSON input)' } },
  { name: 'whitespace only', input: { body: ' \n ' }, expect: { reason: 'NotJSON', errors: 'body: not JSON' } },
  { name: 'truncated JSON', input: { body: JSON.stringify(valid()).slice(0, 120) }, expect: { reason: 'NotJSON', errors: 'body: not JSON' } },
  { name: 'bytes that are not UTF-8', input: { body: new Uint8Array([0xff, 0xfe, 0x7b, 0x80, 0x7d]) }, expect: { reason: 'NotJSON', errors: 'body: not JSON' } },
  { name: 'a gzip-compressed body', input: { body: new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00]) }, expect: { reason: 'NotJSON', errors: 'body: not JSON' } },
  { name: 'a JSON number', input: { body: '42' }, expect: { reason: 'SchemaInvalid', errors: 'event: must be an object' } },
  { name: 'a JSON string', input: { body: '"pr.created"' }, expect: { reason: 'SchemaInvalid', errors: 'event: must be an object' } },
  { name: 'a JSON array of events', input: { body: JSON.stringify([valid(), valid()]) }, expect: { reason: 'SchemaInvalid', errors: 'event: must be an object' } },
  { name: 'JSON null', input: { body: 'null' }, expect: { reason: 'SchemaInvalid', errors: 'event: must be an object' } },
  { name: 'no type', input: { body: json((e) => delete e.type) }, expect: { reason: 'UnknownType', errors: 'type: unknown event type null' } },
  { name: 'a type that is a number', input: { body: json((e) => (e.type = 7)) }, expect: { reason: 'UnknownType', errors: 'type: unknown event type 7' } },
  { name: 'a type of another system', input: { body: json((e) => (e.type = 'com.github.push')) }, expect: { reason: 'UnknownType', errors: 'type: unknown event type "com.github.push"' } },
  { name: 'no id', input: { body: json((e) => delete e.id) }, expect: { reason: 'SchemaInvalid', errors: 'id: is required' } },
  { name: 'no data', input: { body: json((e) => delete e.data) }, expect: { reason: 'SchemaInvalid', errors: 'data: is required' } },
  { name: 'data.app that is a string', input: { body: json((e) => (e.data.app = 'argocd/payment-service')) }, expect: { reason: 'SchemaInvalid', errors: 'data.app: must be object' } },
  { name: 'a PR number that is a string', input: { body: json((e) => (e.data.number = '42')) }, expect: { reason: 'SchemaInvalid', errors: 'data.number: must be integer' } },
  { name: 'a correlationid that is not a UUID', input: { body: json((e) => (e.correlationid = 'abc')) }, expect: { reason: 'SchemaInvalid', errors: 'correlationid: must match format "uuid"' } },
  { name: 'an unparsable time', input: { body: json((e) => (e.time = '27/02/2026 10:30')) }, expect: { reason: 'SchemaInvalid', errors: 'time: must match format "date-time"' } },
  { name: 'a subject that is not the app', input: { body: json((e) => (e.subject = 'argocd/other-service')) }, expect: { reason: 'SchemaInvalid', errors: 'subject: must equal data.app as namespace/name ("argocd/payment-service")' } },
  { name: 'a __proto__ key', input: { body: json((e) => Object.defineProperty(e.data, '__proto__', { value: { admin: true }, enumerable: true })) }, expect: { reason: 'SchemaInvalid', errors: 'data.__proto__: is not allowed' } },
  { name: 'a valid event on another type\'s subject', input: { subject: 'ai-operator.pr.merged', body: JSON.stringify(valid()) }, expect: { reason: 'SubjectMismatch', errors: 'type: io.ai-operator.pr.created does not belong on subject ai-operator.pr.merged' } },
  // Oversized: the server takes up to max_payload (1 MiB by default); what is said of it stays small.
  { name: '1 MiB of garbage', input: { body: 'x'.repeat(1024 * 1024) }, expect: { reason: 'NotJSON', errors: /^body: not JSON \(Unexpected token 'x', "x+"\.\.\. is not valid JSON\)$/ } },
  { name: '50,000 unknown fields (one error each)', input: { body: json((e) => { for (let i = 0; i < 50_000; i++) e.data[`f${i}`] = i; }) },
    expect: { reason: 'SchemaInvalid', errors: /^data\.f0: is not allowed; data\.f1: is not allowed; .* and 49990 more$/ } },
  { name: 'a 900 KiB field name', input: { body: json((e) => (e.data['k'.repeat(900 * 1024)] = 1)) }, expect: { reason: 'SchemaInvalid', errors: /^data\.k+…: is not allowed$/ } },
  { name: 'JSON nested 100,000 deep', input: { body: JSON.stringify(valid()).replace('"number":42', `"number":${'['.repeat(100_000)}${']'.repeat(100_000)}`) },
    expect: { reason: 'SchemaInvalid', errors: 'data.number: must be integer' } },
];

function setup() {
  const registry = new Registry();
  const rejected = new Counter({ name: EVENTS_REJECTED_METRIC, help: 'test', labelNames: ['reason'], registers: [registry] });
  const lines: Array<{ message: string; fields: Record<string, unknown> }> = [];
  const record = (message: string, fields: Record<string, unknown> = {}) => { lines.push({ message, fields }); };
  const handled: string[] = [];
  const reports: Rejected[] = [];
  const context: DeliveryContext = {
    subjectPrefix: 'ai-operator', handler: (event) => { handled.push(event.id); }, onRejected: (r) => { reports.push(r); },
    nakDelayMs: 1000, rejected, log: { debug: record, info: record, warn: record, error: record },
  };
  return { context, lines, handled, reports, rejected };
}

const message = (subject: string, body: string | Uint8Array) => ({
  subject, data: typeof body === 'string' ? new TextEncoder().encode(body) : body, ack: vi.fn(), nak: vi.fn(), term: vi.fn(),
});

describe('malformed and oversized JetStream messages', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const { context, lines, handled, reports, rejected } = setup();
    const bad = message(c.input.subject ?? SUBJECT, c.input.body);
    const next = exampleEvent('pr.created', { id: 'the-next-event' });
    const good = message(SUBJECT, JSON.stringify(next));

    // When the bad message and then a valid one are delivered
    expect(await deliver(bad, context)).toBe('rejected');
    expect(await deliver(good, context)).toBe('handled');

    // Then the bad one is terminated, never acked or redelivered, and not handed to the handler
    expect(bad.term).toHaveBeenCalledOnce();
    expect(bad.ack).not.toHaveBeenCalled();
    expect(bad.nak).not.toHaveBeenCalled();
    expect(handled).toEqual(['the-next-event']);
    // And reported with its reason and a message naming the field, bounded in size
    expect(reports).toHaveLength(1);
    expect(reports[0]!.reason).toBe(c.expect.reason);
    if (typeof c.expect.errors === 'string') expect(reports[0]!.errors).toContain(c.expect.errors);
    else expect(reports[0]!.errors).toMatch(c.expect.errors);
    expect(reports[0]!.errors.length).toBeLessThanOrEqual(REPORT_LIMIT);
    // And one warning line says so, as bounded; the term reason too
    const warning = lines.filter((l) => l.message === 'Rejected malformed event');
    expect(warning).toHaveLength(1);
    expect(warning[0]!.fields).toMatchObject({ subject: bad.subject, reason: c.expect.reason });
    expect(JSON.stringify(warning[0]!.fields).length).toBeLessThanOrEqual(REPORT_LIMIT + 200);
    expect(String(bad.term.mock.calls[0]![0]).length).toBeLessThanOrEqual(256);
    // And counted under its reason
    expect((await rejected.get()).values).toEqual([expect.objectContaining({ labels: { reason: c.expect.reason }, value: 1 })]);
  });
});
