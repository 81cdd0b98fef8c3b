const MiB = 1024 * 1024;

/** S3's limits on one multipart upload. */
export const S3_MAX_PARTS = 10_000;
export const S3_MIN_PART_SIZE = 5 * MiB;
export const S3_MAX_PART_SIZE = 5 * 1024 * MiB;

/** 16 MiB parts measured faster than 8 MiB against a loopback S3 (DESIGN.md §3). */
const PREFERRED_MIN_PART_SIZE = 16 * MiB;
/** Leave 10 % of S3's part budget as headroom for the export's framing and our estimate. */
const PLANNED_PARTS = 9_000;

/**
 * The export announces no length, so the part size comes from an upper bound of its size: every block
 * present. `max(16 MiB, ceil(bound / 9000))` rounded up to a MiB.
 */
export function partSizeFor(exportUpperBoundBytes: number): number {
  const needed = Math.ceil(exportUpperBoundBytes / PLANNED_PARTS);
  const size = Math.max(PREFERRED_MIN_PART_SIZE, Math.ceil(needed / MiB) * MiB);
  if (size > S3_MAX_PART_SIZE) {
    throw new RangeError(
      `an export of up to ${exportUpperBoundBytes} bytes needs parts of ${size} bytes, above S3's 5 GiB part limit`,
    );
  }
  return size;
}
