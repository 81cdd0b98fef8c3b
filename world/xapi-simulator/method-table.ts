import type { HostState, PoolState, SessionState } from './pool.ts';
import type { XapiValue } from './rpc-values.ts';
import { XapiError } from './xapi-error.ts';

export interface CallContext {
  readonly pool: PoolState;
  /** The host whose server received the call. */
  readonly host: HostState;
  /** Undefined only for methods that take no session. */
  readonly session: SessionState | undefined;
}

export interface MethodDef {
  /** Parameters after the session: [mandatory, with optional ones]. */
  readonly params: readonly [number, number];
  /** False for the few calls made without a session (login, system.*). */
  readonly takesSession: boolean;
  /** Changes state: refused to read-only sessions. */
  readonly writes: boolean;
  run(ctx: CallContext, args: readonly unknown[]): XapiValue;
}

export type MethodTable = Record<string, MethodDef>;

export function method(
  params: number | readonly [number, number],
  run: MethodDef['run'],
  options: { takesSession?: boolean; writes?: boolean } = {},
): MethodDef {
  return {
    params: typeof params === 'number' ? [params, params] : params,
    takesSession: options.takesSession ?? true,
    writes: options.writes ?? false,
    run,
  };
}

// Argument readers: xapi rejects a wrongly typed argument with FIELD_TYPE_ERROR.
export function stringArg(args: readonly unknown[], index: number, name: string): string {
  const value = args[index];
  if (typeof value !== 'string') throw new XapiError('FIELD_TYPE_ERROR', [name]);
  return value;
}

/** 64-bit ints arrive as JSON numbers or (XML-RPC) decimal strings. */
export function intArg(value: unknown, name: string): number {
  const number = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isSafeInteger(number))
    throw new XapiError('FIELD_TYPE_ERROR', [name]);
  return number;
}

export function boolArg(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw new XapiError('FIELD_TYPE_ERROR', [name]);
  return value;
}

export function stringMapArg(value: unknown, name: string): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new XapiError('FIELD_TYPE_ERROR', [name]);
  }
  const out: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') throw new XapiError('FIELD_TYPE_ERROR', [name]);
    out[key] = entry;
  }
  return out;
}

export function stringListArg(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || value.some((entry) => typeof entry !== 'string')) {
    throw new XapiError('FIELD_TYPE_ERROR', [name]);
  }
  return value as string[];
}

/**
 * Runs one call the way xapi's generated dispatcher does: unknown method, then parameter count (not
 * counting the session), then session, then RBAC, then the method.
 */
export function dispatch(
  table: MethodTable,
  ctx: Omit<CallContext, 'session'>,
  name: string,
  params: readonly unknown[],
): XapiValue {
  const def = Object.hasOwn(table, name) ? table[name] : undefined;
  if (def === undefined) throw new XapiError('MESSAGE_METHOD_UNKNOWN', [name]);
  const received = params.length - (def.takesSession ? 1 : 0);
  if (received < def.params[0] || received > def.params[1]) {
    throw new XapiError('MESSAGE_PARAMETER_COUNT_MISMATCH', [name, def.params[0], received]);
  }
  const session = def.takesSession ? ctx.pool.session(params[0]) : undefined;
  const injected = ctx.pool.faults.takeRpcError(name);
  if (injected !== undefined) throw new XapiError(injected.code, injected.params);
  if (def.writes && session?.readOnly === true) {
    throw new XapiError('RBAC_PERMISSION_DENIED', [
      name.toLowerCase(),
      'No permission to perform this action',
    ]);
  }
  return def.run({ ...ctx, session }, def.takesSession ? params.slice(1) : params);
}
