import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { STATES } from '../fsm/table.ts';
import { exampleEvent } from './examples.ts';
import { EVENT_TYPES, makeEvent, subjectFor, typeOfEvent } from '../fsm/cloud-events.ts';
import { parseEvent, SCHEMA_DIR, validateEvent } from './validate.ts';

function rejectionOf(value: unknown): string {
  const result = validateEvent(value);
  if (result.ok) throw new Error('expected the event to be rejected');
  return result.errors;
}

describe('event schemas', () => {
  it('has exactly one schema per event type', () => {
    const files = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(EVENT_TYPES.map((t) => `${t}.json`).sort());
  });

  it('names the same FSM states as src/fsm', () => {
    for (const type of ['fsm.transition', 'rollback.aborted']) {
      const schema = JSON.parse(readFileSync(new URL(`${type}.json`, SCHEMA_DIR), 'utf8'));
      const field = type === 'fsm.transition' ? 'from' : 'fromState';
      expect(schema.properties.data.properties[field].enum).toEqual([...STATES]);
    }
  });

  it.each(EVENT_TYPES)('accepts the distributed tracing extension (traceparent) on a %s event, and refuses a malformed one', (type) => {
    const event = { ...exampleEvent(type), traceparent: '00-5b1c2d3e4f504a6b8c7d9e0f1a2b3c4d-00f067aa0ba902b7-01' };
    expect(validateEvent(event).ok).toBe(true);
    expect(rejectionOf({ ...event, traceparent: '00-5B1C2D3E4F504A6B8C7D9E0F1A2B3C4D-00f067aa0ba902b7-01' })).toContain('traceparent');
  });

  it.each(EVENT_TYPES)('accepts a valid %s event', (type) => {
    const event = exampleEvent(type);
    expect(validateEvent(event)).toEqual({ ok: true, event });
    expect(parseEvent(JSON.stringify(event))).toEqual({ ok: true, event });
  });

  it.each([
    ['missing data field', (e: any) => delete e.data.number, 'data.number: is required'],
    ['missing envelope field', (e: any) => delete e.correlationid, 'correlationid: is required'],
    ['wrong type', (e: any) => (e.data.number = '42'), 'data.number: must be integer'],
    ['non-integer number', (e: any) => (e.data.number = 4.2), 'data.number: must be integer'],
    ['bad uuid', (e: any) => (e.correlationid = 'not-a-uuid'), 'correlationid: must match format "uuid"'],
    ['extra data field', (e: any) => (e.data.extra = 1), 'data.extra: is not allowed'],
    ['bad time', (e: any) => (e.time = 'yesterday'), 'time: must match format "date-time"'],
    ['time without zone', (e: any) => (e.time = '2026-02-27T10:30:00'), 'time: must match format "date-time"'],
    ['wrong specversion', (e: any) => (e.specversion = '0.3'), 'specversion: must be equal to constant "1.0"'],
    ['bad environment', (e: any) => (e.data.environment = 'dev'), 'data.environment: must be equal to one of the allowed values'],
    ['empty app name', (e: any) => (e.data.app.name = ''), 'data.app.name: must NOT have fewer than 1 characters'],
    ['subject not the app', (e: any) => (e.subject = 'argocd/other'), 'subject: must equal data.app'],
  ])('rejects a pr.created event with a %s, naming the field', (_, mutate, message) => {
    const event = structuredClone(exampleEvent('pr.created')) as unknown;
    mutate(event);
    expect(rejectionOf(event)).toContain(message);
  });

  it('rejects a data shape belonging to another type', () => {
    const event = { ...exampleEvent('pr.created'), type: 'io.ai-operator.pr.merged' };
    expect(rejectionOf(event)).toContain('data.autoMerged: is required');
  });

  it('rejects a CamelCase reason that is not CamelCase', () => {
    const event = structuredClone(exampleEvent('pr.closed')) as any;
    event.data.reason = 'health restored';
    expect(rejectionOf(event)).toContain('data.reason: must match pattern');
  });

  it('accepts a null uptime (ci-only mode) but not one above 1', () => {
    const event = structuredClone(exampleEvent('candidate.resolved')) as any;
    event.data = { ...event.data, uptime: null, mode: 'ci-only' };
    expect(validateEvent(event).ok).toBe(true);
    event.data.uptime = 1.5;
    expect(rejectionOf(event)).toContain('data.uptime: must be <= 1');
  });

  it.each([
    ['an unknown type', { ...exampleEvent('pr.created'), type: 'io.ai-operator.pr.reopened' }, 'type: unknown event type "io.ai-operator.pr.reopened"'],
    ['a foreign type', { ...exampleEvent('pr.created'), type: 'com.example.pr.created' }, 'type: unknown event type'],
    ['no type', { ...exampleEvent('pr.created'), type: undefined }, 'type: unknown event type null'],
    ['an array', [], 'event: must be an object'],
    ['null', null, 'event: must be an object'],
  ])('rejects %s', (_, value, message) => {
    expect(rejectionOf(value)).toContain(message);
  });

  it('says why a body was rejected', () => {
    expect(parseEvent('{"specversion": ')).toMatchObject({ ok: false, reason: 'NotJSON', errors: expect.stringContaining('body: not JSON') });
    expect(parseEvent(new TextEncoder().encode('garbage'))).toMatchObject({ ok: false, reason: 'NotJSON' });
    expect(parseEvent('{"type":"io.ai-operator.nope"}')).toMatchObject({ ok: false, reason: 'UnknownType' });
    expect(parseEvent('{"type":"io.ai-operator.pr.created"}')).toMatchObject({ ok: false, reason: 'SchemaInvalid', errors: expect.stringContaining('data: is required') });
  });
});

describe('makeEvent', () => {
  it('builds a CloudEvents 1.0 envelope with a fresh id unless one is given', () => {
    const input = { subject: 'argocd/payment-service', correlationId: crypto.randomUUID(), time: new Date('2026-02-27T10:30:00Z'), data: exampleEvent('pr.merged').data };
    const a = makeEvent('pr.merged', input);
    const b = makeEvent('pr.merged', input);
    expect(a).toMatchObject({
      specversion: '1.0',
      source: '/ai-operator',
      type: 'io.ai-operator.pr.merged',
      time: '2026-02-27T10:30:00.000Z',
      subject: 'argocd/payment-service',
      correlationid: input.correlationId,
      datacontenttype: 'application/json',
    });
    expect(a.id).not.toBe(b.id);
    expect(makeEvent('pr.merged', { ...input, id: 'fixed' }).id).toBe('fixed');
    expect(validateEvent(a).ok).toBe(true);
  });

  it('maps an event type to its subject', () => {
    expect(subjectFor('pr.created')).toBe('ai-operator.pr.created');
    expect(subjectFor('fsm.transition', 'e2e-x')).toBe('e2e-x.fsm.transition');
    expect(typeOfEvent(exampleEvent('ci.completed'))).toBe('ci.completed');
  });
});
