import { describe, expect, it } from 'vitest';
import {
  CLUSTER_SIZE,
  ClusterBitmap,
  Qcow2StreamParser,
  parseQcow2,
  qcow2ByteLength,
  qcow2Layout,
  refcountClusters,
  writeQcow2,
} from '../../lambdas/qcow2/index.ts';
import { chunksOf, collect } from '../vhd/disks.ts';
import { makeDisk, parseChunks, qcow2Bytes } from './disks.ts';
import type { TestDisk } from './disks.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

function expectClustersOf(disk: TestDisk, clusters: ReturnType<typeof parseChunks>['clusters']): void {
  expect(clusters.map((cluster) => cluster.index)).toEqual([...disk.presentClusters]);
  for (const cluster of clusters) {
    expect(Buffer.from(cluster.data).equals(disk.clusters.get(cluster.index)!)).toBe(true);
  }
}

describe('writeQcow2 → Qcow2StreamParser', () => {
  const cases: [string, number, number[]][] = [
    ['an empty disk', 8 * MiB, []],
    ['one cluster', 8 * MiB, [5]],
    ['a full disk', 512 * KiB, [0, 1, 2, 3, 4, 5, 6, 7]],
    ['a disk whose last cluster is partial', 5 * MiB + 1536, [0, 2, 80]],
    ['a disk smaller than one cluster', 4 * KiB, [0]],
    ['a disk of several L2 tables', 1 * GiB + 512, [0, 8191, 8192, 16384]],
    ['a disk with an L2 table skipped', 1 * GiB + 512, [1, 16384]],
  ];
  for (const [name, size, indexes] of cases) {
    it(`round-trips ${name}`, async () => {
      const disk = makeDisk(size, indexes);
      const { byteLength, stream } = writeQcow2(disk);
      const bytes = await collect(stream);
      expect(bytes.length).toBe(byteLength);
      expect(byteLength).toBe(qcow2ByteLength(size, indexes));
      const { clusters, summary } = parseChunks(chunksOf(bytes, [1000, 1, 65536, 70_001]));
      expectClustersOf(disk, clusters);
      expect(summary).toEqual({
        virtualSize: size,
        clusterSize: CLUSTER_SIZE,
        clusterCount: Math.ceil(size / CLUSTER_SIZE),
        presentClusters: indexes.length,
        bytesRead: byteLength,
      });
    });
  }

  it('round-trips a disk of size zero', async () => {
    const bytes = await qcow2Bytes(makeDisk(0, []));
    // Header, one refcount table cluster, one refcount block; no L1 (l1_size 0, l1_table_offset 0).
    expect(bytes.length).toBe(3 * CLUSTER_SIZE);
    expect(bytes.readBigUInt64BE(40)).toBe(0n);
    expect(parseChunks([bytes]).summary.clusterCount).toBe(0);
  });

  it('emits the host layout byte for byte', async () => {
    // N = 8321 guest clusters, l1_size 2; clusters 0, 2 (first L2 table), 8200, 8320 (second).
    const size = 520 * MiB + 1536;
    const bytes = await qcow2Bytes(makeDisk(size, [0, 2, 8200, 8320]));
    const cs = CLUSTER_SIZE;
    expect(bytes.length).toBe(10 * cs); // 1 + rt 1 + rb 1 + l1c 1 + L2 2 + D 4
    expect(bytes.toString('latin1', 0, 4)).toBe('QFI\xfb');
    const u32 = (at: number) => bytes.readUInt32BE(at);
    const u64 = (at: number) => Number(bytes.readBigUInt64BE(at));
    expect([u32(4), u64(8), u32(16), u32(20), u64(24), u32(32), u32(36)]).toEqual([3, 0, 0, 16, size, 0, 2]);
    expect([u64(40), u64(48), u32(56), u32(60), u64(64)]).toEqual([3 * cs, cs, 1, 0, 0]);
    expect([u64(72), u64(80), u64(88), u32(96), u32(100)]).toEqual([0, 0, 0, 4, 112]);
    expect(bytes.subarray(104, 112).every((byte) => byte === 0)).toBe(true);
    expect([u32(112), u32(116)]).toEqual([0x6803f857, 384]);
    const names = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [
      bytes[120 + i * 48],
      bytes[121 + i * 48],
      bytes.toString('latin1', 122 + i * 48, 168 + i * 48).replace(/\0+$/, ''),
    ]);
    expect(names).toEqual([
      [0, 0, 'dirty bit'],
      [0, 1, 'corrupt bit'],
      [0, 2, 'external data file'],
      [0, 3, 'compression type'],
      [0, 4, 'extended L2 entries'],
      [1, 0, 'lazy refcounts'],
      [2, 0, 'bitmaps'],
      [2, 1, 'raw external data'],
    ]);
    expect(bytes.subarray(504, cs).every((byte) => byte === 0)).toBe(true);
    expect(u64(cs)).toBe(2 * cs);
    expect(bytes.subarray(cs + 8, 2 * cs).every((byte) => byte === 0)).toBe(true);
    const refcounts = [...Array(12).keys()].map((i) => bytes.readUInt16BE(2 * cs + 2 * i));
    expect(refcounts).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    const copied = (offset: number) => (1n << 63n) | BigInt(offset);
    expect([bytes.readBigUInt64BE(3 * cs), bytes.readBigUInt64BE(3 * cs + 8)]).toEqual([
      copied(4 * cs),
      copied(5 * cs),
    ]);
    expect(bytes.readBigUInt64BE(4 * cs)).toBe(copied(6 * cs));
    expect(bytes.readBigUInt64BE(4 * cs + 16)).toBe(copied(7 * cs));
    expect(bytes.readBigUInt64BE(5 * cs + (8200 - 8192) * 8)).toBe(copied(8 * cs));
    expect(bytes.readBigUInt64BE(5 * cs + (8320 - 8192) * 8)).toBe(copied(9 * cs));
    // Every other table byte is zero: 2 + 2 + 2 entries set in the L1 and the two L2 tables.
    const setBytes = (from: number, to: number) => bytes.subarray(from, to).filter((b) => b !== 0).length;
    expect(setBytes(3 * cs, 6 * cs)).toBe(
      setBytes(3 * cs, 3 * cs + 16) + setBytes(4 * cs, 4 * cs + 24) + setBytes(5 * cs + 64, 5 * cs + 1032),
    );
  });

  it('reads clusters lazily, in order, and can be iterated again', async () => {
    const disk = makeDisk(2 * MiB, [3, 9]);
    const reads: number[] = [];
    const { stream } = writeQcow2({
      ...disk,
      readCluster: async (index) => (reads.push(index), disk.clusters.get(index)!),
    });
    expect(reads).toEqual([]);
    const first = await collect(stream);
    const second = await collect(stream);
    expect(reads).toEqual([3, 9, 3, 9]);
    expect(first.equals(second)).toBe(true);
  });

  it('takes a ClusterBitmap as the present clusters', async () => {
    const disk = makeDisk(3 * MiB, [0, 7, 47]);
    const bitmap = new ClusterBitmap(48);
    for (const index of [47, 0, 7]) bitmap.set(index);
    const fromBitmap = await qcow2Bytes({ ...disk, presentClusters: bitmap });
    expect(fromBitmap.equals(await qcow2Bytes(disk))).toBe(true);
  });

  it('refuses sources it cannot serialise', () => {
    const disk = makeDisk(4 * MiB, []);
    const write = (source: Partial<TestDisk>) => () => writeQcow2({ ...disk, ...source } as TestDisk);
    expect(write({ virtualSize: 1000 })).toThrow(RangeError);
    expect(write({ virtualSize: 2 ** 46 })).toThrow(RangeError);
    expect(write({ presentClusters: [1, 0] })).toThrow(RangeError);
    expect(write({ presentClusters: [64] })).toThrow(RangeError);
    expect(write({ presentClusters: [0, 0] })).toThrow(RangeError);
    expect(write({ presentClusters: [0.5] })).toThrow(RangeError);
  });

  it('fails the stream when a cluster has the wrong length', async () => {
    const disk = makeDisk(4 * MiB, [0]);
    const { stream } = writeQcow2({ ...disk, readCluster: () => new Uint8Array(10) });
    await expect(collect(stream)).rejects.toThrow(/expected 65536/);
  });
});

describe('qcow2ByteLength', () => {
  it('counts header, refcounts, L1, one L2 per table with data and the data clusters', () => {
    expect(qcow2ByteLength(0, [])).toBe(3 * CLUSTER_SIZE);
    expect(qcow2ByteLength(1 * GiB, [])).toBe(4 * CLUSTER_SIZE);
    expect(qcow2ByteLength(1 * GiB, [0, 1, 2])).toBe(8 * CLUSTER_SIZE);
    expect(qcow2ByteLength(1 * GiB, [0, 8192])).toBe(8 * CLUSTER_SIZE);
  });

  it('follows the fixed point of refcount table and blocks', () => {
    expect(refcountClusters(1)).toEqual({ table: 1, blocks: 1 });
    // 32766 others + 1 table + 1 block fill one block exactly; one more needs a second block.
    expect(refcountClusters(32766)).toEqual({ table: 1, blocks: 1 });
    expect(refcountClusters(32767)).toEqual({ table: 1, blocks: 2 });
    // 8192 blocks are one table cluster: past 8192 × 32768 clusters the table needs a second.
    expect(refcountClusters(8192 * 32768 - 8193)).toEqual({ table: 1, blocks: 8192 });
    expect(refcountClusters(8192 * 32768 - 8192)).toEqual({ table: 2, blocks: 8193 });
  });

  it('puts 2.5 GiB of metadata before the data of a fully allocated 16 TiB disk', () => {
    const clusters = (16 * TiB) / CLUSTER_SIZE;
    const layout = qcow2Layout(16 * TiB, clusters / 8192, clusters);
    const metadata = layout.totalClusters * CLUSTER_SIZE - 16 * TiB;
    // 1 header + 2 refcount table + 8194 refcount blocks + 4 L1 + 32768 L2 clusters.
    expect(layout).toMatchObject({ refcountTableClusters: 2, refcountBlocks: 8194, l1Clusters: 4 });
    expect(metadata).toBe((1 + 2 + 8194 + 4 + 32768) * CLUSTER_SIZE);
    expect(metadata / GiB).toBeCloseTo(2.5, 1);
  });
});

describe('Qcow2StreamParser', () => {
  it('exposes the header once the L2 tables are read, and counts bytes', async () => {
    const disk = makeDisk(5 * MiB, [1, 4]);
    const bytes = await qcow2Bytes(disk);
    const parser = new Qcow2StreamParser();
    const dataOffset = 5 * CLUSTER_SIZE;
    expect(parser.write(bytes.subarray(0, dataOffset - 1))).toEqual([]);
    expect(parser.header).toBeUndefined();
    expect(parser.write(bytes.subarray(dataOffset - 1, dataOffset))).toEqual([]);
    expect(parser.header).toMatchObject({
      virtualSize: 5 * MiB,
      clusterCount: 80,
      dataOffset,
      byteLength: bytes.length,
    });
    expect([...parser.header!.presentClusters]).toEqual([1, 4]);
    expect(parser.bytesRead).toBe(dataOffset);
    const clusters = parser.write(bytes.subarray(dataOffset));
    expect(clusters.map((cluster) => [cluster.index, cluster.fileOffset])).toEqual([
      [1, dataOffset],
      [4, dataOffset + CLUSTER_SIZE],
    ]);
    expect(parser.end().bytesRead).toBe(bytes.length);
  });

  it('keeps no data when asked to validate only', async () => {
    const bytes = await qcow2Bytes(makeDisk(1 * MiB, [2]));
    const { clusters } = parseChunks([bytes], { keepClusterData: false });
    expect(clusters.map((cluster) => [cluster.index, cluster.data.length])).toEqual([[2, 0]]);
  });

  it('parseQcow2 yields the clusters and returns the summary', async () => {
    const disk = makeDisk(2 * MiB, [0, 31]);
    const bytes = await qcow2Bytes(disk);
    async function* source() {
      yield* chunksOf(bytes, [77_777]);
    }
    const generator = parseQcow2(source());
    const indexes: number[] = [];
    let step = await generator.next();
    while (!step.done) {
      indexes.push(step.value.index);
      expect(Buffer.from(step.value.data).equals(disk.clusters.get(step.value.index)!)).toBe(true);
      step = await generator.next();
    }
    expect(indexes).toEqual([0, 31]);
    expect(step.value.bytesRead).toBe(bytes.length);
  });

  it('parseQcow2 rejects text chunks', async () => {
    async function* text() {
      yield 'QFI' as unknown as Uint8Array;
    }
    await expect(parseQcow2(text()).next()).rejects.toThrow(TypeError);
  });
});

describe('ClusterBitmap', () => {
  it('sets, counts, iterates in ascending order and ranks', () => {
    const bitmap = new ClusterBitmap(5000);
    const indexes = [4999, 0, 31, 32, 33, 1023, 1024, 1025, 2047, 3000];
    for (const index of indexes) bitmap.set(index);
    bitmap.set(31);
    expect(bitmap.count).toBe(indexes.length);
    const sorted = [...indexes].sort((a, b) => a - b);
    expect([...bitmap]).toEqual(sorted);
    bitmap.freeze();
    for (let i = 0; i < 5000; i++) expect(bitmap.rank(i)).toBe(sorted.filter((x) => x < i).length);
    expect(bitmap.has(5000)).toBe(false);
    expect(() => bitmap.set(1)).toThrow(/frozen/);
    expect(() => new ClusterBitmap(10).set(10)).toThrow(RangeError);
  });
});
