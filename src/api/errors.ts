// The error codes of the port boundary (SPEC §8). They are recorded in attempt
// status, audit records and metric labels, so they are wire names too.
export const ERROR_CODES = ['PERMISSION_DENIED', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED', 'UNAVAILABLE', 'TIMEOUT', 'INVALID_ARGUMENT'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];
