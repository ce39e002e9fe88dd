// An answer GitHub gives instead of a result. The body has the shape of GitHub's
// `basic-error` / `validation-error` schemas, so it validates like a real one.

export const DOCS_URL = 'https://docs.github.com/rest';

export interface ValidationDetail {
  resource: string;
  code: string;
  field?: string;
  message?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly errors: ValidationDetail[] | undefined;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, options: { errors?: ValidationDetail[]; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.errors = options.errors;
    this.headers = options.headers ?? {};
  }

  body(): Record<string, unknown> {
    return { message: this.message, documentation_url: DOCS_URL, ...(this.errors ? { errors: this.errors } : {}), status: String(this.status) };
  }
}

/** GitHub's answer to a write to an archived repository (403). */
export const ARCHIVED_MESSAGE = 'Repository was archived so is read-only.';

export const notFound = (): ApiError => new ApiError(404, 'Not Found');

/** GitHub's 422 for a request it understood but will not do. */
export const unprocessable = (message: string, errors?: ValidationDetail[]): ApiError =>
  new ApiError(422, message, errors ? { errors } : {});
