import { InputValidationError } from '../lambdas/shared/input-error.ts';
import { ConfigError } from '../infra/config/config.ts';
import { UsageError } from './exit-codes.ts';

/**
 * Runs the workflows' own input validation (sync or async) before anything starts: its errors, which name
 * the field and the fix, become usage errors.
 */
export function validated<T>(parse: () => T): T {
  try {
    const result = parse();
    return (result instanceof Promise ? result.catch(asUsageError) : result) as T;
  } catch (error) {
    return asUsageError(error);
  }
}

function asUsageError(error: unknown): never {
  if (error instanceof InputValidationError || error instanceof ConfigError)
    throw new UsageError(error.message);
  throw error;
}
