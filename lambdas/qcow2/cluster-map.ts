import type { RangeReader } from '../vhd/index.ts';
import type { ClusterBitmap } from './bitmap.ts';
import { CLUSTER_SIZE } from './constants.ts';
import { Qcow2TrailingDataError, Qcow2TruncatedError } from './errors.ts';
import { decodeHeader } from './header.ts';
import { Qcow2TableCheck } from './tables.ts';

/** L2 tables fetched per ranged read (4 MiB). */
const L2_CLUSTERS_PER_READ = 64;

/** Where each present cluster of a stored qcow2 sits, read from its tables without streaming the data. */
export interface Qcow2ClusterMap {
  readonly virtualSize: number;
  readonly clusterCount: number;
  readonly presentClusters: ClusterBitmap;
  /** Stream offset of the first data cluster, and the object's length. */
  readonly dataOffset: number;
  readonly byteLength: number;
  /** File offset of a present cluster's 64 KiB; undefined when the image does not hold it. */
  clusterOffset(index: number): number | undefined;
}

/**
 * Reads a stored qcow2's header, refcount table, L1 and L2 tables with a few ranged reads and validates them
 * as the stream parser does (the refcount blocks are not read: `fileSize` must be the length the tables
 * compute instead). Memory: one bit per guest cluster.
 */
export async function readQcow2ClusterMap(
  read: RangeReader,
  fileSize: number,
  options: { readonly virtualSize?: number } = {},
): Promise<Qcow2ClusterMap> {
  const clusters = async (first: number, count: number, what: string): Promise<Uint8Array> => {
    const end = (first + count) * CLUSTER_SIZE;
    if (end > fileSize) {
      throw new Qcow2TruncatedError(`${what}: the object ends at ${fileSize}`, fileSize);
    }
    return read(first * CLUSTER_SIZE, count * CLUSTER_SIZE);
  };
  const cluster = (bytes: Uint8Array, i: number) => bytes.subarray(i * CLUSTER_SIZE, (i + 1) * CLUSTER_SIZE);

  const header = decodeHeader(await clusters(0, 1, 'the header'), options.virtualSize);
  const check = new Qcow2TableCheck(header);
  const rt = header.refcountTableClusters;
  const table = await clusters(1, rt, 'the refcount table');
  for (let i = 0; i < rt; i++) check.refcountTable(cluster(table, i), i);
  const l1Start = check.l2Start - check.l1Clusters;
  if (check.l1Clusters > 0) {
    const l1 = await clusters(l1Start, check.l1Clusters, 'the L1 table');
    for (let i = 0; i < check.l1Clusters; i++) check.l1(cluster(l1, i), i);
  }
  for (let done = 0; done < check.l2Tables; done += L2_CLUSTERS_PER_READ) {
    const count = Math.min(L2_CLUSTERS_PER_READ, check.l2Tables - done);
    const l2 = await clusters(check.l2Start + done, count, 'the L2 tables');
    for (let i = 0; i < count; i++) check.l2(cluster(l2, i), done + i);
  }
  const layout = check.finish(false);
  const byteLength = layout.totalClusters * CLUSTER_SIZE;
  if (fileSize < byteLength) {
    throw new Qcow2TruncatedError(`the data: the tables end the image at ${byteLength}`, fileSize);
  }
  if (fileSize > byteLength) {
    throw new Qcow2TrailingDataError(
      `the object holds ${fileSize} bytes, the image ends at ${byteLength}`,
      byteLength,
    );
  }
  const present = check.present;
  return {
    virtualSize: layout.virtualSize,
    clusterCount: layout.clusterCount,
    presentClusters: present,
    dataOffset: layout.dataStart * CLUSTER_SIZE,
    byteLength,
    clusterOffset: (index) =>
      present.has(index) ? (layout.dataStart + present.rank(index)) * CLUSTER_SIZE : undefined,
  };
}
