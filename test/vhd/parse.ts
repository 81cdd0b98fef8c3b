import { VHD_BLOCK_SIZE, VhdStreamParser } from '../../lambdas/vhd/index.ts';
import type { VhdBlock, VhdStreamParserOptions, VhdSummary } from '../../lambdas/vhd/index.ts';

export interface ParseResult {
  readonly blocks: VhdBlock[];
  readonly summary: VhdSummary;
}

/** Runs the push parser over the given chunks and ends it; throws what the parser throws. */
export function parseChunks(chunks: Iterable<Uint8Array>, options?: VhdStreamParserOptions): ParseResult {
  const parser = new VhdStreamParser(options);
  const blocks: VhdBlock[] = [];
  for (const chunk of chunks) blocks.push(...parser.write(chunk));
  return { blocks, summary: parser.end() };
}

/** The error the parser throws on these chunks, or undefined when they parse. */
export function parseError(chunks: Iterable<Uint8Array>): unknown {
  try {
    parseChunks(chunks, { keepBlockData: false });
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * The disk the parsed blocks describe, as raw bytes of `virtualSize`: each block's sectors whose bitmap bit is
 * set (most significant bit first) carry its data, every other sector reads as zeros.
 */
export function imageOf(blocks: readonly VhdBlock[], virtualSize: number): Buffer {
  const image = Buffer.alloc(virtualSize);
  for (const block of blocks) {
    const start = block.index * VHD_BLOCK_SIZE;
    for (let sector = 0; sector < VHD_BLOCK_SIZE / 512 && start + sector * 512 < virtualSize; sector++) {
      if (((block.bitmap[sector >> 3] ?? 0) & (0x80 >> (sector & 7))) === 0) continue;
      image.set(block.data.subarray(sector * 512, sector * 512 + 512), start + sector * 512);
    }
  }
  return image;
}
