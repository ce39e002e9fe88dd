// The events the operator publishes (SPEC §9): their types, CloudEvents 1.0
// envelope and data shapes. schemas/<type>.json is the authority on the wire;
// these types are kept in step with it by validate.test.ts.
import { randomUUID } from 'node:crypto';
import type { State } from './table.ts';

export const EVENT_TYPES = [
  'degradation.detected',
  'degradation.confirmed',
  'degradation.cleared',
  'candidate.resolved',
  'pr.created',
  'ci.completed',
  'merge.approved',
  'pr.merged',
  'pr.closed',
  'rollback.completed',
  'rollback.aborted',
  'fsm.transition',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/** CloudEvents `type` is this prefix plus the event type. */
export const CLOUDEVENT_TYPE_PREFIX = 'io.ai-operator.';
export const EVENT_SOURCE = '/ai-operator';
/** NATS subjects are this prefix, a dot and the event type (the default installation's; see subjectPrefixFor). */
export const SUBJECT_PREFIX = 'ai-operator';
/** The JetStream stream of the default installation (SPEC §9); see streamNameFor. */
export const STREAM_NAME = 'AI_OPERATOR';
/** The name of the installation whose etcd prefix is empty, and whose events keep SPEC §9's stream and subjects. */
export const DEFAULT_INSTALLATION = 'default';

/**
 * The subject prefix of an installation's events: `ai-operator` for the default
 * installation (SPEC §9), `ai-operator-{name}` for any other. One NATS token, so
 * no installation's subjects fall under another's `{prefix}.>` (`ai-operator.>`
 * does not match `ai-operator-team-a.pr.created`): a wake consumer filtering on
 * its own prefix never sees another installation's events, and two streams never
 * claim overlapping subjects. Pure.
 */
export function subjectPrefixFor(installation: string): string {
  return installation === DEFAULT_INSTALLATION ? SUBJECT_PREFIX : `${SUBJECT_PREFIX}-${installation}`;
}

/**
 * The stream of an installation's events: `AI_OPERATOR` for the default
 * installation, `AI_OPERATOR_{NAME}` for any other (an installation name is a DNS
 * label, so `-` → `_` and upper case keep two names apart). Pure.
 */
export function streamNameFor(installation: string): string {
  return installation === DEFAULT_INSTALLATION ? STREAM_NAME : `${STREAM_NAME}_${installation.toUpperCase().replace(/-/g, '_')}`;
}

export interface AppRef {
  namespace: string;
  name: string;
}

export type Environment = 'staging' | 'production';

interface AppData {
  app: AppRef;
  environment: Environment;
}

export interface EventData {
  'degradation.detected': AppData & {
    healthStatus: string; /** Absent when Argo CD reports no synced revision. */ revision?: string; checks: number;
    /** Progressing, and the current revision's pods fail early: the signal (CrashLoopBackOff, …) and its evidence in one line. */
    signal?: string; evidence?: string;
  };
  'degradation.confirmed': AppData & { checks: number; firstSeenAt: string; /** Confirmed on the pods' signal, not on Argo CD's Degraded. */ signal?: string };
  'degradation.cleared': AppData & { checks: number; reason: string };
  'candidate.resolved': AppData & {
    currentRevision: string;
    candidateRevision: string;
    /** Healthy fraction over the window; null in ci-only mode. */
    uptime: number | null;
    mode: 'metrics' | 'ci-only';
    evidence: string;
  };
  'pr.created': AppData & { number: number; url: string; branch: string; adopted: boolean };
  'ci.completed': AppData & { number: number; headSha: string; state: 'success' | 'failure' | 'timeout' };
  'merge.approved': AppData & { number: number; approvedBy: string; auto: boolean };
  'pr.merged': AppData & { number: number; mergeCommitSha?: string; autoMerged: boolean };
  'pr.closed': AppData & { number: number; reason: string };
  'rollback.completed': AppData & { revision: string; recoverySeconds: number };
  'rollback.aborted': AppData & { fromState: State; reason: string; message: string };
  'fsm.transition': AppData & { from: State; to: State; reason: string; version: number };
}

/**
 * A CloudEvents 1.0 JSON event. Without a type argument it is the union of all
 * event types, discriminated by `type`.
 */
export type CloudEvent<T extends EventType = EventType> = T extends EventType
  ? {
      specversion: '1.0';
      id: string;
      source: string;
      type: `${typeof CLOUDEVENT_TYPE_PREFIX}${T}`;
      /** RFC 3339. */
      time: string;
      /** The Application, `namespace/name`. */
      subject: string;
      /** Extension attribute: the attempt this event belongs to (UUID). */
      correlationid: string;
      /**
       * Extension attribute (CloudEvents distributed tracing): the W3C traceparent of the reconcile that wrote
       * the event, whose trace is the attempt's; absent while tracing is off.
       */
      traceparent?: string;
      datacontenttype: 'application/json';
      data: EventData[T];
    }
  : never;

export interface MakeEventInput<T extends EventType> {
  subject: string;
  correlationId: string;
  data: EventData[T];
  time: Date | string;
  /** Defaults to a random UUID; pass one to make a re-publish deduplicate. */
  id?: string;
}

export function makeEvent<T extends EventType>(type: T, input: MakeEventInput<T>): CloudEvent<T> {
  const event = {
    specversion: '1.0',
    id: input.id ?? randomUUID(),
    source: EVENT_SOURCE,
    type: `${CLOUDEVENT_TYPE_PREFIX}${type}`,
    time: typeof input.time === 'string' ? input.time : input.time.toISOString(),
    subject: input.subject,
    correlationid: input.correlationId,
    datacontenttype: 'application/json',
    data: input.data,
  };
  // TypeScript cannot narrow the conditional CloudEvent<T> for a generic T.
  return event as unknown as CloudEvent<T>;
}

/** The app's subject as it appears in events: `namespace/name`. */
export function appSubject(app: AppRef): string {
  return `${app.namespace}/${app.name}`;
}

export function subjectFor(type: EventType, prefix: string = SUBJECT_PREFIX): string {
  return `${prefix}.${type}`;
}

export function typeOfEvent<T extends EventType>(event: CloudEvent<T>): T {
  return event.type.slice(CLOUDEVENT_TYPE_PREFIX.length) as T;
}

/** The event type named by a CloudEvents `type`, or undefined if it is not ours. */
export function eventTypeOf(cloudEventType: unknown): EventType | undefined {
  if (typeof cloudEventType !== 'string' || !cloudEventType.startsWith(CLOUDEVENT_TYPE_PREFIX)) return undefined;
  const type = cloudEventType.slice(CLOUDEVENT_TYPE_PREFIX.length);
  return (EVENT_TYPES as readonly string[]).includes(type) ? (type as EventType) : undefined;
}

/**
 * An event written to the transactional outbox (SPEC §5), keyed by its outbox key.
 * `raw` is the stored value as read; an entry whose value is not even JSON has no
 * `event` and says why in `unreadable`.
 */
export type OutboxEntry =
  | { key: string; event: CloudEvent; raw?: string; modRevision?: string }
  | { key: string; event: undefined; raw: string; unreadable: string; modRevision?: string };

/** An outbox entry that can never be published, with why, on its way to the dead letters. */
export interface DeadLetter {
  key: string;
  /** The stored value, exactly as read from the outbox. */
  raw: string;
  /** The validator's message (it names the field) or why the value could not be read. */
  reason: string;
  /** RFC 3339. */
  at: string;
  /** The entry's etcd revision when read: the move compares it, not the (possibly huge) value. */
  modRevision?: string;
}

export interface OutboxStore {
  /** Up to `limit` pending entries, oldest first. */
  pendingOutbox(limit: number): Promise<OutboxEntry[]>;
  removeOutbox(keys: string[]): Promise<void>;
  /**
   * Moves the entry to the dead letters in one transaction (put the dead letter,
   * delete the outbox key) if the outbox still holds exactly `raw`. Resolves to the
   * dead letter's key, or undefined when the entry was no longer there (another
   * drain moved or published it first).
   */
  deadLetterOutbox(letter: DeadLetter): Promise<string | undefined>;
}
