import { VHD_BLOCK_SIZE, writeVhd } from '../../lambdas/vhd/index.ts';
import type { SparseBlockSource, VhdDiskType } from '../../lambdas/vhd/index.ts';

/** A small in-memory sparse disk with deterministic block contents. */
export interface TestDisk extends SparseBlockSource {
  readonly blocks: ReadonlyMap<number, Uint8Array>;
}

/** Fills each present block with a cheap pseudo-random pattern; bytes past the virtual size are zero. */
export function makeDisk(virtualSize: number, blockIndexes: readonly number[], seed = 1): TestDisk {
  const blocks = new Map<number, Uint8Array>();
  for (const index of blockIndexes) {
    const data = new Uint8Array(VHD_BLOCK_SIZE);
    const words = new Uint32Array(data.buffer);
    let state = (seed * 2654435761 + index * 40503 + 1) >>> 0;
    for (let i = 0; i < words.length; i++) {
      state = (state ^ (state << 13)) >>> 0;
      state = (state ^ (state >>> 17)) >>> 0;
      state = (state ^ (state << 5)) >>> 0;
      words[i] = state;
    }
    const used = virtualSize - index * VHD_BLOCK_SIZE;
    if (used < VHD_BLOCK_SIZE) data.fill(0, used);
    blocks.set(index, data);
  }
  return { virtualSize, blockIndexes, blocks, readBlock: (index) => blocks.get(index)! };
}

export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

export async function vhdBytes(
  disk: SparseBlockSource,
  diskType: VhdDiskType = 'dynamic',
): Promise<{ readonly byteLength: number; readonly bytes: Buffer }> {
  const { byteLength, stream } = writeVhd(disk, {
    diskType,
    uniqueId: Buffer.alloc(16, 0xab),
    timestamp: new Date('2024-05-01T00:00:00Z'),
  });
  return { byteLength, bytes: await collect(stream) };
}

/** Splits bytes into consecutive chunks whose sizes cycle through `sizes` (views, no copies). */
export function* chunksOf(bytes: Uint8Array, sizes: readonly number[]): Generator<Uint8Array> {
  let position = 0;
  for (let i = 0; position < bytes.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length] ?? bytes.length);
    yield bytes.subarray(position, position + size);
    position += size;
  }
}

/** The disk's bytes as a raw image of exactly virtualSize bytes. */
export function rawImage(disk: TestDisk): Buffer {
  const raw = Buffer.alloc(disk.virtualSize);
  for (const [index, data] of disk.blocks) {
    const start = index * VHD_BLOCK_SIZE;
    raw.set(data.subarray(0, Math.min(VHD_BLOCK_SIZE, disk.virtualSize - start)), start);
  }
  return raw;
}
