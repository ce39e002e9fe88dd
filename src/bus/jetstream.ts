// The JetStream event bus (SPEC §9). Events are validated before they are sent
// and again when they are received; Nats-Msg-Id is the event id, so an outbox
// entry re-published after a crash is dropped by JetStream's duplicate window.
//
// The operator's consumer only wakes the reconciler (the etcd record is the
// truth): one durable consumer per installation, created to deliver new
// messages only, read by the leader alone, and opened again by
// consumer-supervisor.ts whenever its loop dies.
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, JetStreamError, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import type { ConsumerInfo, JetStreamClient, JetStreamManager, JsMsg, StreamConfig } from '@nats-io/jetstream';
import { connect, headers, nanos, NoRespondersError, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import type { Counter, Registry } from 'prom-client';
import { EVENTS_REJECTED_METRIC } from '../api/metrics.ts';
import type { Logger } from '../observability/log.ts';
import { eventBusCounters } from '../observability/metrics.ts';
import { traceFrom } from '../observability/tracing.ts';
import { IntegrationError } from '../ports/errors.ts';
import { superviseConsumer, type Backoff, type ConsumerRestartReason, type ConsumerSession } from './consumer-supervisor.ts';
import { STREAM_NAME, SUBJECT_PREFIX, subjectFor, typeOfEvent, type CloudEvent } from '../fsm/cloud-events.ts';
import { parseEvent, validateEvent, type RejectReason } from './validate.ts';

export { STREAM_NAME };
export const STREAM_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
export const STREAM_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;
export { EVENTS_REJECTED_METRIC };
/** What an older version named its consumers: one per pod, `ai-operator-wake-{pod}`. */
export const PER_POD_CONSUMER_PREFIX = 'ai-operator-wake-';

export type EventLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

export interface EventBus {
  publish(event: CloudEvent): Promise<{ duplicate: boolean }>;
  close(): Promise<void>;
}

/** The W3C trace context header of a message (as HTTP carries it). */
function traceHeaders(traceparent: string) {
  const h = headers();
  h.set('traceparent', traceparent);
  return h;
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
  /** Created if absent, delivering only messages published from then on; kept (with its place in the stream) across restarts. */
  durable: string;
  handler: (event: CloudEvent) => Promise<void> | void;
  /** Called before a malformed message is terminated; if it throws, the message is redelivered. */
  onRejected?: (rejected: Rejected) => Promise<void> | void;
  /** How long JetStream waits before redelivering a message whose handler threw. */
  nakDelayMs?: number;
  /**
   * Durable consumers this one replaces, by name prefix (an older version's per-pod
   * ones): deleted when idle, once, when this one is first opened.
   */
  supersedes?: string;
  /** Between two opens of a consumer whose loop died; 1 s doubling to 30 s unless a test shortens it. */
  restartBackoff?: Backoff;
  /**
   * Where an older version kept this durable consumer (the shared AI_OPERATOR stream, filtering on
   * `ai-operator.>`): deleted there when idle, once, when this one is first opened.
   */
  retires?: { stream: string; filterSubject: string };
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

/** A stream's subjects with ours added (kept in their order, ours last): what the others publish on stays captured. Pure. */
export function sharedSubjects(existing: readonly string[], ours: readonly string[]): string[] {
  return [...existing, ...ours.filter((subject) => !existing.includes(subject))];
}

/**
 * The durable consumer's name for an installation, from the etcd prefix that
 * sets the installation apart (its leader key is `{prefix}/ai-operator/leader`):
 * `ai-operator-wake` for the empty prefix. A prefix's `_`, `/` and `.` are
 * escaped (`_5f`, `_2f`, `_2e`), so two prefixes never share a name, and no name
 * starts with the per-pod prefix an older version used. Pure.
 */
export function wakeConsumerName(etcdPrefix: string): string {
  const escaped = etcdPrefix.replace(/[_/.]/g, (c) => `_${c.charCodeAt(0).toString(16)}`);
  return `ai-operator-wake${escaped}`;
}

/**
 * The consumers to delete in favour of `keep`: named with the superseded prefix,
 * reading our subjects, and idle (no pull request waiting, so no process reads
 * them: a replica of the older version still running keeps its own). Pure.
 */
export function supersededConsumers(consumers: readonly Pick<ConsumerInfo, 'name' | 'num_waiting' | 'config'>[], prefix: string, keep: string, filterSubject: string): string[] {
  return consumers
    .filter((c) => c.name !== keep && c.name.startsWith(prefix) && c.num_waiting === 0)
    .filter((c) => filtersOn(c, filterSubject))
    .map((c) => c.name);
}

/** Whether a consumer reads exactly the subjects under `filterSubject`. Pure. */
function filtersOn(consumer: Pick<ConsumerInfo, 'config'>, filterSubject: string): boolean {
  const { config } = consumer;
  return config.filter_subject === filterSubject || (config.filter_subjects?.length === 1 && config.filter_subjects[0] === filterSubject);
}

/** What killed a consumer's loop, from the error the client stopped it with. */
export function restartReasonOf(error: unknown): ConsumerRestartReason {
  const message = error instanceof Error ? error.message.toLowerCase() : '';
  // The client's words for them (its status errors carry no code we can import).
  if (error instanceof JetStreamError && message === 'consumer deleted') return 'ConsumerDeleted';
  if (message === 'consumer not found') return 'ConsumerNotFound';
  if (message === 'stream not found') return 'StreamNotFound';
  return 'Error';
}

export class JetStreamBus implements EventBus {
  readonly stream: string;
  readonly subjectPrefix: string;
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly log: EventLog;
  private readonly rejected: Counter<'reason'>;
  private readonly restarts: Counter<'reason'>;
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
    ({ rejected: this.rejected, consumerRestarts: this.restarts } = eventBusCounters(options.registry));
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
      // Reconnect for as long as it takes: the client's default gives up after ten tries
      // (about 20 s), and a closed connection would leave the relay and the consumer dead
      // until the pod is restarted, which nothing does (readiness does not restart).
      nc = await connect({ servers: options.servers, name: 'ai-operator', maxReconnectAttempts: -1 });
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

  /**
   * Creates the stream, or brings an existing one to the SPEC settings. A stream
   * shared by several installations (NATS_STREAM set alike, each with its own
   * NATS_SUBJECT_PREFIX) keeps the subjects the others added: ours is added to them.
   */
  async ensureStream(): Promise<void> {
    let config = streamConfig(this.stream, this.subjectPrefix);
    try {
      const info = await this.jsm.streams.info(this.stream);
      config = { ...config, subjects: sharedSubjects(info.config.subjects ?? [], config.subjects!) };
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
    const payload = JSON.stringify(event);
    // The server refuses a message over its max_payload on every try; as a transient error it
    // would stop the outbox relay at this entry for good, and every later event behind it.
    // The limit counts the headers too (Nats-Msg-Id, the expected stream): 1 KiB is kept for them.
    const maxPayload = this.nc.info?.max_payload;
    const bytes = Buffer.byteLength(payload);
    if (maxPayload !== undefined && bytes > maxPayload - 1024) {
      throw new InvalidEventError('publish', `event ${event.id} (${event.type}) is ${bytes} bytes, over the NATS server's max_payload of ${maxPayload} less 1 KiB for headers`);
    }
    const subject = subjectFor(typeOfEvent(event), this.subjectPrefix);
    // A span under the reconcile that wrote the event (its traceparent); the message carries this span's.
    return traceFrom(event.traceparent, 'publishEvent', async (traceparent) => {
      try {
        const ack = await this.js.publish(subject, payload, {
          msgID: event.id,
          // A subject captured by some other stream would silently bypass ours.
          expect: { streamName: this.stream },
          ...(traceparent ? { headers: traceHeaders(traceparent) } : {}),
        });
        return { duplicate: ack.duplicate };
      } catch (err) {
        throw toIntegrationError('publish', err);
      }
    }, {
      kind: 'producer',
      attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject, 'messaging.message.id': event.id, 'ai_operator.correlation_id': event.correlationid },
      codeOf: (error) => (error instanceof IntegrationError ? error.code : undefined),
    });
  }

  /**
   * Starts a durable pull consumer over every event subject of the stream, kept
   * running by superviseConsumer: a loop that dies (consumer deleted, stream
   * gone, an error) is opened again after a backoff, logged and counted in
   * ai_operator_event_consumer_restarts_total{reason}. Resolves once the first
   * open was tried; a failed one is tried again the same way.
   */
  async consume(options: ConsumeOptions): Promise<EventConsumer> {
    const filterSubject = `${this.subjectPrefix}.>`;
    const context: DeliveryContext = {
      subjectPrefix: this.subjectPrefix,
      handler: options.handler,
      onRejected: options.onRejected,
      nakDelayMs: options.nakDelayMs ?? 5_000,
      rejected: this.rejected,
      log: this.log,
    };
    let supersededChecked = options.supersedes === undefined;
    let retiredChecked = options.retires === undefined || options.retires.stream === this.stream;
    const open = async (): Promise<ConsumerSession> => {
      await this.ensureConsumer(options.durable, filterSubject);
      if (!supersededChecked) {
        await this.deleteSuperseded(options.supersedes!, options.durable, filterSubject);
        supersededChecked = true;
      }
      if (!retiredChecked) {
        await this.deleteRetired(options.durable, options.retires!);
        retiredChecked = true;
      }
      let messages;
      try {
        // Without abort_on_missing_resource the client waits forever for a deleted consumer to come back.
        messages = await (await this.js.consumers.get(this.stream, options.durable)).consume({ max_messages: 64, abort_on_missing_resource: true });
      } catch (err) {
        throw toIntegrationError('consume', err);
      }
      const ended = (async () => {
        for await (const msg of messages) await deliver(msg, context);
      })();
      // Observed by the supervisor; this keeps a death before it looks from being unhandled.
      ended.catch(() => {});
      return { ended, close: () => messages.close().then(() => undefined) };
    };
    const supervised = await superviseConsumer({
      name: options.durable, open, reasonOf: restartReasonOf, log: this.log,
      restarted: (reason) => this.restarts.inc({ reason }),
      hopeless: () => (this.nc.isClosed() ? 'the NATS connection is closed' : undefined),
      ...(options.restartBackoff ? { backoff: options.restartBackoff } : {}),
    });
    const consumer: EventConsumer = {
      stop: async () => {
        this.consumers.delete(consumer);
        await supervised.stop();
      },
    };
    this.consumers.add(consumer);
    return consumer;
  }

  /** Creates the durable consumer if it is absent (an identical one is left as it is), and the stream if that is gone too. */
  private async ensureConsumer(durable: string, filterSubject: string): Promise<void> {
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      // Events only wake the reconciler and the record in etcd is the truth: a new
      // consumer has nothing to catch up on, and must not replay 7 days of stream.
      deliver_policy: DeliverPolicy.New,
      filter_subject: filterSubject,
    };
    try {
      await this.jsm.consumers.add(this.stream, config);
    } catch (err) {
      // A server that lost its state (no persistent volume): the stream goes back first.
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw toIntegrationError('consume', err);
      await this.ensureStream();
      try {
        await this.jsm.consumers.add(this.stream, config);
      } catch (again) {
        throw toIntegrationError('consume', again);
      }
    }
  }

  /** Deletes the idle consumers `durable` replaces; a failure is logged, not thrown: they only take space. */
  private async deleteSuperseded(prefix: string, durable: string, filterSubject: string): Promise<void> {
    try {
      const names = supersededConsumers(await this.jsm.consumers.list(this.stream).next(), prefix, durable, filterSubject);
      for (const name of names) {
        await this.jsm.consumers.delete(this.stream, name);
        this.log.info('Deleted a consumer of an older version', { consumer: name, replacedBy: durable });
      }
    } catch (err) {
      this.log.warn('Could not delete the consumers of an older version', { replacedBy: durable, error: errorMessage(err) });
    }
  }

  /**
   * Deletes this installation's durable consumer from the stream an older version used (it filtered there on
   * every installation's subjects), if it is idle: a replica of that version still running keeps reading it.
   * A failure or its absence is logged at most: it only takes space.
   */
  private async deleteRetired(durable: string, retired: { stream: string; filterSubject: string }): Promise<void> {
    try {
      const info = await this.jsm.consumers.info(retired.stream, durable);
      if (info.num_waiting > 0 || !filtersOn(info, retired.filterSubject)) return;
      await this.jsm.consumers.delete(retired.stream, durable);
      this.log.info('Deleted the consumer an older version read in the shared stream', { consumer: durable, stream: retired.stream, replacedBy: `${this.stream}/${durable}` });
    } catch (err) {
      if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound)) return;
      this.log.warn('Could not delete the consumer of an older version', { consumer: durable, stream: retired.stream, error: errorMessage(err) });
    }
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
