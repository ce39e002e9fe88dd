// Structured logs: one JSON object per line on stdout, Kubernetes style messages
// ("Created pull request") with key/value fields, correlationId when there is one,
// and trace_id/span_id when written within the traced reconcile of an attempt.
import { traceFields } from './tracing.ts';

export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const order: Record<LogLevel, number> = { DEBUG: 10, INFO: 20, WARN: 30, ERROR: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
  child(module: string, fields?: Fields): Logger;
}

export function createLogger(level: LogLevel, base: Fields = {}, write: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Logger {
  const emit = (at: LogLevel, message: string, fields: Fields = {}) => {
    if (order[at] < order[level]) return;
    write(JSON.stringify({ timestamp: new Date().toISOString(), level: at, ...base, message, ...traceFields(), ...fields }));
  };
  return {
    debug: (m, f) => emit('DEBUG', m, f),
    info: (m, f) => emit('INFO', m, f),
    warn: (m, f) => emit('WARN', m, f),
    error: (m, f) => emit('ERROR', m, f),
    child: (module, fields = {}) => createLogger(level, { ...base, module, ...fields }, write),
  };
}
