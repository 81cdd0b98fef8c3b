/**
 * The logging surface domain code needs. Powertools' Logger satisfies it in Lambda; the CLI and tests
 * pass their own. Callers never put passwords or session refs in `fields`.
 */
export interface Log {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export const silentLog: Log = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
