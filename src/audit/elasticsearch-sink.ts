// The Elasticsearch side of the audit trail (SPEC §10): records are created,
// never overwritten, in `ai-operator-audit-YYYY.MM.DD` with `_id` = eventId, so a
// replay after a crash is a harmless 409. The only file that imports the client.
import { Client, errors } from '@elastic/elasticsearch';
import { IntegrationError, type ErrorCode } from '../ports/errors.ts';
import { auditIndexName, redactString, type AuditRecord } from './record.ts';

export const AUDIT_INDEX_PATTERN = 'ai-operator-audit-*';
export const AUDIT_TEMPLATE_NAME = 'ai-operator-audit';

/**
 * Where a record sits in its chain, stored beside the record (outside the hashed
 * fields): the verify command sorts by it, so order never depends on equal
 * timestamps, and one replica's chain is never mixed up with another's.
 */
export interface ChainPlace {
  chainId: string;
  chainSeq: number;
}

export type AuditDocument = AuditRecord & ChainPlace;

export interface ShipOutcome {
  /** How many records, from the first, are now in Elasticsearch (created or already there). */
  shipped: number;
  created: number;
  /** Records Elasticsearch already had (409 on create): a replay, not a loss. */
  duplicates: number;
  /** Why the record after the shipped ones was not taken. */
  error?: IntegrationError;
}

/** What the shipper and the verify command need from Elasticsearch. */
export interface AuditIndex {
  /** Installs (or updates) the index template; must succeed before the first ship. */
  ensureTemplate(signal?: AbortSignal): Promise<void>;
  /** Never throws for Elasticsearch's answers: a transport failure is an outcome with nothing shipped. */
  ship(documents: readonly AuditDocument[], signal?: AbortSignal): Promise<ShipOutcome>;
  /** Documents with since ≤ timestamp ≤ until, by chain then place in the chain. */
  read(since: Date, until: Date): AsyncIterable<AuditDocument>;
  close(): Promise<void>;
}

/**
 * Top level `dynamic: false`: a field added to the record later is kept in
 * _source (so the hash still verifies) but never gets a guessed mapping, and a
 * document is never refused for it, which `strict` would do until the next day's
 * index. `metadata` and `invariantsChecked` are `flattened`: their keys vary per
 * action, every key stays searchable as a keyword (`metadata.appName: cart`), and
 * no key can add a field to the mapping.
 */
export const AUDIT_TEMPLATE = {
  index_patterns: [AUDIT_INDEX_PATTERN],
  priority: 200,
  _meta: { managedBy: 'ai-operator', description: 'The audit trail (SPEC §10); installed by the operator at start-up.' },
  template: {
    settings: { number_of_shards: 1 },
    mappings: {
      dynamic: false,
      properties: {
        timestamp: { type: 'date' },
        level: { type: 'keyword' },
        module: { type: 'keyword' },
        correlationId: { type: 'keyword' },
        actionType: { type: 'keyword' },
        message: { type: 'text' },
        reasoning: { type: 'text' },
        invariantsChecked: { type: 'flattened' },
        metadata: { type: 'flattened' },
        eventId: { type: 'keyword' },
        trace_id: { type: 'keyword' },
        span_id: { type: 'keyword' },
        prevHash: { type: 'keyword' },
        hash: { type: 'keyword' },
        chainId: { type: 'keyword' },
        chainSeq: { type: 'long' },
      },
    },
  },
} as const;

/** The bulk body: one `create` per record, into the index of the record's UTC day. */
export function bulkOperations(documents: readonly AuditDocument[]): object[] {
  return documents.flatMap((doc) => [{ create: { _index: auditIndexName(doc.timestamp), _id: doc.eventId } }, doc]);
}

export interface BulkItemResult {
  status: number;
  error?: { type?: string; reason?: string | null } | undefined;
}

/**
 * Reads a bulk response in order: created and 409 (already there) count as
 * shipped; the first other failure ends the shipped prefix, since the spool's
 * checkpoint only moves forward over an unbroken run.
 */
export function bulkOutcome(items: readonly BulkItemResult[], sent: number): ShipOutcome {
  let created = 0;
  let duplicates = 0;
  for (const [i, item] of items.entries()) {
    if (item.status >= 200 && item.status < 300) created++;
    else if (item.status === 409) duplicates++;
    else {
      const what = [item.error?.type, item.error?.reason].filter(Boolean).join(': ') || 'no reason given';
      return { shipped: i, created, duplicates, error: new IntegrationError('auditBulk', codeOfStatus(item.status), `item ${i} refused with ${item.status}: ${redactString(what)}`) };
    }
  }
  if (items.length < sent) {
    return { shipped: items.length, created, duplicates, error: new IntegrationError('auditBulk', 'UNAVAILABLE', `${sent - items.length} items missing from the bulk response`) };
  }
  return { shipped: items.length, created, duplicates };
}

export function codeOfStatus(status: number | undefined): ErrorCode {
  if (status === 401 || status === 403) return 'PERMISSION_DENIED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'CONFLICT';
  if (status === 429) return 'RATE_LIMITED';
  if (status === 408 || status === 504) return 'TIMEOUT';
  if (status !== undefined && status >= 400 && status < 500) return 'INVALID_ARGUMENT';
  return 'UNAVAILABLE';
}

/** The client's errors as port errors; the message never carries the request's headers (the API key). */
export function toIntegrationError(call: string, error: unknown): IntegrationError {
  if (error instanceof IntegrationError) return error;
  if (error instanceof errors.ResponseError) {
    const body = error.body as { error?: { type?: string; reason?: string } } | undefined;
    const what = [body?.error?.type, body?.error?.reason].filter(Boolean).join(': ') || `HTTP ${error.statusCode}`;
    return new IntegrationError(call, codeOfStatus(error.statusCode), redactString(what), { cause: error });
  }
  if (error instanceof errors.TimeoutError) return new IntegrationError(call, 'TIMEOUT', redactString(error.message), { cause: error });
  const message = error instanceof Error ? error.message : String(error);
  return new IntegrationError(call, 'UNAVAILABLE', redactString(message), { cause: error });
}

export interface ElasticsearchOptions {
  url: string;
  /** ELASTICSEARCH_API_KEY: the encoded key (`Authorization: ApiKey …`). */
  apiKey?: string | undefined;
  requestTimeoutMs?: number;
}

export class ElasticsearchAuditIndex implements AuditIndex {
  readonly #client: Client;

  constructor(options: ElasticsearchOptions) {
    this.#client = new Client({
      node: options.url,
      ...(options.apiKey !== undefined && { auth: { apiKey: options.apiKey } }),
      requestTimeout: options.requestTimeoutMs ?? 10_000,
      // The shipper retries with its own backoff, from the durable spool.
      maxRetries: 0,
    });
  }

  async ensureTemplate(signal?: AbortSignal): Promise<void> {
    try {
      const request = { name: AUDIT_TEMPLATE_NAME, ...structuredClone(AUDIT_TEMPLATE) } as Parameters<Client['indices']['putIndexTemplate']>[0];
      await this.#client.indices.putIndexTemplate(request, signal && { signal });
    } catch (error) {
      throw toIntegrationError('auditTemplate', error);
    }
  }

  async ship(documents: readonly AuditDocument[], signal?: AbortSignal): Promise<ShipOutcome> {
    if (documents.length === 0) return { shipped: 0, created: 0, duplicates: 0 };
    let response;
    try {
      response = await this.#client.bulk({ operations: bulkOperations(documents) }, signal && { signal });
    } catch (error) {
      return { shipped: 0, created: 0, duplicates: 0, error: toIntegrationError('auditBulk', error) };
    }
    return bulkOutcome(response.items.map((item) => item.create ?? { status: 0, error: { reason: 'not a create result' } }), documents.length);
  }

  async *read(since: Date, until: Date): AsyncIterable<AuditDocument> {
    let after: (string | number)[] | undefined;
    for (;;) {
      let page;
      try {
        page = await this.#client.search<AuditDocument>({
          index: AUDIT_INDEX_PATTERN,
          ignore_unavailable: true,
          allow_no_indices: true,
          query: { range: { timestamp: { gte: since.toISOString(), lte: until.toISOString() } } },
          // eventId breaks a tie that only a tampered index can have (two records at one place).
          sort: [{ chainId: 'asc' }, { chainSeq: 'asc' }, { eventId: 'asc' }],
          size: 1000,
          track_total_hits: false,
          ...(after !== undefined && { search_after: after }),
        });
      } catch (error) {
        throw toIntegrationError('auditRead', error);
      }
      const hits = page.hits.hits;
      for (const hit of hits) if (hit._source !== undefined) yield hit._source;
      if (hits.length < 1000) return;
      after = hits.at(-1)!.sort as (string | number)[];
    }
  }

  async close(): Promise<void> {
    await this.#client.close();
  }
}
