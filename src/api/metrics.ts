// Metric names read outside the file that registers them (dashboards, alerts
// and tests spell them too).

/** Events the consumer refused (schema or unknown type), by reason. */
export const EVENTS_REJECTED_METRIC = 'ai_operator_events_rejected_total';
