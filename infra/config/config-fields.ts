/** A configuration error; the message starts with `config <field>:` so the operator knows what to fix. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`config ${field}: ${problem}`);
    this.field = field;
  }
}

export function expectObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(field, 'must be an object');
  }
  return value as Record<string, unknown>;
}

export function expectArray(value: unknown, field: string, problem: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new ConfigError(field, problem);
  return value;
}

/** A misspelt field would silently fall back to its default: refuse it instead. */
export function rejectUnknown(
  object: Record<string, unknown>,
  field: string,
  known: readonly string[],
): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      const at = field === '(root)' ? key : `${field}.${key}`;
      throw new ConfigError(at, `is not a known field (known: ${known.join(', ')})`);
    }
  }
}

/** Checks a field only when present; `check` returns the problem, or undefined when the value is fine. */
export function optional(value: unknown, field: string, check: (value: unknown) => string | undefined): void {
  if (value === undefined) return;
  const problem = check(value);
  if (problem !== undefined) throw new ConfigError(field, problem);
}
