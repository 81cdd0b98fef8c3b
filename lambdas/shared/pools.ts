import { InputValidationError } from './input-error.ts';
import type { XapiConnectionOptions, XapiCredentials } from '../xapi/index.ts';

/** How to reach one pool. Credentials are fetched when needed, never stored in state. */
export interface PoolAccess {
  readonly connection: XapiConnectionOptions;
  credentials(): Promise<XapiCredentials>;
}

/** The pools a deployment knows, by name. */
export interface PoolDirectory {
  readonly defaultPool: string;
  get(name: string): PoolAccess;
}

export function poolDirectory(
  pools: Readonly<Record<string, PoolAccess>>,
  defaultPool?: string,
): PoolDirectory {
  const names = Object.keys(pools);
  const fallback = defaultPool ?? names[0];
  if (fallback === undefined) throw new Error('no pool is configured');
  return {
    defaultPool: fallback,
    get(name) {
      const pool = pools[name];
      if (!pool) {
        throw new InputValidationError(
          'pool',
          `"${name}" is not a configured pool`,
          `Use one of: ${names.join(', ')}.`,
        );
      }
      return pool;
    },
  };
}
