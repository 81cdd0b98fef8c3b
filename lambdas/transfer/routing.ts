import {
  exportMemoryBytes,
  largestPartSizeWithin,
  partSizeFor,
  uploadCapacity,
  EXPORT_BUFFERED_PARTS_BEYOND_IN_FLIGHT,
} from '../export/part-size.ts';

/**
 * Where a transfer runs. A Lambda stops after 15 minutes and one XAPI transfer is a single stream that
 * can't be split or resumed, so transfers expected to be large go to an ECS Fargate task running the
 * same code. An export also needs memory for its part buffers: one that would not fit the export
 * Lambda's memory goes to Fargate too.
 */
export type TransferRoute = 'lambda' | 'fargate';

export interface TransferRouting {
  /** Expected bytes at or above which a transfer runs on Fargate. Undefined: always Lambda. */
  readonly fargateThresholdBytes?: number;
  /**
   * Memory of the export Lambda, in bytes. Undefined: memory is not considered (and a delta's parts are
   * sized for its expected bytes alone).
   */
  readonly lambdaMemoryBytes?: number;
}

export function routeFor(routing: TransferRouting | undefined, expectedBytes: number): TransferRoute {
  const threshold = routing?.fargateThresholdBytes;
  return threshold !== undefined && expectedBytes >= threshold ? 'fargate' : 'lambda';
}

/** A delta's expected size: the largest of the recent deltas (none yet: nothing to go by, so 0). */
export function expectedDeltaBytes(recentDeltaBytes: readonly number[]): number {
  return recentDeltaBytes.length ? Math.max(...recentDeltaBytes) : 0;
}

/** A delta may outgrow its recent ones: its parts leave room for this many times the expected bytes. */
export const DELTA_HEADROOM = 2;

export interface ExportSizingInput {
  readonly kind: 'full' | 'delta';
  /** The most the export can send: every block or cluster of the disk present, metadata included (`exportUpperBound`). */
  readonly upperBoundBytes: number;
  /** What Plan expects it to send: a full's physical utilisation, a delta's `expectedDeltaBytes`. */
  readonly expectedBytes: number;
  readonly partsInFlight: number;
}

export interface ExportSizing {
  readonly route: TransferRoute;
  /** Why, in numbers: goes into the plan and its log line. */
  readonly routeReason: string;
  readonly partSize: number;
  /** The most this upload can hold (10,000 parts): the export fails before part 10,001. */
  readonly capacityBytes: number;
  /** Estimated peak memory of the export with these parts. */
  readonly memoryBytes: number;
}

/**
 * Part size and route of one export.
 * - A full's parts are sized for the whole disk (its upper bound), as always.
 * - A delta's parts are sized for what it is expected to send (with DELTA_HEADROOM), and grown towards
 *   the whole-disk size as far as the export Lambda's memory allows, so a delta larger than expected
 *   still fits; one larger than the upload's capacity fails before part 10,001 (an upload keeps one
 *   part size throughout, so the size cannot grow midway).
 * - Fargate (by expected bytes, or because the parts would not fit the Lambda's memory) always gets
 *   parts sized for the whole disk: the task has the memory, and nothing there can outgrow its upload.
 */
export function sizeExport(routing: TransferRouting | undefined, input: ExportSizingInput): ExportSizing {
  const { kind, upperBoundBytes, expectedBytes, partsInFlight } = input;
  const wholeDiskPart = partSizeFor(upperBoundBytes);
  const sizing = (route: TransferRoute, partSize: number, routeReason: string): ExportSizing => ({
    route,
    routeReason,
    partSize,
    capacityBytes: uploadCapacity(partSize),
    memoryBytes: exportMemoryBytes(partSize, partsInFlight),
  });
  const expected = `expected ${formatSize(expectedBytes)}`;
  const threshold = routing?.fargateThresholdBytes;
  if (threshold !== undefined && expectedBytes >= threshold) {
    return sizing(
      'fargate',
      wholeDiskPart,
      `${expected}, at or above the Fargate threshold of ${formatSize(threshold)}`,
    );
  }
  const memory = routing?.lambdaMemoryBytes;
  let partSize = wholeDiskPart;
  if (kind === 'delta') {
    const needed = partSizeFor(Math.min(upperBoundBytes, expectedBytes * DELTA_HEADROOM));
    const fitting = memory !== undefined ? largestPartSizeWithin(memory, partsInFlight) : undefined;
    partSize = Math.min(wholeDiskPart, Math.max(needed, fitting ?? needed));
  }
  const memoryBytes = exportMemoryBytes(partSize, partsInFlight);
  const parts = `${formatSize(partSize)} parts × (${partsInFlight} in flight + ${EXPORT_BUFFERED_PARTS_BEYOND_IN_FLIGHT}) + overhead ≈ ${formatSize(memoryBytes)}`;
  if (memory !== undefined && memoryBytes > memory) {
    return sizing(
      'fargate',
      wholeDiskPart,
      `${expected}; ${parts}, more than the export Lambda's ${formatSize(memory)}`,
    );
  }
  const capacity =
    partSize < wholeDiskPart
      ? `; an upload of ${formatSize(uploadCapacity(partSize))} at most (the disk could send ${formatSize(upperBoundBytes)})`
      : '';
  const within = memory !== undefined ? ` within the export Lambda's ${formatSize(memory)}` : '';
  const below = threshold !== undefined ? `, below the Fargate threshold of ${formatSize(threshold)}` : '';
  return sizing('lambda', partSize, `${expected}${below}; ${parts}${within}${capacity}`);
}

/** Bytes for people, in binary units: `512 MiB`, `1.5 GiB`, `2 TiB`. */
export function formatSize(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 || Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${text} ${units[unit]}`;
}
