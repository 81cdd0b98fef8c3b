// Cross-checks against qemu-img, an independent qcow2 implementation (Debian's qemu-utils, installed by
// `npm test`; without it the run stops before any test, test/world/outside-tools.ts).
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_SIZE,
  Qcow2FormatError,
  Qcow2HeaderError,
  Qcow2L2OrderError,
  Qcow2RefcountError,
  parseQcow2,
} from '../../lambdas/qcow2/index.ts';
import { chunksOf } from '../vhd/disks.ts';
import { qemuCheck, qemuConvert, qemuImg } from '../world/qemu-img.ts';
import { imageOf, makeDisk, parseChunks, qcow2Bytes } from './disks.ts';
import type { TestDisk } from './disks.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vdi-vault-qcow2-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Compares a raw file with the disk's content piece by piece (the file may be larger than memory wants). */
async function expectRawFileOf(path: string, disk: TestDisk): Promise<void> {
  const file = await open(path, 'r');
  try {
    expect((await file.stat()).size).toBe(disk.virtualSize);
    const piece = 32 * MiB;
    for (let start = 0; start < disk.virtualSize; start += piece) {
      const length = Math.min(piece, disk.virtualSize - start);
      const { buffer } = await file.read(Buffer.alloc(length), 0, length, start);
      const expected = Buffer.alloc(length);
      for (const [index, data] of disk.clusters) {
        const at = index * CLUSTER_SIZE - start;
        if (at + CLUSTER_SIZE > 0 && at < length) {
          expected.set(data.subarray(Math.max(0, -at), Math.min(CLUSTER_SIZE, length - at)), Math.max(0, at));
        }
      }
      if (!buffer.equals(expected))
        throw new Error(`${path} differs from the disk in bytes ${start}..${start + length}`);
    }
  } finally {
    await file.close();
  }
}

/** Parses a whole image through parseQcow2, returning its raw content or the error. */
async function parseFile(bytes: Buffer): Promise<{ image?: Buffer; error?: unknown }> {
  async function* chunks() {
    yield* chunksOf(bytes, [4096, 1, 99_999]);
  }
  try {
    const generator = parseQcow2(chunks());
    const clusters = [];
    let step = await generator.next();
    while (!step.done) {
      clusters.push(step.value);
      step = await generator.next();
    }
    return { image: imageOf(clusters, step.value.virtualSize) };
  } catch (error) {
    return { error };
  }
}

/** A sparse raw file with `regions` filled by a pattern; returns its bytes. */
async function writeRaw(path: string, size: number, regions: readonly [number, number][]): Promise<Buffer> {
  const raw = Buffer.alloc(size);
  for (const [start, length] of regions) {
    for (let i = start; i < start + length; i++) raw[i] = (i * 31 + 7) & 0xff || 1;
  }
  const file = await open(path, 'w');
  for (const [start, length] of regions) await file.write(raw, start, length, start);
  await file.truncate(size);
  await file.close();
  return raw;
}

describe('qemu-img reads what the writer emits', () => {
  const ours: [string, number, number[]][] = [
    ['an empty disk', 6 * MiB, []],
    ['a disk whose last cluster is partial', 5 * MiB + 1536, [0, 2, 80]],
    ['a full disk', 1 * MiB, [...Array(16).keys()]],
    ['a disk smaller than one cluster', 4096, [0]],
    ['a disk of size zero', 0, []],
    ['a disk of three L2 tables, one skipped', 1.5 * GiB, [1, 8191, 16384, 24575]],
  ];
  for (const [name, size, indexes] of ours) {
    it(`qemu-img check passes and convert -O raw gives the disk's bytes: ${name}`, async () => {
      const disk = makeDisk(size, indexes, 3);
      const path = join(dir, 'ours.qcow2');
      const rawPath = join(dir, 'ours.raw');
      await writeFile(path, await qcow2Bytes(disk));
      expect(await qemuCheck(path, 'qcow2')).toMatch(/No errors were found on the image/);
      await qemuConvert('qcow2', 'raw', path, rawPath);
      await expectRawFileOf(rawPath, disk);
    });
  }
  it('qemu-img maps a sparse 5 TiB disk (an L1 table of two clusters) where the parser does', async () => {
    const perL1Cluster = 8192 * 8192; // guest clusters one L1 cluster covers (4 TiB)
    const size = 5 * 1024 * GiB;
    const disk = makeDisk(size, [0, perL1Cluster - 1, perL1Cluster, size / CLUSTER_SIZE - 1], 5);
    const bytes = await qcow2Bytes(disk);
    expect(bytes.readUInt32BE(36)).toBe(10240); // l1_size: two L1 clusters
    const path = join(dir, 'large.qcow2');
    await writeFile(path, bytes);
    expect(await qemuCheck(path, 'qcow2')).toMatch(/No errors were found on the image/);
    const extents = JSON.parse(await qemuImg('map', '--output=json', '-f', 'qcow2', path)) as {
      start: number;
      length: number;
      data: boolean;
      offset?: number;
    }[];
    const mapped = extents
      .filter((extent) => extent.data)
      .flatMap(({ start, length, offset }) =>
        Array.from({ length: length / CLUSTER_SIZE }, (_, i) => [
          start / CLUSTER_SIZE + i,
          offset! + i * CLUSTER_SIZE,
        ]),
      );
    const parsed = parseChunks(chunksOf(bytes, [65_536])).clusters;
    expect(mapped).toEqual(parsed.map((cluster) => [cluster.index, cluster.fileOffset]));
    for (const cluster of parsed) {
      expect(Buffer.from(cluster.data).equals(disk.clusters.get(cluster.index)!)).toBe(true);
    }
  });
});

describe('images qemu-img writes', () => {
  it('parses one that fits the host layout (one L2 table, data in order) to the same content', async () => {
    const rawPath = join(dir, 'small.raw');
    const path = join(dir, 'small.qcow2');
    const regions: [number, number][] = [
      [0, 70_000],
      [2 * MiB + 5, 1000],
      [3 * MiB - 100, 100],
    ];
    const raw = await writeRaw(rawPath, 3 * MiB, regions);
    await qemuConvert('raw', 'qcow2', rawPath, path, 'cluster_size=65536');
    const bytes = await readFile(path);
    const { image, error } = await parseFile(bytes);
    expect(error).toBeUndefined();
    expect(image!.equals(raw)).toBe(true);
    // Same clusters, same layout: byte for byte what our writer emits for them.
    const clusters = [0, 1, 32, 47];
    const disk = {
      virtualSize: raw.length,
      presentClusters: clusters,
      readCluster: (index: number) => raw.subarray(index * CLUSTER_SIZE, (index + 1) * CLUSTER_SIZE),
    };
    expect((await qcow2Bytes(disk)).equals(bytes)).toBe(true);
  });

  const refused: [string, string, abstract new (...args: never[]) => Qcow2FormatError, RegExp][] = [
    [
      'data in more than one L2 table (qemu puts each table before its data)',
      'cluster_size=65536',
      Qcow2L2OrderError,
      /L1 entry 1 points at byte/,
    ],
    [
      'version 2 (compat=0.10)',
      'cluster_size=65536,compat=0.10',
      Qcow2HeaderError,
      /version: 2, the host writes 3/,
    ],
    ['128 KiB clusters', 'cluster_size=131072', Qcow2HeaderError, /cluster_bits: 17, the host writes 16/],
    ['lazy refcounts', 'cluster_size=65536,lazy_refcounts=on', Qcow2HeaderError, /compatible_features: 1/],
    [
      '8-bit refcounts',
      'cluster_size=65536,refcount_bits=8',
      Qcow2HeaderError,
      /refcount_order: 3, the host writes 4/,
    ],
  ];
  for (const [what, options, errorClass, message] of refused) {
    it(`refuses one with ${what}, saying why`, async () => {
      const rawPath = join(dir, 'refused.raw');
      const path = join(dir, 'refused.qcow2');
      await writeRaw(rawPath, 600 * MiB, [
        [0, 100_000],
        [550 * MiB, 100_000],
      ]);
      await qemuConvert('raw', 'qcow2', rawPath, path, options);
      const { error } = await parseFile(await readFile(path));
      expect(error).toBeInstanceOf(errorClass);
      expect((error as Error).message).toMatch(message);
    });
  }

  it('refuses compressed clusters (several share a host cluster: refcounts above 1)', async () => {
    const rawPath = join(dir, 'compressed.raw');
    const path = join(dir, 'compressed.qcow2');
    await writeRaw(rawPath, 3 * MiB, [[0, 300_000]]);
    await qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=65536', rawPath, path);
    const { error } = await parseFile(await readFile(path));
    expect(error).toBeInstanceOf(Qcow2RefcountError);
  });

  it('refuses a backing file', async () => {
    const rawPath = join(dir, 'base.raw');
    const path = join(dir, 'overlay.qcow2');
    await writeRaw(rawPath, 1 * MiB, []);
    const options = `cluster_size=65536,backing_file=${rawPath},backing_fmt=raw`;
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', options, path, String(1 * MiB));
    const { error } = await parseFile(await readFile(path));
    expect(error).toBeInstanceOf(Qcow2HeaderError);
    expect((error as Qcow2HeaderError).field).toBe('backing_file_offset');
  });
});
