// Validates events against schemas/<type>.json (SPEC §9: on publish and on
// consume). The schemas are read and compiled once, at module load, so a
// missing or broken schema fails the process at start rather than mid-attempt.
import { readFileSync } from 'node:fs';
import Ajv2020Module, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { appSubject, EVENT_TYPES, eventTypeOf, type CloudEvent, type EventType } from '../fsm/cloud-events.ts';

export const SCHEMA_DIR = new URL('../../schemas/', import.meta.url);

// ajv ships CommonJS; under NodeNext its default export is the `.default` property.
const ajv = new Ajv2020Module.default({ allErrors: true, strict: true });
addFormatsModule.default(ajv);

const validators = new Map<EventType, ValidateFunction>(
  EVENT_TYPES.map((type) => [type, ajv.compile(JSON.parse(readFileSync(new URL(`${type}.json`, SCHEMA_DIR), 'utf8')) as object)]),
);

export type Validation = { ok: true; event: CloudEvent } | { ok: false; errors: string };

/** Why a message was rejected; the `reason` label of the rejected counter. */
export type RejectReason = 'NotJSON' | 'UnknownType' | 'SchemaInvalid' | 'SubjectMismatch';

export type Parse = { ok: true; event: CloudEvent } | { ok: false; reason: Exclude<RejectReason, 'SubjectMismatch'>; errors: string };

export function validateEvent(value: unknown): Validation {
  const result = check(value);
  return result.ok ? result : { ok: false, errors: result.errors };
}

/** Parses a message body (bytes or text) and validates it. */
export function parseEvent(body: Uint8Array | string): Parse {
  let value: unknown;
  try {
    value = JSON.parse(typeof body === 'string' ? body : new TextDecoder().decode(body));
  } catch (err) {
    return { ok: false, reason: 'NotJSON', errors: `body: not JSON (${err instanceof Error ? err.message : String(err)})` };
  }
  return check(value);
}

function check(value: unknown): Parse {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'SchemaInvalid', errors: 'event: must be an object' };
  }
  const declared = (value as { type?: unknown }).type;
  const type = eventTypeOf(declared);
  if (type === undefined) {
    return { ok: false, reason: 'UnknownType', errors: `type: unknown event type ${JSON.stringify(declared ?? null)}` };
  }
  const validate = validators.get(type);
  if (validate === undefined) throw new Error(`no schema compiled for ${type}`);
  if (!validate(value)) return { ok: false, reason: 'SchemaInvalid', errors: describe(validate.errors ?? []) };
  const event = value as CloudEvent;
  // A rule JSON Schema cannot state: the subject is the app the data is about.
  if (event.subject !== appSubject(event.data.app)) {
    return { ok: false, reason: 'SchemaInvalid', errors: `subject: must equal data.app as namespace/name ("${appSubject(event.data.app)}")` };
  }
  return { ok: true, event };
}

// A message with thousands of unknown fields would otherwise be said in megabytes, in a
// log line, an audit record and a JetStream advisory: the first few say what is wrong.
const MAX_ERRORS = 10;
const MAX_SEGMENT = 64;

/** `data.number: must be integer; data.extra: is not allowed` (the first ten, then how many more). */
function describe(errors: ErrorObject[]): string {
  const more = errors.length > MAX_ERRORS ? `; … and ${errors.length - MAX_ERRORS} more` : '';
  return errors.slice(0, MAX_ERRORS)
    .map((e) => {
      const path = e.instancePath.split('/').slice(1).map(unescapePointer).map(shorten);
      if (e.keyword === 'required') return `${[...path, shorten(String(e.params.missingProperty))].join('.')}: is required`;
      if (e.keyword === 'additionalProperties') return `${[...path, shorten(String(e.params.additionalProperty))].join('.')}: is not allowed`;
      const detail = e.keyword === 'const' ? ` ${JSON.stringify(e.params.allowedValue)}` : e.keyword === 'enum' ? ` ${JSON.stringify(e.params.allowedValues)}` : '';
      return `${path.join('.') || 'event'}: ${e.message ?? e.keyword}${detail}`;
    })
    .join('; ') + more;
}

function shorten(segment: string): string {
  return segment.length > MAX_SEGMENT ? `${segment.slice(0, MAX_SEGMENT)}…` : segment;
}

function unescapePointer(segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~');
}
