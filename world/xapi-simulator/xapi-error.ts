/** An XAPI API error: a code and string parameters, as both wire protocols carry them. */
export class XapiError extends Error {
  readonly code: string;
  readonly params: readonly string[];

  constructor(code: string, params: readonly unknown[] = []) {
    super(params.length > 0 ? `${code} [${params.join(', ')}]` : code);
    this.name = 'XapiError';
    this.code = code;
    this.params = params.map(String);
  }

  /** The `[CODE, ...params]` list used by XML-RPC's ErrorDescription and task.error_info. */
  get description(): string[] {
    return [this.code, ...this.params];
  }
}

/** Any thrown value as an XapiError; unexpected exceptions become INTERNAL_ERROR, as xapi reports them. */
export function asXapiError(error: unknown): XapiError {
  if (error instanceof XapiError) return error;
  return new XapiError('INTERNAL_ERROR', [error instanceof Error ? error.message : String(error)]);
}
