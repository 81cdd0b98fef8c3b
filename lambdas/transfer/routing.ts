/**
 * Where a transfer runs. A Lambda stops after 15 minutes and one XAPI transfer is a single stream that
 * can't be split or resumed, so transfers expected to be large go to an ECS Fargate task running the
 * same code.
 */
export type TransferRoute = 'lambda' | 'fargate';

export interface TransferRouting {
  /** Expected bytes at or above which a transfer runs on Fargate. Undefined: always Lambda. */
  readonly fargateThresholdBytes?: number;
}

export function routeFor(routing: TransferRouting | undefined, expectedBytes: number): TransferRoute {
  const threshold = routing?.fargateThresholdBytes;
  return threshold !== undefined && expectedBytes >= threshold ? 'fargate' : 'lambda';
}

/** A delta's expected size: the largest of the recent deltas (none yet: nothing to go by, so 0). */
export function expectedDeltaBytes(recentDeltaBytes: readonly number[]): number {
  return recentDeltaBytes.length ? Math.max(...recentDeltaBytes) : 0;
}
