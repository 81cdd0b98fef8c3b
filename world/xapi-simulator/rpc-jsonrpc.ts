import { dispatch } from './method-table.ts';
import type { CallContext, MethodTable } from './method-table.ts';
import { toJsonValue } from './rpc-values.ts';
import { asXapiError } from './xapi-error.ts';

/**
 * `POST /jsonrpc`. API errors travel with HTTP 200 as `{"code":1,"message":CODE,"data":[params]}`; any
 * JSON id (0 and null included) is echoed. A request without `"jsonrpc":"2.0"` gets xapi's 1.0 shape.
 */
export function handleJsonRpc(
  table: MethodTable,
  ctx: Omit<CallContext, 'session'>,
  body: string,
): { status: number; body: string } {
  let request: unknown;
  try {
    request = JSON.parse(body);
  } catch {
    return { status: 200, body: JSON.stringify(parseError(null)) };
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    return { status: 200, body: JSON.stringify(parseError(null)) };
  }
  const { jsonrpc, method, params, id } = request as Record<string, unknown>;
  const v2 = jsonrpc === '2.0';
  const echoedId = id === undefined ? null : id;
  try {
    if (typeof method !== 'string') throw new Error('method must be a string');
    const result = dispatch(table, ctx, method, Array.isArray(params) ? params : []);
    const payload = v2
      ? { jsonrpc: '2.0', result: toJsonValue(result), id: echoedId }
      : { result: toJsonValue(result), error: null, id: echoedId };
    return { status: 200, body: JSON.stringify(payload) };
  } catch (thrown) {
    const error = asXapiError(thrown);
    const detail = { code: 1, message: error.code, data: [...error.params] };
    const payload = v2
      ? { jsonrpc: '2.0', error: detail, id: echoedId }
      : { result: null, error: detail, id: echoedId };
    return { status: 200, body: JSON.stringify(payload) };
  }
}

function parseError(id: unknown): unknown {
  return { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error', data: [] }, id };
}
