import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CLUSTER_SIZE,
  Qcow2DataOrderError,
  Qcow2HeaderError,
  Qcow2TrailingDataError,
  Qcow2TruncatedError,
  mergeQcow2Layers,
  readQcow2ClusterMap,
  writeQcow2,
} from '../../lambdas/qcow2/index.ts';
import type { Qcow2ChainLayer } from '../../lambdas/qcow2/index.ts';
import { collect } from '../vhd/disks.ts';
import { qemuCheck, qemuConvert } from '../world/qemu-img.ts';
import { makeDisk, parseChunks, qcow2Bytes } from './disks.ts';
import type { TestDisk } from './disks.ts';

const MiB = 1024 * 1024;
const cs = CLUSTER_SIZE;

/** A ranged reader over bytes that records each read. */
function reader(bytes: Buffer, reads: [number, number][] = []) {
  return async (start: number, length: number) => {
    reads.push([start, length]);
    return bytes.subarray(start, start + length);
  };
}

async function layerOf(disk: TestDisk, reads?: [number, number][]): Promise<Qcow2ChainLayer> {
  const bytes = await qcow2Bytes(disk);
  return { map: await readQcow2ClusterMap(reader(bytes, reads), bytes.length), read: reader(bytes, reads) };
}

/** The disk after writing each layer's clusters in order, as raw bytes of the newest layer's size. */
function applied(disks: readonly TestDisk[]): Buffer {
  const image = Buffer.alloc(disks.at(-1)!.virtualSize);
  for (const disk of disks) {
    for (const [index, data] of disk.clusters)
      image.set(data.subarray(0, image.length - index * cs), index * cs);
  }
  return image;
}

describe('readQcow2ClusterMap', () => {
  it('maps each present cluster to its data with a few ranged reads', async () => {
    const disk = makeDisk(1 * 1024 * MiB + 512, [0, 3, 8191, 8192, 16384]);
    const bytes = await qcow2Bytes(disk);
    const reads: [number, number][] = [];
    const map = await readQcow2ClusterMap(reader(bytes, reads), bytes.length);
    // Header, refcount table, L1, the three L2 tables in one read.
    expect(reads).toEqual([
      [0, cs],
      [cs, cs],
      [3 * cs, cs],
      [4 * cs, 3 * cs],
    ]);
    expect([...map.presentClusters]).toEqual([0, 3, 8191, 8192, 16384]);
    expect(map).toMatchObject({ virtualSize: disk.virtualSize, clusterCount: 16385, dataOffset: 7 * cs });
    expect(map.byteLength).toBe(bytes.length);
    const parsed = parseChunks([bytes]).clusters;
    for (const { index, fileOffset } of parsed) expect(map.clusterOffset(index)).toBe(fileOffset);
    expect(map.clusterOffset(1)).toBeUndefined();
  });

  it('validates as the stream parser does, and checks the object against the computed length', async () => {
    const bytes = await qcow2Bytes(makeDisk(4 * MiB, [1, 2]));
    const read = reader(bytes);
    await expect(readQcow2ClusterMap(read, bytes.length - 1)).rejects.toBeInstanceOf(Qcow2TruncatedError);
    await expect(readQcow2ClusterMap(read, bytes.length + cs)).rejects.toBeInstanceOf(Qcow2TrailingDataError);
    await expect(readQcow2ClusterMap(read, 3 * cs)).rejects.toBeInstanceOf(Qcow2TruncatedError);
    await expect(readQcow2ClusterMap(read, bytes.length, { virtualSize: 2 * MiB })).rejects.toThrow(
      /expected/,
    );
    const swapped = Buffer.from(bytes);
    swapped.writeBigUInt64BE(swapped.readBigUInt64BE(4 * cs + 16), 4 * cs + 8);
    await expect(readQcow2ClusterMap(reader(swapped), bytes.length)).rejects.toBeInstanceOf(
      Qcow2DataOrderError,
    );
    const version = Buffer.from(bytes);
    version.writeUInt32BE(2, 4);
    await expect(readQcow2ClusterMap(reader(version), bytes.length)).rejects.toBeInstanceOf(Qcow2HeaderError);
  });
});

describe('mergeQcow2Layers', () => {
  const full = makeDisk(3 * MiB, [0, 1, 2, 3, 4, 5, 6, 7, 20], 1);
  const zeros = new Uint8Array(cs);
  const delta1 = makeDisk(3 * MiB, [2, 5, 7, 30], 2);
  (delta1.clusters as Map<number, Uint8Array>).set(7, zeros); // cluster 7 became zeros
  const delta2 = makeDisk(4 * MiB, [5, 6, 47, 63], 3); // the disk grew by 1 MiB

  it('takes each cluster from the newest layer holding it, zeros included, at the newest size', async () => {
    const reads: [number, number][] = [];
    const layers = [await layerOf(full), await layerOf(delta1), await layerOf(delta2, reads)];
    reads.length = 0;
    const merged = mergeQcow2Layers(layers);
    expect(merged.virtualSize).toBe(4 * MiB);
    expect([...merged.presentClusters]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 20, 30, 47, 63]);
    expect([0, 2, 5, 6, 7, 30, 47, 8].map((index) => merged.layerOf(index))).toEqual([
      0, 1, 2, 2, 1, 1, 2, -1,
    ]);
    const bytes = await collect(writeQcow2(merged).stream);
    const { clusters, summary } = parseChunks([bytes]);
    expect(summary.presentClusters).toBe(12);
    const image = Buffer.alloc(4 * MiB);
    for (const { index, data } of clusters) image.set(data, index * cs);
    expect(image.equals(applied([full, delta1, delta2]))).toBe(true);
    expect(Buffer.from(clusters.find((cluster) => cluster.index === 7)!.data).equals(zeros)).toBe(true);
    // The newest layer's clusters 5, 6 are one run: one ranged read; 47 and 63 one each.
    expect(reads.map(([, length]) => length / cs)).toEqual([2, 1, 1]);
  });

  it('gives an image qemu-img checks and converts to the merged disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vdi-vault-qcow2-merge-'));
    try {
      const merged = mergeQcow2Layers([await layerOf(full), await layerOf(delta1), await layerOf(delta2)]);
      const path = join(dir, 'merged.qcow2');
      await writeFile(path, await collect(writeQcow2(merged).stream));
      expect(await qemuCheck(path, 'qcow2')).toMatch(/No errors were found/);
      await qemuConvert('qcow2', 'raw', path, join(dir, 'merged.raw'));
      expect((await readFile(join(dir, 'merged.raw'))).equals(applied([full, delta1, delta2]))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads runs of at most readAhead clusters', async () => {
    const reads: [number, number][] = [];
    const merged = mergeQcow2Layers([await layerOf(full, reads)], { readAhead: 3 });
    reads.length = 0;
    await collect(writeQcow2(merged).stream);
    expect(reads.map(([, length]) => length / cs)).toEqual([3, 3, 2, 1]);
  });

  it('refuses an empty chain and an older layer larger than the newest', async () => {
    expect(() => mergeQcow2Layers([])).toThrow(RangeError);
    const layers = [await layerOf(delta2), await layerOf(full)];
    expect(() => mergeQcow2Layers(layers)).toThrow(/more than the newest/);
  });
});
