import { describe, expect, it } from 'vitest';
import {
  VHD_BLOCK_SIZE,
  VhdStreamParser,
  bitmapMarksEverySector,
  parseVhd,
  vhdByteLength,
  writeVhd,
} from '../../lambdas/vhd/index.ts';
import type { VhdBlock } from '../../lambdas/vhd/index.ts';
import { chunksOf, collect, makeDisk, vhdBytes } from './disks.ts';
import type { TestDisk } from './disks.ts';
import { parseChunks } from './parse.ts';

const MiB = 1024 * 1024;

function expectBlocksOf(disk: TestDisk, blocks: readonly VhdBlock[]): void {
  expect(blocks.map((block) => block.index)).toEqual([...disk.blockIndexes]);
  for (const block of blocks) {
    expect(block.bitmap).toEqual(new Uint8Array(512).fill(0xff));
    expect(bitmapMarksEverySector(block.bitmap, VHD_BLOCK_SIZE)).toBe(true);
    expect(Buffer.from(block.data).equals(disk.blocks.get(block.index)!)).toBe(true);
  }
}

describe('writeVhd → VhdStreamParser', () => {
  const cases: [string, number, number[]][] = [
    ['an empty disk', 8 * MiB, []],
    ['one block', 8 * MiB, [1]],
    ['a full disk', 6 * MiB, [0, 1, 2]],
    ['a disk whose last block is partial', 5 * MiB + 1536, [0, 2]],
    ['a disk smaller than one block', 64 * 1024, [0]],
    ['a sparse disk with distant blocks', 40 * MiB, [0, 19]],
  ];

  for (const diskType of ['dynamic', 'differencing'] as const) {
    for (const [name, size, indexes] of cases) {
      it(`round-trips ${name} (${diskType})`, async () => {
        const disk = makeDisk(size, indexes);
        const { byteLength, bytes } = await vhdBytes(disk, diskType);
        expect(bytes.length).toBe(byteLength);
        expect(byteLength).toBe(vhdByteLength(size, indexes.length));
        const { blocks, summary } = parseChunks(chunksOf(bytes, [1000, 1, 65536, 511]));
        expectBlocksOf(disk, blocks);
        expect(summary).toEqual({
          virtualSize: size,
          diskType,
          blockSize: VHD_BLOCK_SIZE,
          presentBlocks: indexes.length,
          bytesRead: byteLength,
          uniqueId: 'ab'.repeat(16),
        });
      });
    }
  }

  it('round-trips a disk of size zero', async () => {
    const { byteLength, bytes } = await vhdBytes(makeDisk(0, []));
    expect(byteLength).toBe(2560);
    expect(parseChunks([bytes]).summary.presentBlocks).toBe(0);
  });

  it('emits the host layout byte for byte', async () => {
    const size = 5 * MiB + 1536; // N = 3 blocks, B = 512
    const { bytes } = await vhdBytes(makeDisk(size, [0, 2]));
    expect(bytes.length).toBe(2560 + 512 + 2 * 2_097_664);
    expect(bytes.toString('latin1', 0, 8)).toBe('conectix');
    expect(bytes.readUInt32BE(8)).toBe(2); // features
    expect(bytes.readUInt32BE(12)).toBe(0x00010000);
    expect(bytes.readBigUInt64BE(16)).toBe(512n);
    expect(bytes.readUInt32BE(24)).toBe(Math.floor((Date.UTC(2024, 4, 1) - Date.UTC(2000, 0, 1)) / 1000));
    expect(bytes.readBigUInt64BE(40)).toBe(BigInt(size));
    expect(bytes.readBigUInt64BE(48)).toBe(BigInt(size));
    expect(bytes.readUInt32BE(60)).toBe(3);
    expect(bytes.subarray(68, 84)).toEqual(Buffer.alloc(16, 0xab));
    expect(bytes.toString('latin1', 512, 520)).toBe('cxsparse');
    expect(bytes.readBigUInt64BE(520)).toBe(0xffffffffffffffffn);
    expect(bytes.readBigUInt64BE(528)).toBe(2048n);
    expect(bytes.readUInt32BE(536)).toBe(0x00010000);
    expect(bytes.readUInt32BE(540)).toBe(3);
    expect(bytes.readUInt32BE(544)).toBe(VHD_BLOCK_SIZE);
    expect(bytes.subarray(1536, 2048).every((byte) => byte === 0)).toBe(true);
    expect([0, 1, 2].map((i) => bytes.readUInt32BE(2048 + 4 * i))).toEqual([5, 0xffffffff, 5 + 4097]);
    expect(bytes.subarray(2060, 2560).every((byte) => byte === 0xff)).toBe(true);
    expect(bytes.subarray(-512).equals(bytes.subarray(0, 512))).toBe(true);
  });

  it('writes the VHD specification checksums and CHS geometry', async () => {
    const { bytes } = await vhdBytes(makeDisk(4 * 1024 * MiB, []));
    // 4 GiB = 8,388,608 sectors: too many for 17 or 31 sectors per track, so 16 heads × 63 sectors.
    expect(bytes.readUInt16BE(56)).toBe(8322);
    expect(bytes.readUInt8(58)).toBe(16);
    expect(bytes.readUInt8(59)).toBe(63);
    const footer = Buffer.from(bytes.subarray(0, 512));
    const stored = footer.readUInt32BE(64);
    footer.writeUInt32BE(0, 64);
    expect(stored).toBe(~footer.reduce((sum, byte) => sum + byte, 0) >>> 0);
  });

  it('stamps a random unique id and the current time by default', async () => {
    const disk = makeDisk(2 * MiB, []);
    const first = await collect(writeVhd(disk, { diskType: 'dynamic' }).stream);
    const second = await collect(writeVhd(disk, { diskType: 'dynamic' }).stream);
    expect(first.subarray(68, 84).equals(second.subarray(68, 84))).toBe(false);
    const seconds = first.readUInt32BE(24) + Date.UTC(2000, 0, 1) / 1000;
    expect(Math.abs(seconds - Date.now() / 1000)).toBeLessThan(60);
  });

  it('reads blocks lazily, in order, and can be iterated again', async () => {
    const disk = makeDisk(6 * MiB, [0, 2]);
    const reads: number[] = [];
    const { stream } = writeVhd(
      { ...disk, readBlock: async (index) => (reads.push(index), disk.blocks.get(index)!) },
      { diskType: 'dynamic' },
    );
    expect(reads).toEqual([]);
    const first = await collect(stream);
    const second = await collect(stream);
    expect(reads).toEqual([0, 2, 0, 2]);
    expect(first.equals(second)).toBe(true);
  });

  it('refuses sources it cannot serialise', () => {
    const disk = makeDisk(6 * MiB, []);
    const write = (source: Partial<TestDisk>) => () =>
      writeVhd({ ...disk, ...source } as TestDisk, { diskType: 'dynamic' });
    expect(write({ virtualSize: 1000 })).toThrow(RangeError);
    expect(write({ blockIndexes: [1, 0] })).toThrow(RangeError);
    expect(write({ blockIndexes: [3] })).toThrow(RangeError);
    expect(write({ blockIndexes: [0, 0] })).toThrow(RangeError);
    expect(() => writeVhd(disk, { diskType: 'dynamic', uniqueId: new Uint8Array(3) })).toThrow(RangeError);
    expect(() => writeVhd(disk, { diskType: 'dynamic', timestamp: new Date('1999-01-01') })).toThrow(
      RangeError,
    );
  });

  it('fails the stream when a block has the wrong length', async () => {
    const disk = makeDisk(4 * MiB, [0]);
    const { stream } = writeVhd({ ...disk, readBlock: () => new Uint8Array(10) }, { diskType: 'dynamic' });
    await expect(collect(stream)).rejects.toThrow(/expected 2097152/);
  });

  it('computes the byte length from the size and the block count', () => {
    expect(vhdByteLength(0, 0)).toBe(2560);
    expect(vhdByteLength(2040 * 1024 * MiB, 0)).toBe(2560 + 4 * 1_044_480);
    expect(vhdByteLength(10 * MiB, 5)).toBe(2560 + 512 + 5 * 2_097_664);
    expect(() => vhdByteLength(10 * MiB, 6)).toThrow(RangeError);
    expect(() => vhdByteLength(513, 0)).toThrow(RangeError);
  });
});

describe('VhdStreamParser', () => {
  it('exposes the header once the BAT is read, and counts bytes', async () => {
    const disk = makeDisk(5 * MiB, [0, 2]);
    const { bytes } = await vhdBytes(disk, 'differencing');
    const parser = new VhdStreamParser();
    expect(parser.write(bytes.subarray(0, 2559))).toEqual([]);
    expect(parser.header).toBeUndefined();
    expect(parser.write(bytes.subarray(2559, 2560))).toEqual([]);
    expect(parser.header).toEqual({
      virtualSize: 5 * MiB,
      diskType: 'differencing',
      blockSize: VHD_BLOCK_SIZE,
      maxTableEntries: 3,
      presentBlocks: 2,
    });
    expect(parser.bytesRead).toBe(2560);
    const blocks = parser.write(bytes.subarray(2560));
    expect(blocks.map((block) => [block.index, block.fileOffset])).toEqual([
      [0, 2560],
      [2, 2560 + 2_097_664],
    ]);
    expect(parser.end().bytesRead).toBe(bytes.length);
  });

  it('keeps no data when asked to validate only', async () => {
    const { bytes } = await vhdBytes(makeDisk(4 * MiB, [1]));
    const { blocks } = parseChunks([bytes], { keepBlockData: false });
    expect(blocks).toHaveLength(1);
    expect(blocks[0]!.data.length).toBe(0);
    expect(blocks[0]!.bitmap.length).toBe(512);
  });

  it('parses blocks laid out in a different order than their indexes', async () => {
    const disk = makeDisk(6 * MiB, [0, 2]);
    const { bytes } = await vhdBytes(disk);
    // Swap the two BAT entries: index 2's data now comes first in the file.
    const first = bytes.readUInt32BE(2048);
    bytes.writeUInt32BE(bytes.readUInt32BE(2056), 2048);
    bytes.writeUInt32BE(first, 2056);
    const { blocks } = parseChunks(chunksOf(bytes, [4096]));
    expect(blocks.map((block) => block.index)).toEqual([2, 0]);
    expect(Buffer.from(blocks[0]!.data).equals(disk.blocks.get(0)!)).toBe(true);
    expect(Buffer.from(blocks[1]!.data).equals(disk.blocks.get(2)!)).toBe(true);
  });

  it('yields partial bitmaps as they are when told to accept them', async () => {
    const { bytes } = await vhdBytes(makeDisk(4 * MiB, [0]));
    bytes[2560 + 3] = 0x0f;
    const { blocks } = parseChunks([bytes], { requireFullBitmap: false });
    expect(blocks[0]!.bitmap[3]).toBe(0x0f);
    expect(bitmapMarksEverySector(blocks[0]!.bitmap, VHD_BLOCK_SIZE)).toBe(false);
  });

  it('parseVhd yields the blocks and returns the summary', async () => {
    const disk = makeDisk(5 * MiB, [1, 2]);
    const { bytes } = await vhdBytes(disk);
    async function* source() {
      yield* chunksOf(bytes, [777_777]);
    }
    const generator = parseVhd(source());
    const indexes: number[] = [];
    let step = await generator.next();
    while (!step.done) {
      indexes.push(step.value.index);
      expect(Buffer.from(step.value.data).equals(disk.blocks.get(step.value.index)!)).toBe(true);
      step = await generator.next();
    }
    expect(indexes).toEqual([1, 2]);
    expect(step.value.bytesRead).toBe(bytes.length);
  });

  it('parseVhd rejects text chunks', async () => {
    async function* text() {
      yield 'conectix' as unknown as Uint8Array;
    }
    await expect(parseVhd(text()).next()).rejects.toThrow(TypeError);
  });
});

describe('bitmapMarksEverySector', () => {
  it('looks only at the bits of the block’s sectors, most significant first', () => {
    const bitmap = new Uint8Array(512).fill(0xff);
    expect(bitmapMarksEverySector(bitmap, VHD_BLOCK_SIZE)).toBe(true);
    bitmap[511] = 0xfe;
    expect(bitmapMarksEverySector(bitmap, VHD_BLOCK_SIZE)).toBe(false);
    const small = new Uint8Array(512);
    small[0] = 0xe0; // a 2048-byte block has 4 sectors: the top 4 bits
    expect(bitmapMarksEverySector(small, 2048)).toBe(false);
    small[0] = 0xf0;
    expect(bitmapMarksEverySector(small, 2048)).toBe(true);
    expect(bitmapMarksEverySector(small, 4096)).toBe(false);
  });
});
