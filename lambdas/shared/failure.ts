/**
 * Turns a Step Functions error (`{Error, Cause}`) into plain words. A Lambda's Cause is a JSON document
 * with `errorMessage`; the local runner's is the message itself.
 */
export function failureMessage(failure: { Error?: string; Cause?: string } | undefined): {
  error: string;
  cause: string;
} {
  const error = failure?.Error ?? 'UnknownError';
  const raw = failure?.Cause ?? '';
  try {
    const parsed = JSON.parse(raw) as { errorMessage?: string; errorType?: string };
    if (typeof parsed.errorMessage === 'string') return { error, cause: parsed.errorMessage };
  } catch {
    // not JSON: the cause is the message itself
  }
  return { error, cause: raw || error };
}
