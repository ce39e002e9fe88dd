// Typed errors at the port boundary (SPEC §8). Every integration maps what its
// client throws onto one of these codes; nothing inside the engine sees a client
// library's error type.
export const ERROR_CODES = ['PERMISSION_DENIED', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED', 'UNAVAILABLE', 'TIMEOUT', 'INVALID_ARGUMENT'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

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
