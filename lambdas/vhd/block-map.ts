import { ABSENT_BLOCK, DYNAMIC_HEADER_SIZE, FOOTER_SIZE, MAX_BLOCK_COUNT } from './constants.ts';
import { decodeDynamicHeader } from './dynamic-header.ts';
import { VhdBatBoundsError, VhdLimitError } from './errors.ts';
import { decodeFooter } from './footer.ts';
import { batByteLength, bitmapByteLength, blockCount } from './layout.ts';
import type { VhdDiskType } from './types.ts';

/** Reads `length` bytes at `start` of a stored VHD (an S3 ranged GET, a file read). */
export type RangeReader = (start: number, length: number) => Promise<Uint8Array>;

/** Where each present block of a stored VHD sits, read from its head without streaming the blocks. */
export interface VhdBlockMap {
  readonly virtualSize: number;
  readonly diskType: VhdDiskType;
  readonly blockSize: number;
  readonly bitmapSize: number;
  /** Present block index → file offset of its sector bitmap (the data follows it). */
  readonly blocks: ReadonlyMap<number, number>;
}

/**
 * Reads a VHD's footer copy, dynamic header and BAT with two ranged reads and validates them as the
 * stream parser does. `fileSize` bounds every BAT entry.
 */
export async function readVhdBlockMap(read: RangeReader, fileSize: number): Promise<VhdBlockMap> {
  const head = await read(0, FOOTER_SIZE + DYNAMIC_HEADER_SIZE);
  const footer = decodeFooter(head.subarray(0, FOOTER_SIZE), 0);
  const header = decodeDynamicHeader(
    head.subarray(footer.dataOffset, footer.dataOffset + DYNAMIC_HEADER_SIZE),
    footer.dataOffset,
  );
  const blocks = blockCount(footer.virtualSize, header.blockSize);
  if (blocks > MAX_BLOCK_COUNT) throw new VhdLimitError(`the disk has ${blocks} blocks`, footer.dataOffset);
  if (header.maxTableEntries < blocks) {
    throw new VhdBatBoundsError(
      `the BAT holds ${header.maxTableEntries} entries, the disk needs ${blocks}`,
      footer.dataOffset,
    );
  }
  const batBytes = batByteLength(blocks);
  if (header.tableOffset + batBytes > fileSize) {
    throw new VhdBatBoundsError(`the BAT ends past the object's ${fileSize} bytes`, header.tableOffset);
  }
  const bat = Buffer.from(await read(header.tableOffset, batBytes));
  const bitmapSize = bitmapByteLength(header.blockSize);
  const map = new Map<number, number>();
  for (let index = 0; index < blocks; index++) {
    const sector = bat.readUInt32BE(index * 4);
    if (sector === ABSENT_BLOCK) continue;
    const offset = sector * 512;
    if (
      offset < header.tableOffset + batBytes ||
      offset + bitmapSize + header.blockSize > fileSize - FOOTER_SIZE
    ) {
      throw new VhdBatBoundsError(
        `BAT entry ${index} points at byte ${offset}, outside the blocks`,
        header.tableOffset + index * 4,
      );
    }
    map.set(index, offset);
  }
  return {
    virtualSize: footer.virtualSize,
    diskType: footer.diskType,
    blockSize: header.blockSize,
    bitmapSize,
    blocks: map,
  };
}
