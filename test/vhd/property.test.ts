import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VHD_BLOCK_SIZE, VhdFormatError, vhdByteLength } from '../../lambdas/vhd/index.ts';
import { chunksOf, makeDisk, rawImage, vhdBytes } from './disks.ts';
import { imageOf, parseChunks } from './parse.ts';

/** Small random sparse disks: up to 6 blocks, any whole number of sectors, any subset present. */
const sparseDisk = fc.integer({ min: 0, max: (6 * VHD_BLOCK_SIZE) / 512 }).chain((sectors) => {
  const blocks = Math.ceil((sectors * 512) / VHD_BLOCK_SIZE);
  return fc.record({
    virtualSize: fc.constant(sectors * 512),
    present: fc.array(fc.boolean(), { minLength: blocks, maxLength: blocks }),
    seed: fc.nat(),
    diskType: fc.constantFrom('dynamic' as const, 'differencing' as const),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 1_500_000 }), { minLength: 1, maxLength: 8 }),
  });
});

describe('write → parse over random sparse disks', () => {
  it('yields exactly the present blocks with their data, at the announced length', async () => {
    await fc.assert(
      fc.asyncProperty(sparseDisk, async ({ virtualSize, present, seed, diskType, chunkSizes }) => {
        const indexes = present.flatMap((isPresent, index) => (isPresent ? [index] : []));
        const disk = makeDisk(virtualSize, indexes, seed);
        const { byteLength, bytes } = await vhdBytes(disk, diskType);
        expect(bytes.length).toBe(byteLength);
        expect(byteLength).toBe(vhdByteLength(virtualSize, indexes.length));

        const { blocks, summary } = parseChunks(chunksOf(bytes, chunkSizes));
        expect(blocks.map((block) => block.index)).toEqual(indexes);
        for (const block of blocks) {
          expect(Buffer.from(block.data).equals(disk.blocks.get(block.index)!)).toBe(true);
        }
        expect(summary).toMatchObject({
          virtualSize,
          diskType,
          presentBlocks: indexes.length,
          bytesRead: byteLength,
        });
      }),
      { numRuns: 30 },
    );
  });

  it('rejects random metadata words only with a VhdFormatError, never a crash', async () => {
    const { bytes } = await vhdBytes(makeDisk(5 * 1024 * 1024, [0, 2], 9));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3068 / 4 }), fc.integer({ min: 0, max: 0xffffffff })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 }),
        (writes, reseal, cut) => {
          const copy = Buffer.from(bytes.subarray(0, bytes.length - cut * 1_000_000));
          for (const [word, value] of writes) copy.writeUInt32BE(value, word * 4);
          if (reseal) {
            // Fix both checksums so the checks behind them get exercised too.
            for (const [start, length, field] of [
              [0, 512, 64],
              [512, 1024, 36],
            ] as const) {
              copy.writeUInt32BE(0, start + field);
              const sum = copy.subarray(start, start + length).reduce((total, byte) => total + byte, 0);
              copy.writeUInt32BE(~sum >>> 0, start + field);
            }
          }
          try {
            parseChunks(chunksOf(copy, [65_536]), { keepBlockData: false });
          } catch (error) {
            expect(error).toBeInstanceOf(VhdFormatError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('finds every single-byte corruption of the metadata and bitmaps, or parses to the same disk content', async () => {
    const disk = makeDisk(5 * 1024 * 1024, [0, 2], 7);
    const { bytes } = await vhdBytes(disk);
    const expected = rawImage(disk);
    const block2Bitmap = 2560 + 512 + 2 * 1024 * 1024;
    fc.assert(
      fc.property(
        // Footer copy, header, zero sector, BAT, block 0's bitmap; block 2's bitmap; the trailing footer.
        fc.oneof(
          fc.integer({ min: 0, max: 2560 + 512 - 1 }),
          fc.integer({ min: block2Bitmap, max: block2Bitmap + 511 }),
          fc.integer({ min: bytes.length - 512, max: bytes.length - 1 }),
        ),
        fc.integer({ min: 1, max: 255 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 4 }),
        (position, flip, chunkSizes) => {
          const copy = Buffer.from(bytes);
          copy[position]! ^= flip;
          let result: ReturnType<typeof parseChunks> | undefined;
          try {
            result = parseChunks(chunksOf(copy, chunkSizes));
          } catch (error) {
            expect(error).toBeInstanceOf(VhdFormatError); // rejected with a defect, never a crash
            return;
          }
          // Bytes no check covers (the zero sector, BAT padding): the disk must still read the same, byte
          // for byte; a corruption that parses to other content is a miss.
          expect(result.summary.virtualSize).toBe(disk.virtualSize);
          if (!imageOf(result.blocks, result.summary.virtualSize).equals(expected)) {
            throw new Error(
              `flipping byte ${position} with 0x${flip.toString(16)} changed the disk unnoticed`,
            );
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('the content check catches a bitmap that lost bits when partial bitmaps are accepted', async () => {
    const disk = makeDisk(5 * 1024 * 1024, [0, 2], 7);
    const { bytes } = await vhdBytes(disk);
    bytes[2560 + 100]! ^= 0x10;
    const { blocks, summary } = parseChunks([bytes], { requireFullBitmap: false });
    expect(blocks.map((block) => block.index)).toEqual([0, 2]); // the old index-only check saw nothing
    expect(imageOf(blocks, summary.virtualSize).equals(rawImage(disk))).toBe(false);
  });
});
