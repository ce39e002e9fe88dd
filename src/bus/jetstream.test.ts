import { nanos } from '@nats-io/transport-node';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { IntegrationError } from '../ports/errors.ts';
import { exampleEvent } from './examples.ts';
import { JetStreamError } from '@nats-io/jetstream';
import { deliver, EVENTS_REJECTED_METRIC, InvalidEventError, PER_POD_CONSUMER_PREFIX, restartReasonOf, sharedSubjects, streamConfig, supersededConsumers, wakeConsumerName, type DeliveryContext, type Rejected } from './jetstream.ts';
import { streamNameFor, subjectFor, subjectPrefixFor, type CloudEvent } from '../fsm/cloud-events.ts';

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

describe('an installation\'s stream and subjects (issue 19 §3)', () => {
  it('are SPEC §9\'s for the installation `default`, its own for any other, and never nest under another\'s filter', () => {
    expect([streamNameFor('default'), subjectPrefixFor('default')]).toEqual(['AI_OPERATOR', 'ai-operator']);
    expect([streamNameFor('team-a'), subjectPrefixFor('team-a')]).toEqual(['AI_OPERATOR_TEAM_A', 'ai-operator-team-a']);
    // One token: the default installation's wake consumer (ai-operator.>) does not match team-a's subjects
    const matches = (filter: string, subject: string) => subject.startsWith(filter.slice(0, -1));
    expect(matches(`${subjectPrefixFor('default')}.>`, subjectFor('pr.created', subjectPrefixFor('team-a')))).toBe(false);
    expect(matches(`${subjectPrefixFor('team-a')}.>`, subjectFor('pr.created', subjectPrefixFor('team-ab')))).toBe(false);
  });

  it('a shared stream keeps the subjects the other installations added, ours last, once', () => {
    expect(sharedSubjects(['ai-operator.>'], ['ai-operator-team-a.>'])).toEqual(['ai-operator.>', 'ai-operator-team-a.>']);
    expect(sharedSubjects(['ai-operator.>', 'ai-operator-team-a.>'], ['ai-operator-team-a.>'])).toEqual(['ai-operator.>', 'ai-operator-team-a.>']);
    expect(sharedSubjects([], ['ai-operator.>'])).toEqual(['ai-operator.>']);
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

describe('wakeConsumerName', () => {
  it('names one consumer per installation, from its etcd prefix', () => {
    expect(wakeConsumerName('')).toBe('ai-operator-wake');
    expect(wakeConsumerName('/team-a')).toBe('ai-operator-wake_2fteam-a');
    expect(wakeConsumerName('/t/e2e.1_x')).toBe('ai-operator-wake_2ft_2fe2e_2e1_5fx');
  });

  it('gives two prefixes two names, none a per-pod name of an older version, all valid JetStream names', () => {
    const prefixes = ['', '/a', '/a_b', '/a/b', '/a.b', '/a_2fb', '/a_/b', '/a/_b', '/_', '/-'];
    const names = prefixes.map(wakeConsumerName);
    expect(new Set(names).size).toBe(prefixes.length);
    for (const name of names) {
      expect(name.startsWith(PER_POD_CONSUMER_PREFIX)).toBe(false);
      expect(name).toMatch(/^[A-Za-z0-9_-]+$/);
    }
  });
});

describe('supersededConsumers', () => {
  const ours = 'ai-operator.>';
  const info = (name: string, num_waiting: number, filter_subject = ours) => ({ name, num_waiting, config: { filter_subject } }) as Parameters<typeof supersededConsumers>[0][number];

  it('picks the idle per-pod consumers of our subjects, never the one kept, a live one, or another\'s', () => {
    const consumers = [
      info('ai-operator-wake-ai-operator-7d9f-x2', 0), // an older pod, gone
      info('ai-operator-wake-ai-operator-1', 1), // an older replica still reading
      info('ai-operator-wake', 0), // ours, idle between two leaders
      info('ai-operator-wake-other', 0, 'other.>'), // some other subjects
      info('reader-1234', 0), // not ours at all
    ];
    expect(supersededConsumers(consumers, PER_POD_CONSUMER_PREFIX, 'ai-operator-wake', ours)).toEqual(['ai-operator-wake-ai-operator-7d9f-x2']);
  });
});

describe('restartReasonOf', () => {
  it('names what the client stopped the loop with', () => {
    expect(restartReasonOf(new JetStreamError('consumer deleted'))).toBe('ConsumerDeleted');
    expect(restartReasonOf(new Error('consumer not found'))).toBe('ConsumerNotFound');
    expect(restartReasonOf(new Error('stream not found'))).toBe('StreamNotFound');
    expect(restartReasonOf(new Error('permissions violation'))).toBe('Error');
    expect(restartReasonOf('nothing')).toBe('Error');
  });
});
