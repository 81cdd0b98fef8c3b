import { method } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import type { PoolState } from './pool.ts';
import type { XapiValue } from './rpc-values.ts';

/** `<Class>.get_<field>(s, self)` for each field, read from the class's record so both always agree. */
export function fieldGetters(
  className: string,
  record: (pool: PoolState, ref: unknown) => Record<string, XapiValue>,
  fields: readonly string[],
): MethodTable {
  return Object.fromEntries(
    fields.map((field) => [
      `${className}.get_${field}`,
      method(1, ({ pool }, args) => record(pool, args[0])[field]!),
    ]),
  );
}
