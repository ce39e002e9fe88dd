// The audit record (SPEC §10): one per decision or action, linked into a hash
// chain so that modifying, dropping, reordering or inserting a record is
// detectable, and scrubbed of secrets before it is hashed or written anywhere.
import { createHash, randomBytes } from 'node:crypto';

export { ACTION_TYPES, LEVELS, MODULES } from '../ports/audit.ts';
export type { ActionType, AuditInput, AuditLevel, AuditMetadata, AuditModule, AuditRecord, JsonValue } from '../ports/audit.ts';
import type { AuditInput, AuditMetadata, AuditRecord, JsonValue } from '../ports/audit.ts';

export const GENESIS_HASH = '0'.repeat(64);

// --- secrets ---------------------------------------------------------------

export const REDACTED = '[REDACTED]';

const SECRET_PATTERNS: readonly [RegExp, string][] = [
  // PEM private keys, also a truncated one that never reaches its END line.
  [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g, REDACTED],
  // The whole value of an Authorization header, whatever its scheme (token, Basic, ApiKey, Bearer).
  [/(\bauthorization["']?\s*[:=]\s*["']?)[^"'\r\n]+/gi, `$1${REDACTED}`],
  [/\b(Bearer|ApiKey)\s+[A-Za-z0-9._~+/=-]+/gi, `$1 ${REDACTED}`],
  // GitHub tokens by their documented prefixes.
  [/\bgh[pousr]_[A-Za-z0-9]{16,}/g, REDACTED],
  [/\bgithub_pat_[A-Za-z0-9_]{16,}/g, REDACTED],
  // Credentials embedded in a URL (https://user:secret@host).
  [/(\/\/[^/\s:@]+:)[^/\s@]+@/g, `$1${REDACTED}@`],
];

// Keys whose value is a secret whatever it looks like: a token's value need not have a known prefix.
const SECRET_KEY = /token|secret|passw(?:or)?d|api[-_]?key|private[-_]?key|authorization|credential/i;

export function redactString(text: string): string {
  return SECRET_PATTERNS.reduce((out, [pattern, replacement]) => out.replace(pattern, replacement), text);
}

/**
 * A JSON copy of `value` with secrets masked: strings scrubbed of token shapes,
 * values under secret-looking keys replaced. Also what makes a record hashable:
 * the result is plain JSON, so the bytes hashed are the bytes written and read back.
 */
export function redact(value: unknown): JsonValue {
  return toJson(value, new WeakSet());
}

function toJson(value: unknown, seen: WeakSet<object>): JsonValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return redactString(value);
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => toJson(v, seen));
    // An Error's fields are not enumerable; its name and message are what a reader needs.
    const source: Record<string, unknown> =
      value instanceof Error ? { name: value.name, message: value.message, ...(value as unknown as Record<string, unknown>) } : (value as Record<string, unknown>);
    // fromEntries defines own properties, so a "__proto__" key stays data instead of becoming a prototype.
    return Object.fromEntries(
      Object.entries(source)
        .filter(([, v]) => v !== undefined && typeof v !== 'function' && typeof v !== 'symbol')
        .map(([key, v]) => [key, SECRET_KEY.test(key) ? REDACTED : toJson(v, seen)]),
    );
  } finally {
    seen.delete(value);
  }
}

// --- hash chain ------------------------------------------------------------

/** JSON with object keys sorted at every level (UTF-16 order, as RFC 8785), undefined members left out. */
export function canonicalJson(value: unknown): string {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return canonicalJson((value as { toJSON: () => unknown }).toJSON());
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const members = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function hashRecord(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...rest } = record;
  return createHash('sha256').update(rest.prevHash + canonicalJson(rest)).digest('hex');
}

/**
 * The finished record for `input` after `prevHash`: secrets masked, JSON-normalised
 * (so the hash covers exactly what is stored), then hashed.
 */
export function sealRecord(input: AuditInput, prevHash: string, at: Date, eventId = input.eventId ?? newEventId(at)): AuditRecord {
  const record: Omit<AuditRecord, 'hash'> = {
    timestamp: at.toISOString(),
    level: input.level ?? 'INFO',
    module: input.module,
    correlationId: input.correlationId ?? '',
    actionType: input.actionType,
    message: redactString(input.message),
    ...(input.reasoning !== undefined && { reasoning: redactString(input.reasoning) }),
    ...(input.invariantsChecked !== undefined && { invariantsChecked: { ...input.invariantsChecked } }),
    metadata: asObject(redact(input.metadata ?? {})),
    eventId,
    prevHash,
  };
  return { ...record, hash: hashRecord(record) };
}

function asObject(value: JsonValue): AuditMetadata {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : { value };
}

export type ChainVerdict = { ok: true; head: string } | { ok: false; index: number; reason: string };

export interface VerifyOptions {
  /** The hash the first record must follow: GENESIS_HASH, or the last hash of the previous file. */
  from?: string;
  /** The head hash kept elsewhere; without it, dropping the newest records is undetectable. */
  head?: string;
}

/** Checks each record's hash and its link to the one before it; reports the first break. */
export function verifyChain(records: readonly AuditRecord[], options: VerifyOptions = {}): ChainVerdict {
  let expected = options.from ?? GENESIS_HASH;
  for (const [index, record] of records.entries()) {
    if (record.prevHash !== expected) {
      return { ok: false, index, reason: `prevHash ${short(record.prevHash)} does not follow ${short(expected)}: a record was dropped, inserted or moved` };
    }
    const actual = hashRecord(record);
    if (actual !== record.hash) {
      return { ok: false, index, reason: `hash ${short(record.hash)} does not match the content (${short(actual)}): the record was modified` };
    }
    expected = record.hash;
  }
  if (options.head !== undefined && expected !== options.head) {
    return { ok: false, index: records.length, reason: `chain ends at ${short(expected)}, expected head ${short(options.head)}: records are missing at the end` };
  }
  return { ok: true, head: expected };
}

function short(hash: unknown): string {
  return typeof hash === 'string' ? hash.slice(0, 12) : String(hash);
}

// --- ids and names ---------------------------------------------------------

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A ULID: sorts by time, so Elasticsearch _ids and file lines share one order. */
export function newEventId(at: Date = new Date()): string {
  let time = at.getTime();
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = CROCKFORD[time % 32] + out;
    time = Math.floor(time / 32);
  }
  for (const byte of randomBytes(16)) out += CROCKFORD[byte % 32];
  return out;
}

/** `YYYY.MM.DD` of the UTC day: the suffix of the Elasticsearch index and of the fallback file. */
export function auditDay(at: Date | string): string {
  return (typeof at === 'string' ? at : at.toISOString()).slice(0, 10).replaceAll('-', '.');
}

export function auditIndexName(at: Date | string): string {
  return `ai-operator-audit-${auditDay(at)}`;
}
