import { DYNAMIC_HEADER_SIZE, FOOTER_SIZE, SECTOR_SIZE, VHD_BLOCK_SIZE } from './constants.ts';

export function blockCount(virtualSize: number, blockSize = VHD_BLOCK_SIZE): number {
  return Math.ceil(virtualSize / blockSize);
}

/** BAT bytes for `entries` entries: 4 bytes each, extended to a whole sector. */
export function batByteLength(entries: number): number {
  return Math.ceil((entries * 4) / SECTOR_SIZE) * SECTOR_SIZE;
}

/** Sector bitmap bytes of one block: one bit per sector, extended to a whole sector. */
export function bitmapByteLength(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR_SIZE / 8 / SECTOR_SIZE) * SECTOR_SIZE;
}

/**
 * Total bytes of the VHD the writer will emit: 2560 + B + 2,097,664 × K (docs/design.md § VHD as the host
 * writes it).
 */
export function vhdByteLength(virtualSize: number, presentBlocks: number): number {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0 || virtualSize % SECTOR_SIZE !== 0) {
    throw new RangeError(`virtual size must be a non-negative multiple of ${SECTOR_SIZE}: ${virtualSize}`);
  }
  const blocks = blockCount(virtualSize);
  if (!Number.isSafeInteger(presentBlocks) || presentBlocks < 0 || presentBlocks > blocks) {
    throw new RangeError(`present blocks must be between 0 and ${blocks}: ${presentBlocks}`);
  }
  const prefix = FOOTER_SIZE + DYNAMIC_HEADER_SIZE + SECTOR_SIZE;
  return (
    prefix +
    batByteLength(blocks) +
    presentBlocks * (bitmapByteLength(VHD_BLOCK_SIZE) + VHD_BLOCK_SIZE) +
    FOOTER_SIZE
  );
}
