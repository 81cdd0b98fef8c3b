/** What `vdi-vault` exits with (docs/cli.md lists them for scripts). */
export const EXIT = {
  /** The command did what was asked; an execution succeeded; every layer verified. */
  ok: 0,
  /** An execution failed (or was aborted, timed out, or interrupted): the summary says why. */
  executionFailed: 1,
  /** Bad command line or input: unknown flag, missing value, invalid uuid… nothing was started. */
  usage: 2,
  /** `verify` found an object that differs from its manifest, is not a valid VHD, or is missing. */
  verificationFailed: 3,
  /** The command could not run: S3, AWS, the stack, the pool or an execution log was unreachable or unreadable. */
  unavailable: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A problem with the command line or the input: exits 2 with the message and the command's usage hint. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A problem reaching what the command works on: exits 4. */
export class UnavailableError extends Error {
  override readonly name = 'UnavailableError';
}
