// The JetStream event bus (SPEC §9). Events are validated before they are sent
// and again when they are received; Nats-Msg-Id is the event id, so an outbox
// entry re-published after a crash is dropped by JetStream's duplicate window.
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg, StreamConfig } from '@nats-io/jetstream';
import { connect, nanos, NoRespondersError, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { Counter, type Registry } from 'prom-client';
import { EVENTS_REJECTED_METRIC } from '../api/metrics.ts';
import type { Logger } from '../observability/log.ts';
import { IntegrationError } from '../ports/errors.ts';
import { SUBJECT_PREFIX, subjectFor, typeOfEvent, type CloudEvent } from './types.ts';
import { parseEvent, validateEvent, type RejectReason } from './validate.ts';

export const STREAM_NAME = 'AI_OPERATOR';
export const STREAM_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
export const STREAM_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;
export { EVENTS_REJECTED_METRIC };

export type EventLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

export interface EventBus {
  publish(event: CloudEvent): Promise<{ duplicate: boolean }>;
  close(): Promise<void>;
}

/** The event failed its schema; it was not sent. Retrying cannot help. */
export class InvalidEventError extends IntegrationError {
  readonly errors: string;
  constructor(call: string, errors: string) {
    super(call, 'INVALID_ARGUMENT', errors);
    this.name = 'InvalidEventError';
    this.errors = errors;
  }
}

export interface JetStreamBusOptions {
  servers: string | string[];
  registry: Registry;
  log: EventLog;
  /** Defaults to AI_OPERATOR; tests use their own. */
  stream?: string;
  /** Subjects are `{prefix}.{type}`; defaults to `ai-operator`. */
  subjectPrefix?: string;
}

export interface Rejected {
  subject: string;
  reason: RejectReason;
  errors: string;
  raw: string;
}

export interface ConsumeOptions {
  durable: string;
  handler: (event: CloudEvent) => Promise<void> | void;
  /** Called before a malformed message is terminated; if it throws, the message is redelivered. */
  onRejected?: (rejected: Rejected) => Promise<void> | void;
  /** How long JetStream waits before redelivering a message whose handler threw. */
  nakDelayMs?: number;
}

export interface EventConsumer {
  stop(): Promise<void>;
}

/** The stream as SPEC §9 defines it. */
export function streamConfig(name: string = STREAM_NAME, subjectPrefix: string = SUBJECT_PREFIX): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects: [`${subjectPrefix}.>`],
    storage: StorageType.File,
    max_age: nanos(STREAM_MAX_AGE_MS),
    duplicate_window: nanos(STREAM_DUPLICATE_WINDOW_MS),
  };
}

export class JetStreamBus implements EventBus {
  readonly stream: string;
  readonly subjectPrefix: string;
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly log: EventLog;
  private readonly rejected: Counter<'reason'>;
  private readonly consumers = new Set<EventConsumer>();
  // Set from the client's status events; the client reconnects by itself, this only reports.
  private lostConnection: string | undefined;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, options: JetStreamBusOptions) {
    this.nc = nc;
    this.jsm = jsm;
    this.js = jetstream(nc);
    this.log = options.log;
    this.stream = options.stream ?? STREAM_NAME;
    this.subjectPrefix = options.subjectPrefix ?? SUBJECT_PREFIX;
    this.rejected = rejectedCounter(options.registry);
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') this.lostConnection = `disconnected from ${status.server}, reconnecting`;
        else if (status.type === 'staleConnection') this.lostConnection = 'server stopped answering pings, reconnecting';
        else if (status.type === 'reconnect') this.lostConnection = undefined;
      }
    })().catch((err: unknown) => this.log.error('Stopped following the NATS connection status', { error: errorMessage(err) }));
  }

  /** Why the bus cannot reach NATS now, or undefined when it is connected (readiness; costs no round trip). */
  connectionProblem(): string | undefined {
    if (this.nc.isClosed()) return 'connection closed';
    return this.lostConnection;
  }

  static async connect(options: JetStreamBusOptions): Promise<JetStreamBus> {
    let nc: NatsConnection;
    try {
      nc = await connect({ servers: options.servers, name: 'ai-operator' });
    } catch (err) {
      throw toIntegrationError('connect', err);
    }
    try {
      return new JetStreamBus(nc, await jetstreamManager(nc), options);
    } catch (err) {
      await nc.close();
      throw toIntegrationError('connect', err);
    }
  }

  /** Creates the stream, or brings an existing one to the SPEC settings. */
  async ensureStream(): Promise<void> {
    const config = streamConfig(this.stream, this.subjectPrefix);
    try {
      await this.jsm.streams.info(this.stream);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw toIntegrationError('ensureStream', err);
      try {
        await this.jsm.streams.add(config);
        this.log.info('Created stream', { stream: this.stream });
        return;
      } catch (addErr) {
        throw toIntegrationError('ensureStream', addErr);
      }
    }
    try {
      await this.jsm.streams.update(this.stream, config);
    } catch (err) {
      throw toIntegrationError('ensureStream', err);
    }
  }

  async publish(event: CloudEvent): Promise<{ duplicate: boolean }> {
    const validation = validateEvent(event);
    if (!validation.ok) throw new InvalidEventError('publish', validation.errors);
    try {
      const ack = await this.js.publish(subjectFor(typeOfEvent(event), this.subjectPrefix), JSON.stringify(event), {
        msgID: event.id,
        // A subject captured by some other stream would silently bypass ours.
        expect: { streamName: this.stream },
      });
      return { duplicate: ack.duplicate };
    } catch (err) {
      throw toIntegrationError('publish', err);
    }
  }

  /** Starts a durable pull consumer over every event subject of the stream. */
  async consume(options: ConsumeOptions): Promise<EventConsumer> {
    const config = {
      durable_name: options.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: `${this.subjectPrefix}.>`,
    };
    let messages: ConsumerMessages;
    try {
      await this.jsm.consumers.add(this.stream, config);
      messages = await (await this.js.consumers.get(this.stream, options.durable)).consume({ max_messages: 64 });
    } catch (err) {
      throw toIntegrationError('consume', err);
    }
    const context: DeliveryContext = {
      subjectPrefix: this.subjectPrefix,
      handler: options.handler,
      onRejected: options.onRejected,
      nakDelayMs: options.nakDelayMs ?? 5_000,
      rejected: this.rejected,
      log: this.log,
    };
    const loop = (async () => {
      for await (const msg of messages) await deliver(msg, context);
    })().catch((err: unknown) => {
      this.log.error('Event consumer stopped', { durable: options.durable, error: errorMessage(err) });
    });
    const consumer: EventConsumer = {
      stop: async () => {
        this.consumers.delete(consumer);
        await messages.close();
        await loop;
      },
    };
    this.consumers.add(consumer);
    return consumer;
  }

  async close(): Promise<void> {
    await Promise.all([...this.consumers].map((c) => c.stop()));
    if (!this.nc.isClosed()) await this.nc.drain();
  }
}

export interface DeliveryContext {
  subjectPrefix: string;
  handler: ConsumeOptions['handler'];
  onRejected: ConsumeOptions['onRejected'];
  nakDelayMs: number;
  rejected: Counter<'reason'>;
  log: EventLog;
}

export type Delivery = Pick<JsMsg, 'subject' | 'data' | 'ack' | 'nak' | 'term'>;

/**
 * Handles one message and settles it; never throws, so one bad message cannot
 * stop the consumer. Valid → handler, ack (nak with delay if the handler
 * throws). Malformed → onRejected, counted, term (never redelivered).
 */
export async function deliver(msg: Delivery, context: DeliveryContext): Promise<'handled' | 'retry' | 'rejected'> {
  const parsed = parseEvent(msg.data);
  if (!parsed.ok) return reject(msg, parsed.reason, parsed.errors, context);
  const event = parsed.event;
  if (msg.subject !== subjectFor(typeOfEvent(event), context.subjectPrefix)) {
    return reject(msg, 'SubjectMismatch', `type: ${event.type} does not belong on subject ${msg.subject}`, context);
  }
  try {
    await context.handler(event);
  } catch (err) {
    context.log.warn('Event handler failed; will redeliver', { eventId: event.id, correlationId: event.correlationid, type: event.type, error: errorMessage(err) });
    msg.nak(context.nakDelayMs);
    return 'retry';
  }
  msg.ack();
  return 'handled';
}

async function reject(msg: Delivery, reason: RejectReason, errors: string, context: DeliveryContext): Promise<'retry' | 'rejected'> {
  try {
    await context.onRejected?.({ subject: msg.subject, reason, errors, raw: new TextDecoder().decode(msg.data) });
  } catch (err) {
    // The rejection must reach the audit trail before the message is gone.
    context.log.error('Failed to record rejected event; will retry', { subject: msg.subject, error: errorMessage(err) });
    msg.nak(context.nakDelayMs);
    return 'retry';
  }
  context.rejected.inc({ reason });
  context.log.warn('Rejected malformed event', { subject: msg.subject, reason, errors });
  // The term reason travels in a JetStream advisory; keep it short.
  msg.term(`${reason}: ${errors}`.slice(0, 256));
  return 'rejected';
}

function rejectedCounter(registry: Registry): Counter<'reason'> {
  // Several buses may share one registry (tests, reconnects); the metric is one.
  const existing = registry.getSingleMetric(EVENTS_REJECTED_METRIC);
  if (existing !== undefined) return existing as Counter<'reason'>;
  return new Counter({
    name: EVENTS_REJECTED_METRIC,
    help: 'Events received that were not JSON or failed their schema, and were terminated.',
    labelNames: ['reason'],
    registers: [registry],
  });
}

function toIntegrationError(call: string, err: unknown): IntegrationError {
  if (err instanceof IntegrationError) return err;
  const code = err instanceof TimeoutError ? 'TIMEOUT' : 'UNAVAILABLE';
  // NoResponders on publish: no stream listens on the subject (not created yet, or JetStream down).
  const hint = err instanceof NoRespondersError ? ' (no stream for the subject)' : '';
  return new IntegrationError(call, code, `${errorMessage(err)}${hint}`, { cause: err });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
