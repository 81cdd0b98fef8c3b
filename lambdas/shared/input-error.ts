/**
 * Bad input from a person or a caller: names the field and says how to fix it. Its name is what Step
 * Functions reports as the error.
 */
export class InputValidationError extends Error {
  override readonly name = 'InputValidationError';
  readonly field: string;

  constructor(field: string, problem: string, fix: string) {
    super(`${field}: ${problem}. ${fix}`);
    this.field = field;
  }
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Refuses fields we don't know, so a typo is not silently ignored. */
export function rejectUnknownFields(
  input: Record<string, unknown>,
  known: readonly string[],
  where: string,
): void {
  for (const field of Object.keys(input)) {
    if (!known.includes(field)) {
      throw new InputValidationError(
        /^[A-Za-z_][\w-]*$/.test(field) ? field : JSON.stringify(field),
        `is not a field of ${where}`,
        `Use only ${known.map((name) => `"${name}"`).join(', ')}.`,
      );
    }
  }
}
