/** An API failure reported by XAPI: `code` is the first element of ErrorDescription, `params` the rest. */
export class XapiError extends Error {
  override readonly name = 'XapiError';
  readonly code: string;
  readonly params: readonly string[];
  readonly method: string;

  constructor(method: string, code: string, params: readonly string[]) {
    super(`${method} failed: ${code}${params.length ? ` [${params.join(', ')}]` : ''}`);
    this.code = code;
    this.params = params;
    this.method = method;
  }
}

/**
 * The host could not be reached or answered outside the protocol (connection refused, TLS failure,
 * timeout, a non-JSON reply). Worth retrying when transient; the name is what Step Functions matches.
 */
export class XapiNetworkError extends Error {
  override readonly name = 'XapiNetworkError';
  readonly url: string;

  constructor(message: string, url: string, options?: { cause?: unknown }) {
    super(message, options);
    this.url = url;
  }
}

/** A transfer (export/import) answered with an HTTP status that is not the expected 200. */
export class XapiHttpError extends Error {
  override readonly name = 'XapiHttpError';
  readonly status: number;
  readonly url: string;

  constructor(status: number, url: string, detail: string) {
    super(`${detail} (HTTP ${status})`);
    this.status = status;
    this.url = url;
  }
}

export function isXapiError(error: unknown, code?: string): error is XapiError {
  return error instanceof XapiError && (code === undefined || error.code === code);
}
