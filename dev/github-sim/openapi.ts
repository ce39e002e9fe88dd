// Checks the simulator's answers against GitHub's official OpenAPI description
// (@octokit/openapi, api.github.com): the operation for (method, path template),
// the response declared for the status code, the JSON body against its schema.
// A body GitHub would not send is a violation, so a test cannot pass against a
// simulator that drifted from the real API.
//
// The description is OpenAPI 3.0 and large (13 MB): it is read once per process,
// its schemas are adapted to JSON Schema once, and each (operation, status) is
// compiled on first use and cached.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import AjvModule, { type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

type Schema = Record<string, unknown>;

interface OpenApiDocument {
  paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, unknown> }>>;
  components: { schemas: Record<string, Schema>; responses: Record<string, unknown> };
}

const ROOT_ID = 'https://api.github.com/openapi.json';
/** Keys whose values are data (examples, enums), never schemas to adapt. */
const DATA_KEYS = new Set(['example', 'examples', 'enum', 'default', 'const']);

/**
 * OpenAPI 3.0 → JSON Schema, for the parts GitHub's description uses:
 * - `nullable: true` becomes "null, or the schema" (ajv's own `nullable` needs a
 *   sibling `type`, which GitHub's `allOf`/`oneOf` wrappers lack);
 * - `oneOf` becomes `anyOf`: GitHub's alternatives overlap (a private user is
 *   also a valid public user), so "exactly one" would reject real responses;
 * - `discriminator` goes (it only names the alternative);
 * - refs into components are made absolute, so inline response schemas resolve
 *   against the one registered copy of the components.
 */
export function adaptSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(adaptSchema);
  if (node === null || typeof node !== 'object') return node;
  const out: Schema = {};
  for (const [key, value] of Object.entries(node as Schema)) {
    if (key === 'nullable' || key === 'discriminator') continue;
    if (key === '$ref' && typeof value === 'string') out.$ref = value.startsWith('#/') ? `${ROOT_ID}${value}` : value;
    else if (key === 'oneOf') out.anyOf = adaptSchema(value);
    else out[key] = DATA_KEYS.has(key) ? value : adaptSchema(value);
  }
  return (node as Schema).nullable === true ? { anyOf: [{ type: 'null' }, out] } : out;
}

export interface ResponseCheck {
  method: string;
  /** The OpenAPI path template, e.g. /repos/{owner}/{repo}/pulls/{pull_number}. */
  template: string;
  status: number;
  body: unknown;
}

export class OpenApiValidator {
  private readonly doc: OpenApiDocument;
  private readonly ajv: InstanceType<typeof AjvModule.default>;
  private readonly compiled = new Map<string, ValidateFunction | 'no-body'>();

  constructor(doc: OpenApiDocument) {
    this.doc = doc;
    // strict: false — the description carries OpenAPI keywords (x-github, readOnly,
    // formats like int64) that are not JSON Schema; they describe, never constrain.
    this.ajv = new AjvModule.default({ strict: false, allErrors: false, validateSchema: false, logger: false });
    addFormatsModule.default(this.ajv);
    this.ajv.addSchema({ $id: ROOT_ID, components: { schemas: adaptSchema(doc.components.schemas) } });
  }

  /** Reads GitHub's description from the installed @octokit/openapi package. */
  static load(): OpenApiValidator {
    const require = createRequire(import.meta.url);
    const file = require.resolve('@octokit/openapi/generated/api.github.com.json');
    return new OpenApiValidator(JSON.parse(readFileSync(file, 'utf8')) as OpenApiDocument);
  }

  /** Whether GitHub's API has this operation at all. */
  hasOperation(method: string, template: string): boolean {
    return this.doc.paths[template]?.[method.toLowerCase()] !== undefined;
  }

  /** The problems with one response; empty when GitHub could have sent it. */
  check(response: ResponseCheck): string[] {
    const where = `${response.method} ${response.template} → ${response.status}`;
    const operation = this.doc.paths[response.template]?.[response.method.toLowerCase()];
    if (!operation) return [`${where}: no such operation in GitHub's API`];
    let validate: ValidateFunction | 'no-body' | undefined;
    try {
      validate = this.validatorFor(response.method.toLowerCase(), response.template, response.status, operation.responses ?? {});
    } catch (error) {
      return [`${where}: ${error instanceof Error ? error.message : String(error)}`];
    }
    if (validate === undefined) return [`${where}: GitHub documents no ${response.status} answer for this operation`];
    if (validate === 'no-body') {
      return response.body === undefined ? [] : [`${where}: GitHub sends no body with this answer`];
    }
    if (validate(response.body)) return [];
    return [`${where}: ${this.ajv.errorsText(validate.errors, { dataVar: 'body' })}`];
  }

  private validatorFor(method: string, template: string, status: number, responses: Record<string, unknown>): ValidateFunction | 'no-body' | undefined {
    const key = `${method} ${template} ${status}`;
    const cached = this.compiled.get(key);
    if (cached) return cached;
    // A conditional GET may always answer 304 Not Modified, without a body.
    if (status === 304) return 'no-body';
    let declared = responses[String(status)] ?? responses[`${String(status)[0]}XX`] ?? responses.default;
    // The description lists only some errors per operation, but every GitHub error
    // has the basic-error shape; any other undeclared answer is a violation.
    if (declared === undefined && status >= 400) declared = { content: { 'application/json': { schema: { $ref: '#/components/schemas/basic-error' } } } };
    if (declared === undefined) return undefined;
    const response = this.deref(declared) as { content?: Record<string, { schema?: unknown }> };
    const schema = response.content?.['application/json']?.schema;
    const validate = schema === undefined ? 'no-body' as const : this.ajv.compile(adaptSchema(schema) as Schema);
    this.compiled.set(key, validate);
    return validate;
  }

  /** Follows `#/components/responses/...` refs of response objects (not schemas). */
  private deref(node: unknown): unknown {
    let current = node as { $ref?: string };
    while (current && typeof current.$ref === 'string') {
      current = current.$ref.slice(2).split('/').reduce<unknown>((at, part) => (at as Record<string, unknown>)[part], this.doc) as { $ref?: string };
    }
    return current;
  }
}

let shared: OpenApiValidator | undefined;

/** One validator per process: the description is large and never changes. */
export function githubOpenApi(): OpenApiValidator {
  return shared ??= OpenApiValidator.load();
}
