import { nanos } from '@nats-io/transport-node';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { IntegrationError } from '../ports/errors.ts';
import { exampleEvent } from './examples.ts';
import { deliver, EVENTS_REJECTED_METRIC, InvalidEventError, streamConfig, type DeliveryContext, type Rejected } from './jetstream.ts';
import type { CloudEvent } from './types.ts';

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function message(subject: string, body: string) {
  return { subject, data: new TextEncoder().encode(body), ack: vi.fn(), nak: vi.fn(), term: vi.fn() };
}

function setup(handler: (event: CloudEvent) => Promise<void> | void = () => {}, onRejected?: (r: Rejected) => Promise<void> | void) {
  const registry = new Registry();
  const rejected = new Counter({ name: EVENTS_REJECTED_METRIC, help: 'test', labelNames: ['reason'], registers: [registry] });
  const context: DeliveryContext = { subjectPrefix: 'ai-operator', handler, onRejected, nakDelayMs: 1000, rejected, log: silent };
  const count = async (reason: string) => (await rejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  return { context, count };
}

describe('streamConfig', () => {
  it('is the stream SPEC §9 defines', () => {
    expect(streamConfig()).toEqual({
      name: 'AI_OPERATOR',
      subjects: ['ai-operator.>'],
      storage: 'file',
      max_age: nanos(7 * 24 * 3600 * 1000),
      duplicate_window: nanos(2 * 60 * 1000),
    });
    expect(streamConfig('TEST', 'test-x').subjects).toEqual(['test-x.>']);
  });
});

describe('deliver', () => {
  it('hands a valid event to the handler, then acks', async () => {
    const handler = vi.fn();
    const { context } = setup(handler);
    const event = exampleEvent('pr.created');
    const msg = message('ai-operator.pr.created', JSON.stringify(event));
    expect(await deliver(msg, context)).toBe('handled');
    expect(handler).toHaveBeenCalledWith(event);
    expect(msg.ack).toHaveBeenCalledOnce();
    expect(msg.nak).not.toHaveBeenCalled();
  });

  it('naks with a delay when the handler throws, and does not throw itself', async () => {
    const { context } = setup(() => {
      throw new Error('etcd down');
    });
    const msg = message('ai-operator.pr.created', JSON.stringify(exampleEvent('pr.created')));
    expect(await deliver(msg, context)).toBe('retry');
    expect(msg.nak).toHaveBeenCalledWith(1000);
    expect(msg.ack).not.toHaveBeenCalled();
    expect(msg.term).not.toHaveBeenCalled();
  });

  it.each([
    ['not JSON', 'ai-operator.pr.created', '{{{', 'NotJSON'],
    ['schema-invalid', 'ai-operator.pr.created', JSON.stringify({ ...exampleEvent('pr.created'), correlationid: 'x' }), 'SchemaInvalid'],
    ['of an unknown type', 'ai-operator.pr.created', JSON.stringify({ ...exampleEvent('pr.created'), type: 'io.ai-operator.nope' }), 'UnknownType'],
    ['on the wrong subject', 'ai-operator.pr.merged', JSON.stringify(exampleEvent('pr.created')), 'SubjectMismatch'],
  ])('terminates, counts and reports a message %s', async (_, subject, body, reason) => {
    const handler = vi.fn();
    const onRejected = vi.fn();
    const { context, count } = setup(handler, onRejected);
    const msg = message(subject, body);
    expect(await deliver(msg, context)).toBe('rejected');
    expect(msg.term).toHaveBeenCalledOnce();
    expect(msg.ack).not.toHaveBeenCalled();
    expect(handler).not.toHaveBeenCalled();
    expect(onRejected).toHaveBeenCalledWith({ subject, reason, errors: expect.any(String), raw: body });
    expect(await count(reason)).toBe(1);
  });

  it('redelivers a malformed message whose rejection could not be recorded', async () => {
    const { context, count } = setup(undefined, () => {
      throw new Error('audit sink down');
    });
    const msg = message('ai-operator.pr.created', 'garbage');
    expect(await deliver(msg, context)).toBe('retry');
    expect(msg.term).not.toHaveBeenCalled();
    expect(msg.nak).toHaveBeenCalledWith(1000);
    expect(await count('NotJSON')).toBe(0);
  });
});

describe('InvalidEventError', () => {
  it('is a non-retryable integration error carrying the schema errors', () => {
    const err = new InvalidEventError('publish', 'data.number: must be integer');
    expect(err).toBeInstanceOf(IntegrationError);
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.errors).toBe('data.number: must be integer');
  });
});
