import type { Dispatcher } from 'undici';
import { request } from './undici-parts.ts';
import { XapiError, XapiNetworkError } from './errors.ts';

export interface RpcTarget {
  /** Base URL of the host, e.g. `https://pool-master`. */
  readonly url: string;
  readonly dispatcher: Dispatcher;
  /** Milliseconds for the whole call (connect, headers and body). */
  readonly timeoutMs: number;
}

let nextId = 0;

/**
 * One JSON-RPC call. API errors come back with HTTP 200 and an `error` member whose message is the XAPI
 * code and whose data are its params. A host answering `text/xml` predates JSON-RPC.
 */
export async function callJsonRpc<T>(
  target: RpcTarget,
  method: string,
  params: readonly unknown[],
): Promise<T> {
  const endpoint = new URL('/jsonrpc', target.url).toString();
  const id = nextId++;
  let text: string;
  let contentType: string;
  try {
    const response = await request(endpoint, {
      method: 'POST',
      dispatcher: target.dispatcher,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method, params, id }),
      headersTimeout: target.timeoutMs,
      bodyTimeout: target.timeoutMs,
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    contentType = String(response.headers['content-type'] ?? '');
    text = await response.body.text();
    if (response.statusCode !== 200) {
      throw new XapiNetworkError(`${method}: HTTP ${response.statusCode} from ${endpoint}`, endpoint);
    }
  } catch (error) {
    if (error instanceof XapiNetworkError) throw error;
    throw new XapiNetworkError(`${method}: ${describeNetworkError(error)} (${endpoint})`, endpoint, {
      cause: error,
    });
  }
  if (!contentType.startsWith('application/json')) {
    throw new XapiNetworkError(
      `${method}: the host answered ${contentType || 'no content type'}, not JSON-RPC; XAPI 1.x hosts without JSON-RPC are not supported`,
      endpoint,
    );
  }
  let reply: { result?: T; error?: { message?: string; data?: unknown } };
  try {
    reply = JSON.parse(text) as typeof reply;
  } catch (error) {
    throw new XapiNetworkError(`${method}: the host sent malformed JSON`, endpoint, { cause: error });
  }
  if (reply.error) {
    const data = Array.isArray(reply.error.data) ? reply.error.data.map(String) : [];
    throw new XapiError(method, String(reply.error.message ?? 'INTERNAL_ERROR'), data);
  }
  return reply.result as T;
}

export function describeNetworkError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: string }).code;
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    if (
      error.name === 'TimeoutError' ||
      code === 'UND_ERR_HEADERS_TIMEOUT' ||
      code === 'UND_ERR_BODY_TIMEOUT'
    ) {
      return `timed out (${error.message})`;
    }
    return `${code ? code + ' ' : ''}${error.message}${cause}`;
  }
  return String(error);
}
