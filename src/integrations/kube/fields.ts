// Which fields of a watched object are kept (custom-objects.ts `transform`): the ones its readers
// read, named as a tree. Pure.

/**
 * `true` keeps a value whole; an object keeps those of its keys (each by its own Fields); a
 * one-element array keeps, of each element of a list, what that element names.
 */
export type Fields = true | { readonly [key: string]: Fields } | readonly [Fields];

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * `value` with only `fields` kept. What is not of the shape `fields` expects (a string where an
 * object is expected, an object where a list is) is kept as it came, so a reader that checks
 * types sees what it would have seen; so is every element of a list, in its place, whatever its
 * type, so a reader that counts or numbers them counts the same. Keys keep their order.
 */
export function keepFields(value: unknown, fields: Fields): unknown {
  if (fields === true) return value;
  if (Array.isArray(fields)) return Array.isArray(value) ? value.map((element) => keepFields(element, fields[0] as Fields)) : value;
  if (!isPlainObject(value)) return value;
  const named = fields as { readonly [key: string]: Fields };
  const kept: Record<string, unknown> = {};
  for (const key of Object.keys(value)) if (Object.hasOwn(named, key)) kept[key] = keepFields(value[key], named[key]!);
  return kept;
}

/**
 * What `fields` keeps of the value at `path` (keys, and list indices as numbers or digit strings):
 * `true` when it is kept whole, the Fields of what is kept of it, undefined when it is not kept.
 * With `of`, the object the path is read in: a value on the way that is not of the shape `fields`
 * expects is kept as it came, whole. For a test that every field a reader reads is kept.
 */
export function fieldsAt(fields: Fields, path: readonly (string | number)[], of?: { object: unknown }): Fields | undefined {
  let at: Fields = fields;
  let value: unknown = of?.object;
  for (const segment of path) {
    if (at === true) return true;
    const key = String(segment);
    if (Array.isArray(at)) {
      if (of && !Array.isArray(value)) return true;
      if (!/^\d+$/.test(key)) return undefined;
      at = at[0] as Fields;
    } else {
      if (of && !isPlainObject(value)) return true;
      const named = at as { readonly [key: string]: Fields };
      if (!Object.hasOwn(named, key)) return undefined;
      at = named[key]!;
    }
    value = of && typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  }
  if (of && at !== true && (Array.isArray(at) ? !Array.isArray(value) : !isPlainObject(value))) return true;
  return at;
}
