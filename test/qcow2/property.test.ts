import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_SIZE,
  Qcow2DataOrderError,
  Qcow2FormatError,
  Qcow2HttpErrorInBody,
  Qcow2TrailingDataError,
  Qcow2TruncatedError,
  qcow2ByteLength,
} from '../../lambdas/qcow2/index.ts';
import type { Qcow2StreamParserOptions } from '../../lambdas/qcow2/index.ts';
import { chunksOf } from '../vhd/disks.ts';
import { imageOf, makeDisk, parseChunks, parseError, qcow2Bytes, rawImage } from './disks.ts';

const cs = CLUSTER_SIZE;
const MiB = 1024 * 1024;
const chunkSizes = fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 6 });

/** Random sparse disks up to three L2 tables: any whole number of sectors, up to 12 present clusters. */
const sparseDisk = fc.integer({ min: 0, max: (3 * 8192 * cs) / 512 }).chain((sectors) => {
  const clusters = Math.ceil((sectors * 512) / cs);
  return fc.record({
    virtualSize: fc.constant(sectors * 512),
    present: clusters === 0 ? fc.constant([]) : fc.uniqueArray(fc.nat(clusters - 1), { maxLength: 12 }),
    seed: fc.nat(),
    chunkSizes,
  });
});

// The sample of the corruption tests: two L2 tables, clusters 0, 2, 8200 and 8320 present.
const SIZE = 520 * MiB + 1536;
const DATA = 6 * cs;
const END = 10 * cs;
const disk = makeDisk(SIZE, [0, 2, 8200, 8320], 7);
const expected = rawImage(disk);
let sample: Buffer;
beforeAll(async () => {
  sample = await qcow2Bytes(disk);
});

/** Metadata regions: [first byte, last byte] of header fields, extensions, padding and each table. */
const REGIONS: readonly (readonly [number, number])[] = [
  [0, 111],
  [112, 511],
  [512, cs - 1],
  [cs, cs + 63],
  [cs, 2 * cs - 1],
  [2 * cs, 2 * cs + 63],
  [2 * cs, 3 * cs - 1],
  [3 * cs, 3 * cs + 31],
  [3 * cs, 4 * cs - 1],
  [4 * cs, 4 * cs + 63],
  [4 * cs, 5 * cs - 1],
  [5 * cs + 64 * 8, 5 * cs + 130 * 8],
  [5 * cs, 6 * cs - 1],
];
const metadataByte = fc.oneof(...REGIONS.map(([min, max]) => fc.integer({ min, max })));

/** Flips one byte; the stream must be refused with a Qcow2FormatError or read as the same disk. */
function flipIsCaught(position: number, flip: number, sizes: number[], options?: Qcow2StreamParserOptions) {
  const copy = Buffer.from(sample);
  copy[position]! ^= flip;
  let result: ReturnType<typeof parseChunks>;
  try {
    result = parseChunks(chunksOf(copy, sizes), options);
  } catch (error) {
    expect(error).toBeInstanceOf(Qcow2FormatError);
    return 'refused';
  }
  const same = result.summary.virtualSize === SIZE && imageOf(result.clusters, SIZE).equals(expected);
  if (!same) return 'changed';
  return 'same';
}

describe('write → parse over random sparse disks', () => {
  it('yields exactly the present clusters with their data, at the announced length', async () => {
    await fc.assert(
      fc.asyncProperty(sparseDisk, async ({ virtualSize, present, seed, chunkSizes: sizes }) => {
        const indexes = [...present].sort((a, b) => a - b);
        const source = makeDisk(virtualSize, indexes, seed);
        const bytes = await qcow2Bytes(source);
        expect(bytes.length).toBe(qcow2ByteLength(virtualSize, indexes));
        const { clusters, summary } = parseChunks(chunksOf(bytes, sizes), { virtualSize });
        expect(clusters.map((cluster) => cluster.index)).toEqual(indexes);
        for (const cluster of clusters) {
          expect(Buffer.from(cluster.data).equals(source.clusters.get(cluster.index)!)).toBe(true);
        }
        expect(summary).toMatchObject({
          virtualSize,
          presentClusters: indexes.length,
          bytesRead: bytes.length,
        });
      }),
      { numRuns: 40 },
    );
  });
});

describe('corruption of the host layout', () => {
  it('finds every single-byte corruption of the metadata (the size checked against the VDI)', () => {
    fc.assert(
      fc.property(metadataByte, fc.integer({ min: 1, max: 255 }), chunkSizes, (position, flip, sizes) => {
        const outcome = flipIsCaught(position, flip, sizes, { virtualSize: SIZE });
        if (outcome !== 'refused')
          throw new Error(`flipping byte ${position} by 0x${flip.toString(16)}: ${outcome}`);
      }),
      { numRuns: 600 },
    );
  });

  it('catches each bit of every header, extension and table entry byte the host sets', () => {
    const positions = [
      ...Array.from({ length: 512 }, (_, i) => i),
      ...[cs, 2 * cs, 3 * cs, 4 * cs, 5 * cs + 64 * 8].flatMap((start) =>
        Array.from({ length: 24 }, (_, i) => start + i),
      ),
      ...[0, 18, 20].map((i) => 2 * cs + i),
      5 * cs + 128 * 8 + 6,
    ];
    const missed: string[] = [];
    for (const position of positions) {
      for (let bit = 0; bit < 8; bit++) {
        const outcome = flipIsCaught(position, 1 << bit, [cs], { virtualSize: SIZE });
        if (outcome !== 'refused') missed.push(`${position}:${bit} ${outcome}`);
      }
    }
    expect(missed).toEqual([]);
  });

  it('without the expected size, only the size field can change what the disk reads as', () => {
    fc.assert(
      fc.property(metadataByte, fc.integer({ min: 1, max: 255 }), chunkSizes, (position, flip, sizes) => {
        const outcome = flipIsCaught(position, flip, sizes);
        if (outcome === 'changed' && !(position >= 24 && position < 32)) {
          throw new Error(`flipping byte ${position} by 0x${flip.toString(16)} changed the disk unnoticed`);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('rejects random metadata words only with a Qcow2FormatError, never a crash', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: DATA / 4 - 1 }), fc.integer({ min: 0, max: 0xffffffff })),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        fc.integer({ min: 0, max: 3 }),
        (writes, cut) => {
          const copy = Buffer.from(sample.subarray(0, sample.length - cut * 100_000));
          for (const [word, value] of writes)
            if (word * 4 + 4 <= copy.length) copy.writeUInt32BE(value, word * 4);
          try {
            parseChunks(chunksOf(copy, [65_536]), { keepClusterData: false });
          } catch (error) {
            expect(error).toBeInstanceOf(Qcow2FormatError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('catches any gap or reorder of the data pointers', () => {
    const entries = [4 * cs, 4 * cs + 16, 5 * cs + 8 * 8, 5 * cs + 128 * 8];
    const pointers = entries.map((at) => sample.readBigUInt64BE(at));
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 })
            .filter((order) => order.some((from, to) => from !== to))
            .map((order) => order.map((from) => pointers[from]!)),
          fc
            .tuple(fc.nat(3), fc.integer({ min: 1, max: 40 }))
            .map(([i, clusters]) => pointers.map((p, j) => (j === i ? p + BigInt(clusters * cs) : p))),
        ),
        chunkSizes,
        (changed, sizes) => {
          const copy = Buffer.from(sample);
          changed.forEach((pointer, i) => copy.writeBigUInt64BE(pointer, entries[i]!));
          expect(parseError(chunksOf(copy, sizes))).toBeInstanceOf(Qcow2DataOrderError);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('catches truncation anywhere, naming where the bytes ran out', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: END - 1 }), chunkSizes, (cut, sizes) => {
        const error = parseError(chunksOf(sample.subarray(0, cut), sizes));
        expect(error).toBeInstanceOf(Qcow2TruncatedError);
        expect((error as Qcow2TruncatedError).offset).toBe(cut);
      }),
      { numRuns: 300 },
    );
  });

  it('catches appended bytes, and tells an appended HTTP error page from them', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 3000 }).filter((bytes) => bytes[0] !== 0x48), // not "H"
        fc.integer({ min: 400, max: 599 }),
        chunkSizes,
        (extra, status, sizes) => {
          const appended = parseError(chunksOf(Buffer.concat([sample, extra]), sizes));
          expect(appended).toBeInstanceOf(Qcow2TrailingDataError);
          expect((appended as Qcow2TrailingDataError).offset).toBe(END);
          const page = Buffer.from(`HTTP/1.1 ${status} Error\r\nConnection: close\r\n\r\n<html></html>`);
          const error = parseError(chunksOf(Buffer.concat([sample, page]), sizes));
          expect(error).toBeInstanceOf(Qcow2HttpErrorInBody);
          expect(error).toMatchObject({ offset: END, statusCode: status });
        },
      ),
      { numRuns: 50 },
    );
  });
});
