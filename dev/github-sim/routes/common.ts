// Small helpers the route handlers share: reading a JSON body the way GitHub
// checks it (422 on a missing or mistyped field) and paginating lists.
import { unprocessable } from '../api-error.ts';
import type { RequestContext, RouteResult } from '../router.ts';

export type Body = Record<string, unknown>;

export function body(ctx: RequestContext): Body {
  return ctx.body !== null && typeof ctx.body === 'object' && !Array.isArray(ctx.body) ? ctx.body as Body : {};
}

const invalid = (field: string, resource: string) => unprocessable('Invalid request.', [{ resource, field, code: 'invalid', message: `"${field}" wasn't supplied or is invalid.` }]);

export function requiredString(b: Body, field: string, resource = 'Request'): string {
  const value = b[field];
  if (typeof value !== 'string' || value.length === 0) throw invalid(field, resource);
  return value;
}

export function optionalString(b: Body, field: string, resource = 'Request'): string | undefined {
  const value = b[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(field, resource);
  return value;
}

export function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], field: string, fallback?: T): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (!allowed.includes(value as T)) throw invalid(field, 'Request');
  return value as T;
}

/** GitHub's page/per_page pagination (30 by default, 100 at most) with a Link header. */
export function paginate(ctx: RequestContext, items: unknown[]): RouteResult {
  const perPage = Math.min(Math.max(Number(ctx.query.get('per_page') ?? 30) || 30, 1), 100);
  const page = Math.max(Number(ctx.query.get('page') ?? 1) || 1, 1);
  const last = Math.max(Math.ceil(items.length / perPage), 1);
  const link = (n: number, rel: string) => {
    const q = new URLSearchParams(ctx.query);
    q.set('page', String(n));
    q.set('per_page', String(perPage));
    return `<${ctx.views.api}${ctx.path}?${q}>; rel="${rel}"`;
  };
  const links = [
    ...(page < last ? [link(page + 1, 'next'), link(last, 'last')] : []),
    ...(page > 1 ? [link(1, 'first'), link(page - 1, 'prev')] : []),
  ];
  return { status: 200, body: items.slice((page - 1) * perPage, page * perPage), ...(links.length > 0 ? { headers: { link: links.join(', ') } } : {}) };
}
