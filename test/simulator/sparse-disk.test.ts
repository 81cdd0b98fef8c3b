import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE, SparseDisk } from '../../world/xapi-simulator/sparse-disk.ts';

describe('SparseDisk', () => {
  it('changedSince a snapshot is exactly the blocks written after it (copy-on-write identity)', () => {
    const blocks = 4;
    const write = fc.record({
      offset: fc.integer({ min: 0, max: blocks * BLOCK_SIZE - 1 }),
      length: fc.integer({ min: 1, max: 3 * BLOCK_SIZE }),
      byte: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(fc.array(write, { maxLength: 6 }), fc.array(write, { maxLength: 6 }), (before, after) => {
        const disk = new SparseDisk(blocks * BLOCK_SIZE);
        const apply = (w: { offset: number; length: number; byte: number }): number[] => {
          const length = Math.min(w.length, disk.virtualSize - w.offset);
          disk.write(w.offset, new Uint8Array(length).fill(w.byte));
          const first = Math.floor(w.offset / BLOCK_SIZE);
          const last = Math.floor((w.offset + length - 1) / BLOCK_SIZE);
          return Array.from({ length: last - first + 1 }, (_, i) => first + i);
        };
        before.forEach(apply);
        const snapshot = disk.clone();
        const snapshotSha = snapshot.sha256();
        const touched = new Set(after.flatMap(apply));
        expect(disk.changedSince(snapshot)).toEqual([...touched].sort((a, b) => a - b));
        expect(snapshot.sha256()).toBe(snapshotSha); // writes never leak into the snapshot
      }),
      { numRuns: 30 },
    );
  });

  it('generated blocks cost no memory and read back the same every time', () => {
    const disk = new SparseDisk(1024 * 1024 * BLOCK_SIZE); // 2 TiB
    disk.fillBlockWithPattern(123_456, { seed: 42, filled: BLOCK_SIZE });
    disk.fillBlockWithPattern(7, { seed: 43, filled: 4096 });
    expect(disk.allocatedIndexes()).toEqual([7, 123_456]);
    expect(Buffer.from(disk.readBlock(123_456)).equals(Buffer.from(disk.readBlock(123_456)))).toBe(true);
    expect(Buffer.from(disk.readBlock(7)).equals(Buffer.from(disk.readBlock(123_456)))).toBe(false);
    expect(
      disk
        .readBlock(7)
        .subarray(4096)
        .every((byte) => byte === 0),
    ).toBe(true);
    expect(disk.read(7 * BLOCK_SIZE - 2, 4)).toEqual(
      new Uint8Array([0, 0, ...disk.readBlock(7).subarray(0, 2)]),
    );
  });

  it('writeMappedSectors drops sectors past the end of a disk that is not a whole number of blocks', () => {
    const disk = new SparseDisk(BLOCK_SIZE + 1024);
    const bitmap = new Uint8Array(512).fill(0xff);
    disk.writeMappedSectors(1, BLOCK_SIZE, bitmap, new Uint8Array(BLOCK_SIZE).fill(5));
    expect(disk.read(BLOCK_SIZE, 1024).every((byte) => byte === 5)).toBe(true);
  });

  it('sparseSha256 is equal exactly when the raw content is: zeros written and holes alike', () => {
    const write = fc.record({
      offset: fc.integer({ min: 0, max: 4 * BLOCK_SIZE - 513 }),
      length: fc.integer({ min: 1, max: BLOCK_SIZE }),
      byte: fc.integer({ min: 0, max: 3 }),
    });
    fc.assert(
      fc.property(fc.array(write, { maxLength: 5 }), fc.array(write, { maxLength: 5 }), (left, right) => {
        const make = (writes: { offset: number; length: number; byte: number }[]) => {
          const disk = new SparseDisk(4 * BLOCK_SIZE - 512);
          for (const w of writes) {
            disk.write(
              w.offset,
              new Uint8Array(Math.min(w.length, disk.virtualSize - w.offset)).fill(w.byte),
            );
          }
          return disk;
        };
        const a = make(left);
        const b = make(right);
        expect(a.sparseSha256() === b.sparseSha256()).toBe(a.sha256() === b.sha256());
      }),
      { numRuns: 40 },
    );
    const zeros = new SparseDisk(BLOCK_SIZE * 2);
    zeros.write(BLOCK_SIZE, new Uint8Array(10));
    expect(zeros.sparseSha256()).toBe(new SparseDisk(BLOCK_SIZE * 2).sparseSha256());
    expect(zeros.sparseSha256()).not.toBe(new SparseDisk(BLOCK_SIZE * 3).sparseSha256());
  });
});
