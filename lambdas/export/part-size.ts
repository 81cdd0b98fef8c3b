import type { ImageFormat } from '../catalog/manifest.ts';
import { qcow2FullyAllocatedByteLength } from '../qcow2/index.ts';
import { vhdByteLength, VHD_BLOCK_SIZE } from '../vhd/index.ts';

const MiB = 1024 * 1024;

/** S3's limits on one multipart upload. */
export const S3_MAX_PARTS = 10_000;
export const S3_MIN_PART_SIZE = 5 * MiB;
export const S3_MAX_PART_SIZE = 5 * 1024 * MiB;

/** 16 MiB parts measured faster than 8 MiB against a loopback S3: docs/design.md § S3 multipart uploads. */
export const PREFERRED_MIN_PART_SIZE = 16 * MiB;
/** Leave 10 % of S3's part budget as headroom for the export's framing and our estimate. */
const PLANNED_PARTS = 9_000;

/**
 * Peak memory of one export, as `EXPORT_FIXED_OVERHEAD_BYTES + (partsInFlight + 4) × partSize`. Measured
 * with lib-storage (Node 24, TRANSFER_PROCESS_ENV, 2–8 GiB exports into Swift, peak RSS): 110 MiB after
 * loading Node, the SDK, Powertools and our code, then with 4 parts in flight 235–252 MiB at 16 MiB parts,
 * 364 at 32, 623 at 64, 954 at 128 and 1,586 MiB at 232 MiB parts (a 2 TiB disk's); 32 MiB parts with
 * 2 / 8 in flight: 301 / 488 MiB. uploadStream holds at most `partsInFlight + 1` part buffers and no
 * copies, so the model (the high end of those measurements, plus a fixed part with room for the Lambda
 * runtime's own process) is above what it needs: it errs towards Fargate.
 */
export const EXPORT_BUFFERED_PARTS_BEYOND_IN_FLIGHT = 4;
export const EXPORT_FIXED_OVERHEAD_BYTES = 192 * MiB;

/**
 * The export announces no length, so the part size comes from an upper bound of its size:
 * `max(16 MiB, ceil(bound / 9000))` rounded up to a MiB.
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

/** The largest VHD export a disk of this virtual size can give: every block present. */
export function vhdExportUpperBound(virtualSize: number): number {
  return vhdByteLength(virtualSize, Math.ceil(virtualSize / VHD_BLOCK_SIZE));
}

/** The largest qcow2 export a disk of this virtual size can give: every cluster present, metadata included. */
export function qcow2ExportUpperBound(virtualSize: number): number {
  return qcow2FullyAllocatedByteLength(virtualSize);
}

/** The largest export of a disk of this virtual size in this format: what part sizes and routing go by. */
export function exportUpperBound(format: ImageFormat, virtualSize: number): number {
  return format === 'qcow2' ? qcow2ExportUpperBound(virtualSize) : vhdExportUpperBound(virtualSize);
}

/** The most one multipart upload with this part size can hold: the export fails before part 10,001. */
export function uploadCapacity(partSize: number): number {
  return partSize * S3_MAX_PARTS;
}

/** Peak memory an export with these parts needs (see EXPORT_BUFFERED_PARTS_BEYOND_IN_FLIGHT). */
export function exportMemoryBytes(partSize: number, partsInFlight: number): number {
  return EXPORT_FIXED_OVERHEAD_BYTES + (partsInFlight + EXPORT_BUFFERED_PARTS_BEYOND_IN_FLIGHT) * partSize;
}

/**
 * The largest part size (whole MiB, at least 16 MiB) whose export fits `memoryBytes`; undefined when
 * not even 16 MiB parts fit.
 */
export function largestPartSizeWithin(memoryBytes: number, partsInFlight: number): number | undefined {
  const perPart =
    (memoryBytes - EXPORT_FIXED_OVERHEAD_BYTES) / (partsInFlight + EXPORT_BUFFERED_PARTS_BEYOND_IN_FLIGHT);
  const size = Math.min(S3_MAX_PART_SIZE, Math.floor(perPart / MiB) * MiB);
  return size >= PREFERRED_MIN_PART_SIZE ? size : undefined;
}
