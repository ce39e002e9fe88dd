// GitHub's answers checked against the few fields the client reads, before it
// reads them (issue 12 §4). Octokit hands over whatever came: a truncated JSON
// body or a proxy's HTML page arrives as a string, a field of the wrong type as
// it is. Read unchecked, those became a TypeError ("Cannot read properties of
// undefined") far from the call, or a PR number "42" written into a RollbackAttempt
// the API server then refuses. Checked here, each is one error naming the route or
// the field; the call wrapper retries it as UNAVAILABLE (a body cut short or a
// proxy's page may be gone on the next try) and then says it. Pure.

/** GitHub answered outside its API description. No `status`: classifyHttpError reads it as UNAVAILABLE. */
export class MalformedAnswer extends Error {
  constructor(message: string) {
    super(`${message} (outside GitHub's API description)`);
    this.name = 'MalformedAnswer';
  }
}

const shown = (value: unknown) => (value === undefined ? 'missing' : `${JSON.stringify(value)?.slice(0, 60)}`);

/** A 2xx answer whose body is not JSON (Octokit passes text through): names the request, the type and the start. */
export function checkJsonBody(response: { status: number; url: string; headers: Record<string, unknown>; data: unknown }, method: string): void {
  // 204 and 205 carry no body by definition.
  if (response.status === 204 || response.status === 205) return;
  const data = response.data;
  if (typeof data === 'object' && data !== null && !(data instanceof ArrayBuffer)) return;
  const text = typeof data === 'string' ? data : '';
  const path = (() => {
    try {
      return new URL(response.url).pathname;
    } catch {
      return response.url;
    }
  })();
  const type = typeof response.headers['content-type'] === 'string' ? response.headers['content-type'] : 'none';
  throw new MalformedAnswer(`${method} ${path} answered ${response.status} with a body that is not JSON (content-type ${type}, ${text.length} bytes, starting ${JSON.stringify(text.slice(0, 40))})`);
}

type Kind = 'string' | 'integer' | 'object' | 'array' | 'boolean';

function is(value: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'string': return typeof value === 'string';
    case 'integer': return Number.isSafeInteger(value);
    case 'boolean': return typeof value === 'boolean';
    case 'array': return Array.isArray(value);
    case 'object': return typeof value === 'object' && value !== null && !Array.isArray(value);
  }
}

/** The value at `path` (dotted) of `root`, which must be of `kind`; `what` names the answer in the error. */
export function need(root: unknown, path: string, kind: Kind, what: string): void {
  let value: unknown = root;
  for (const key of path.split('.')) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  if (!is(value, kind)) throw new MalformedAnswer(`${what}: ${path} is ${shown(value)}, not ${kind === 'integer' ? 'an integer' : kind === 'object' || kind === 'array' ? `an ${kind}` : `a ${kind}`}`);
}

/** A pull request as list and get return it: the fields pullRequestInfo reads. */
export function checkPull(pull: unknown, what: string): void {
  need(pull, 'number', 'integer', what);
  need(pull, 'html_url', 'string', what);
  need(pull, 'state', 'string', what);
  need(pull, 'head.ref', 'string', what);
  need(pull, 'head.sha', 'string', what);
  need(pull, 'base.ref', 'string', what);
}

/** Each element of a list answer, by its index. */
export function checkEach(list: unknown, what: string, check: (item: unknown, what: string) => void): void {
  if (!Array.isArray(list)) throw new MalformedAnswer(`${what} is ${shown(list)}, not a list`);
  list.forEach((item, i) => check(item, `${what}[${i}]`));
}

export function checkCommit(commit: unknown, what: string): void {
  need(commit, 'sha', 'string', what);
  need(commit, 'commit', 'object', what);
}

export function checkTree(tree: unknown, what: string): void {
  need(tree, 'sha', 'string', what);
  need(tree, 'tree', 'array', what);
  checkEach((tree as { tree: unknown }).tree, `${what} tree`, (entry, at) => {
    for (const field of ['path', 'mode', 'type', 'sha']) need(entry, field, 'string', at);
  });
}
