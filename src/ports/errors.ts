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

/** Transient codes are retried by the call wrapper; the others fail at once. */
export function isTransient(code: ErrorCode): boolean {
  return code === 'UNAVAILABLE' || code === 'TIMEOUT' || code === 'RATE_LIMITED';
}
