// Metric names read outside the file that registers them (dashboards, alerts
// and tests spell them too).

/** Events the consumer refused (schema or unknown type), by reason. */
export const EVENTS_REJECTED_METRIC = 'ai_operator_events_rejected_total';

/** Why a consumer was opened again (the `reason` label of ai_operator_event_consumer_restarts_total). */
export const CONSUMER_RESTART_REASONS = [
  /** Its durable consumer was deleted on the server. */
  'ConsumerDeleted',
  /** Its durable consumer was not there when the client checked (after a reconnect, say). */
  'ConsumerNotFound',
  /** The stream was not there (a server that lost its state). */
  'StreamNotFound',
  /** The loop ended by itself, without an error. */
  'LoopEnded',
  /** Opening it failed (NATS unreachable, say): tried again. */
  'OpenFailed',
  /** Any other error of the client. */
  'Error',
] as const;
export type ConsumerRestartReason = (typeof CONSUMER_RESTART_REASONS)[number];
