// Answers GitHub's API description does not allow, made from the real answer
// after the request took effect (a PR is opened, then its answer is garbage):
// a field dropped or set to a wrong type, the JSON cut short, or a text body —
// a proxy's HTML page — in its place. The server applies one per `corrupt` rule
// (control.ts); each is recorded as a violation, so a test that meant it clears
// them and one that did not fails.

/** The next `times` answers of `route` ("METHOD /template") are made malformed. */
export interface CorruptRule {
  route: string;
  times?: number;
  /** The field to drop (default: the first one, when nothing else is asked). */
  drop?: string;
  /** Fields set to these values, by dotted path (`head.sha`), in the object (or a list's first element): wrong types. */
  set?: Record<string, unknown>;
  /** Send only the first `truncate` characters of the JSON. */
  truncate?: number;
  /** Send this text instead of JSON, as `contentType` (default text/html; charset=utf-8). */
  text?: string;
  contentType?: string;
}

/** What goes on the wire instead of the JSON body. */
export interface RawBody {
  text: string;
  contentType: string;
  /** The violation it is. */
  why: string;
}

export type Malformed = { body: unknown; raw?: undefined } | { raw: RawBody; body?: undefined };

export function malformed(body: unknown, rule: CorruptRule): Malformed {
  if (rule.text !== undefined) {
    const contentType = rule.contentType ?? 'text/html; charset=utf-8';
    return { raw: { text: rule.text, contentType, why: `body replaced by ${rule.text.length} bytes of ${contentType}` } };
  }
  if (rule.set === undefined && rule.truncate === undefined) return { body: dropField(body, rule.drop) };
  let result = rule.drop === undefined ? body : dropField(body, rule.drop);
  if (rule.set) result = setFields(result, rule.set);
  if (rule.truncate === undefined) return { body: result };
  const json = JSON.stringify(result);
  return { raw: { text: json.slice(0, rule.truncate), contentType: rule.contentType ?? 'application/json; charset=utf-8', why: `JSON body cut after ${rule.truncate} of ${json.length} bytes` } };
}

/** Drops one field from an object (or from the first element of a list). */
export function dropField(body: unknown, drop: string | undefined): unknown {
  if (Array.isArray(body)) return body.length === 0 ? body : [dropField(body[0], drop), ...body.slice(1)];
  if (body === null || typeof body !== 'object') return body;
  const copy = { ...(body as Record<string, unknown>) };
  delete copy[drop ?? Object.keys(copy)[0]!];
  return copy;
}

function setFields(body: unknown, fields: Record<string, unknown>): unknown {
  if (Array.isArray(body)) return body.length === 0 ? body : [setFields(body[0], fields), ...body.slice(1)];
  const copy = structuredClone(body) as Record<string, unknown>;
  for (const [path, value] of Object.entries(fields)) {
    const keys = path.split('.');
    let at = copy;
    for (const key of keys.slice(0, -1)) {
      if (typeof at[key] !== 'object' || at[key] === null) at[key] = {};
      at = at[key] as Record<string, unknown>;
    }
    at[keys.at(-1)!] = value;
  }
  return copy;
}
