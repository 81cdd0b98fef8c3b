import { randomBytes } from 'node:crypto';
import {
  ABSENT_BLOCK,
  FOOTER_SIZE,
  HOST_TABLE_OFFSET,
  MAX_VIRTUAL_SIZE,
  SECTOR_SIZE,
  VHD_BLOCK_SIZE,
} from './constants.ts';
import { encodeDynamicHeader } from './dynamic-header.ts';
import { encodeFooter } from './footer.ts';
import { batByteLength, bitmapByteLength, blockCount, vhdByteLength } from './layout.ts';
import type { SparseBlockSource, VhdWriteOptions } from './types.ts';

/**
 * Serialises a sparse disk exactly in the host's export layout: footer copy, dynamic header, a zero sector,
 * BAT at 2048, then bitmap (all ones) + data per present block in ascending index, then the footer again.
 * `byteLength` is known before the first byte. Each iteration of `stream` reads the blocks afresh.
 */
export function writeVhd(
  source: SparseBlockSource,
  options: VhdWriteOptions,
): { readonly byteLength: number; readonly stream: AsyncIterable<Uint8Array> } {
  const { blockIndexes } = source;
  const { byteLength, prefix, footer, bitmapSize } = vhdHead(source.virtualSize, blockIndexes, options);

  async function* emit(): AsyncGenerator<Uint8Array, void, void> {
    yield prefix;
    for (const index of blockIndexes) {
      const data = await source.readBlock(index);
      if (data.length !== VHD_BLOCK_SIZE) {
        throw new RangeError(`block ${index} has ${data.length} bytes, expected ${VHD_BLOCK_SIZE}`);
      }
      yield Buffer.alloc(bitmapSize, 0xff);
      yield data;
    }
    yield Buffer.from(footer);
  }

  return { byteLength, stream: { [Symbol.asyncIterator]: emit } };
}

/**
 * The bytes around the blocks of a dynamic or differencing VHD in the host's layout: `prefix` (footer copy,
 * dynamic header, zero sector, BAT) comes before the blocks, `footer` after them; the k-th block of
 * `fileOrder` (by default `blockIndexes`, ascending) starts at `prefix.length + k × (bitmapSize +
 * VHD_BLOCK_SIZE)`. The writer streams blocks in index order; a synthetic full copies them in the order
 * they lie in its layers, which the BAT allows (docs/design.md § Forever incremental).
 */
export function vhdHead(
  virtualSize: number,
  blockIndexes: readonly number[],
  options: VhdWriteOptions,
  fileOrder: readonly number[] = blockIndexes,
): { byteLength: number; prefix: Buffer; footer: Uint8Array; bitmapSize: number } {
  if (virtualSize > MAX_VIRTUAL_SIZE) {
    throw new RangeError(`virtual size ${virtualSize} exceeds ${MAX_VIRTUAL_SIZE}`);
  }
  const byteLength = vhdByteLength(virtualSize, blockIndexes.length);
  const blocks = blockCount(virtualSize);
  checkIndexes(blockIndexes, blocks);

  const footer = encodeFooter({
    virtualSize,
    diskType: options.diskType,
    uniqueId: options.uniqueId ?? randomBytes(16),
    timestamp: options.timestamp ?? new Date(),
    dataOffset: FOOTER_SIZE,
  });
  const bitmapSize = bitmapByteLength(VHD_BLOCK_SIZE);
  const batSize = batByteLength(blocks);
  const prefix = Buffer.alloc(HOST_TABLE_OFFSET + batSize);
  prefix.set(footer, 0);
  prefix.set(
    encodeDynamicHeader({
      tableOffset: HOST_TABLE_OFFSET,
      maxTableEntries: blocks,
      blockSize: VHD_BLOCK_SIZE,
    }),
    FOOTER_SIZE,
  );
  // Padding entries past the last block are absent too, so the whole BAT starts as all ones.
  prefix.fill(0xff, HOST_TABLE_OFFSET);
  if (fileOrder !== blockIndexes && [...fileOrder].sort((a, b) => a - b).join() !== blockIndexes.join()) {
    throw new RangeError('the file order must hold each present block once');
  }
  let sector = (HOST_TABLE_OFFSET + batSize) / SECTOR_SIZE;
  for (const index of fileOrder) {
    // BAT entries are 32-bit sector numbers; all ones means absent.
    if (sector >= ABSENT_BLOCK) throw new RangeError('too many blocks for 32-bit BAT sector offsets');
    prefix.writeUInt32BE(sector, HOST_TABLE_OFFSET + index * 4);
    sector += (bitmapSize + VHD_BLOCK_SIZE) / SECTOR_SIZE;
  }
  return { byteLength, prefix, footer, bitmapSize };
}

function checkIndexes(indexes: readonly number[], blocks: number): void {
  let previous = -1;
  for (const index of indexes) {
    if (!Number.isInteger(index) || index <= previous || index >= blocks) {
      throw new RangeError(
        `block indexes must be ascending integers below ${blocks}: ${index} after ${previous}`,
      );
    }
    previous = index;
  }
}
