import type { Log } from './log.ts';

/**
 * Clean-up after a failure: each action is tried on its own, so one failing does not skip the others,
 * and the record of what was done (or could not be) goes into the execution's output.
 */
export class CleanupLog {
  readonly actions: string[] = [];
  readonly #log: Log;

  constructor(log: Log) {
    this.#log = log;
  }

  async attempt(what: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
      this.actions.push(what);
    } catch (error) {
      this.actions.push(`${what} FAILED: ${error instanceof Error ? error.message : String(error)}`);
      this.#log.error('clean-up action failed', { what, error: String(error) });
    }
  }

  note(what: string): void {
    this.actions.push(what);
  }
}

/** A field an earlier state must have set; its absence is a workflow defect, not bad input. */
export function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`internal: the workflow reached this step without ${what}`);
  return value;
}
