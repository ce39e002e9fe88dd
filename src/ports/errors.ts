// Typed errors at the port boundary (SPEC §8). Every integration maps what its
// client throws onto one of these codes; nothing inside the engine sees a client
// library's error type. The codes themselves are wire names (src/api/errors.ts).
import type { ErrorCode } from '../api/errors.ts';

export type { ErrorCode } from '../api/errors.ts';

export class IntegrationError extends Error {
  readonly code: ErrorCode;
  readonly call: string;
  constructor(call: string, code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${call}: ${code}: ${message}`, options);
    this.name = 'IntegrationError';
    this.code = code;
    this.call = call;
  }
}

/**
 * An opening that found nothing left to restore: the branch moved since the rollback was measured (a merge of the
 * PR the attempt waited for, a push). Nothing was written. Not a failure of the attempt: the executor opens no PR
 * and the attempt measures again (then waits for that merge to be deployed, or finds nothing to roll back). A PR
 * restoring nothing would be a second rollback PR for the same files. CONFLICT: what is there is not what was measured.
 */
export class NothingToRestoreError extends IntegrationError {
  constructor(call: string, message: string) {
    super(call, 'CONFLICT', message);
    this.name = 'NothingToRestoreError';
  }
}

/** Transient codes are retried by the call wrapper; the others fail at once. */
export function isTransient(code: ErrorCode): boolean {
  return code === 'UNAVAILABLE' || code === 'TIMEOUT' || code === 'RATE_LIMITED';
}

/**
 * A reconcile failure that retrying cannot fix, as controller-runtime's
 * reconcile.TerminalError: the work queue counts and logs it and does not
 * requeue the key; the next add of that key (a watch event, the resync) runs it
 * again. `reason` is a CamelCase word for the log, the metric and a condition.
 */
export class TerminalError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
    this.reason = reason;
  }
}

/** The TerminalError in `error` or its chain of causes (errors.Is(err, TerminalError(nil))), if any. */
export function terminalCause(error: unknown): TerminalError | undefined {
  for (let at = error, depth = 0; at instanceof Error && depth < 16; at = at.cause, depth++) {
    if (at instanceof TerminalError) return at;
  }
  return undefined;
}

/** etcd could not be reached or answered with an error: retried with backoff, never a reason to abort. */
export class StoreUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`etcd unavailable: ${message}`, options);
    this.name = 'StoreUnavailable';
  }
}
