// Cross-checks against qemu-img, an independent VHD implementation. `npm test` installs Debian's
// qemu-utils first (scripts/ensure-test-deps.sh); without qemu-img the run stops before any test
// (test/world/outside-tools.ts).
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VHD_BLOCK_SIZE, bitmapMarksEverySector, parseVhd } from '../../lambdas/vhd/index.ts';
import { chunksOf, makeDisk, rawImage, vhdBytes } from './disks.ts';
import { parseChunks } from './parse.ts';
import { qemuConvert, qemuVirtualSize } from '../world/qemu-img.ts';

const MiB = 1024 * 1024;

function resealWithCreator(bytes: Buffer, footerAt: number, creator: string): void {
  bytes.write(creator, footerAt + 28, 'latin1');
  bytes.writeUInt32BE(0, footerAt + 64);
  const sum = bytes.subarray(footerAt, footerAt + 512).reduce((total, byte) => total + byte, 0);
  bytes.writeUInt32BE(~sum >>> 0, footerAt + 64);
}

describe('qemu-img cross-checks', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vdi-vault-vhd-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const ours: [string, number, number[]][] = [
    ['a sparse disk with a partial last block', 9 * MiB + 7 * 512, [0, 2, 4]],
    ['an empty disk', 6 * MiB, []],
    ['a full disk', 4 * MiB, [0, 1]],
  ];
  // With our creator, 'tap\0' (xapi's), qemu 7.2 trusts the footer's size; with one it does not know it
  // sizes the disk from CHS geometry, a few KiB short.
  const creators = ['tap\0', 'vdiv'];
  for (const [name, size, indexes] of ours)
    for (const creator of creators) {
      it(`reads ${name} we wrote as the disk's bytes (creator ${JSON.stringify(creator)})`, async () => {
        const disk = makeDisk(size, indexes, 3);
        const { bytes } = await vhdBytes(disk);
        if (creator !== 'tap\0') {
          resealWithCreator(bytes, 0, creator);
          resealWithCreator(bytes, bytes.length - 512, creator);
        }
        const vhdPath = join(dir, 'ours.vhd');
        const rawPath = join(dir, 'ours.raw');
        await writeFile(vhdPath, bytes);
        // qemu may size the disk from its CHS geometry (a little under the virtual size) unless it trusts
        // the creator: compare within what it sees, and check the rest with our own parser.
        const seen = await qemuVirtualSize(vhdPath);
        expect(seen).toBeLessThanOrEqual(size);
        expect(seen).toBeGreaterThan(size - 64 * 1024);
        await qemuConvert('vpc', 'raw', vhdPath, rawPath);
        const converted = await readFile(rawPath);
        const expected = rawImage(disk);
        expect(converted.length).toBe(seen);
        expect(converted.equals(expected.subarray(0, seen))).toBe(true);

        const parsed = Buffer.alloc(size);
        for (const block of parseChunks([bytes]).blocks) {
          const start = block.index * VHD_BLOCK_SIZE;
          parsed.set(block.data.subarray(0, Math.min(VHD_BLOCK_SIZE, size - start)), start);
        }
        expect(parsed.subarray(seen).equals(expected.subarray(seen))).toBe(true);
        if (creator === 'tap\0') expect(seen).toBe(size);
      });
    }

  for (const options of ['subformat=dynamic', 'subformat=dynamic,force_size=on']) {
    it(`parses qemu-img's own dynamic VHDs (-o ${options}) to the same content`, async () => {
      const rawSize = 13 * MiB + 5 * 512;
      const rawPath = join(dir, 'source.raw');
      const vhdPath = join(dir, 'qemu.vhd');
      const raw = Buffer.alloc(rawSize);
      // Data in blocks 0, 2 (straddling into 3), 6 (the partial last one); blocks 1, 4, 5 stay holes.
      const regions: [number, number][] = [
        [0, 1000],
        [2 * VHD_BLOCK_SIZE + 12345, 3 * MiB],
        [rawSize - 3000, 3000],
      ];
      for (const [start, length] of regions) {
        for (let i = start; i < start + length; i++) raw[i] = (i * 31 + 7) & 0xff || 1;
      }
      const file = await open(rawPath, 'w');
      for (const [start, length] of regions) await file.write(raw, start, length, start);
      await file.truncate(rawSize);
      await file.close();
      await qemuConvert('raw', 'vpc', rawPath, vhdPath, options);

      const bytes = await readFile(vhdPath);
      const seen = await qemuVirtualSize(vhdPath);
      const image = Buffer.alloc(seen);
      async function* chunks() {
        yield* chunksOf(bytes, [4096, 1, 99_999]);
      }
      const generator = parseVhd(chunks());
      const indexes: number[] = [];
      let step = await generator.next();
      while (!step.done) {
        const block = step.value;
        indexes.push(block.index);
        expect(bitmapMarksEverySector(block.bitmap, VHD_BLOCK_SIZE)).toBe(true);
        const start = block.index * VHD_BLOCK_SIZE;
        image.set(block.data.subarray(0, Math.min(VHD_BLOCK_SIZE, seen - start)), start);
        step = await generator.next();
      }
      const summary = step.value;
      expect(summary.virtualSize).toBe(seen);
      expect(summary.bytesRead).toBe(bytes.length);
      expect(indexes).toEqual([0, 2, 3, 6]);
      // qemu rounds the size up to whole CHS cylinders; the extra tail reads as zeros.
      expect(seen).toBeGreaterThanOrEqual(rawSize);
      expect(image.subarray(0, rawSize).equals(raw)).toBe(true);
      expect(image.subarray(rawSize).every((byte) => byte === 0)).toBe(true);
    });
  }
});
