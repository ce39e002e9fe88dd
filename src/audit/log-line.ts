// An audit record as one line of the operator's JSON log (stdout), so that
// `kubectl logs … | jq 'select(.actionType=="INVARIANT_CHECK")'` finds what the
// audit file and index hold. Built from the sealed record, which is already
// scrubbed of secrets (sealRecord), so the log can carry nothing the trail does not.
import type { AuditRecord } from './record.ts';

/**
 * The record's fields at the top level, in the shape of the operator's log lines
 * (the logger's base fields, timestamp, level, module, message, …) and marked
 * `audit: true`. prevHash is left out: `hash` finds the record in the chain.
 */
export function auditLogLine(record: AuditRecord, base: Record<string, unknown> = {}): string {
  // The base fields (the replica) go first so that none of them can override a record field.
  return JSON.stringify({
    ...base,
    timestamp: record.timestamp,
    level: record.level,
    module: record.module,
    correlationId: record.correlationId,
    actionType: record.actionType,
    message: record.message,
    reasoning: record.reasoning,
    invariantsChecked: record.invariantsChecked,
    metadata: record.metadata,
    eventId: record.eventId,
    trace_id: record.trace_id,
    span_id: record.span_id,
    hash: record.hash,
    audit: true,
  });
}

/** The onSealed hook of the audit log that writes each record as a log line. */
export function auditLogTee(base: Record<string, unknown> = {}, write: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): (record: AuditRecord) => void {
  return (record) => write(auditLogLine(record, base));
}
