import {
  CLUSTER_SIZE,
  ENTRIES_PER_CLUSTER,
  MAX_VIRTUAL_SIZE,
  REFCOUNTS_PER_BLOCK,
  SECTOR_SIZE,
} from './constants.ts';

/** Where each region of the host's layout starts, in clusters, and how many clusters it holds. */
export interface Qcow2Layout {
  readonly virtualSize: number;
  /** Guest clusters: ceil(virtualSize / 64 KiB). */
  readonly clusterCount: number;
  /** L1 entries: one per 8192 guest clusters. */
  readonly l1Size: number;
  readonly refcountTableClusters: number;
  readonly refcountBlocks: number;
  readonly l1Clusters: number;
  readonly l2Tables: number;
  readonly dataClusters: number;
  /** Clusters of the whole file; its byte length is this × 64 KiB. */
  readonly totalClusters: number;
  readonly refcountBlockStart: number;
  readonly l1Start: number;
  readonly l2Start: number;
  readonly dataStart: number;
}

export function guestClusterCount(virtualSize: number): number {
  return Math.ceil(virtualSize / CLUSTER_SIZE);
}

export function l1SizeFor(clusterCount: number): number {
  return Math.ceil(clusterCount / ENTRIES_PER_CLUSTER);
}

/**
 * Refcount table and block clusters for a file of `others` clusters besides them: the host's fixed point,
 * grown until the blocks count every cluster, themselves and the table included.
 */
export function refcountClusters(others: number): { readonly table: number; readonly blocks: number } {
  let blocks = Math.ceil(others / REFCOUNTS_PER_BLOCK);
  let table = Math.ceil(blocks / ENTRIES_PER_CLUSTER);
  while (true) {
    const grown = Math.ceil((others + table + blocks) / REFCOUNTS_PER_BLOCK);
    if (grown <= blocks) break;
    blocks = grown;
    table = Math.ceil(blocks / ENTRIES_PER_CLUSTER);
  }
  return { table, blocks };
}

/** The layout of a disk of `virtualSize` bytes with `l2Tables` L2 tables and `dataClusters` data clusters. */
export function qcow2Layout(virtualSize: number, l2Tables: number, dataClusters: number): Qcow2Layout {
  const clusterCount = guestClusterCount(virtualSize);
  const l1Size = l1SizeFor(clusterCount);
  const l1Clusters = Math.ceil(l1Size / ENTRIES_PER_CLUSTER);
  const { table, blocks } = refcountClusters(1 + l1Clusters + l2Tables + dataClusters);
  const refcountBlockStart = 1 + table;
  const l1Start = refcountBlockStart + blocks;
  const l2Start = l1Start + l1Clusters;
  const dataStart = l2Start + l2Tables;
  return {
    virtualSize,
    clusterCount,
    l1Size,
    refcountTableClusters: table,
    refcountBlocks: blocks,
    l1Clusters,
    l2Tables,
    dataClusters,
    totalClusters: dataStart + dataClusters,
    refcountBlockStart,
    l1Start,
    l2Start,
    dataStart,
  };
}

export function checkVirtualSize(virtualSize: number): void {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0 || virtualSize % SECTOR_SIZE !== 0) {
    throw new RangeError(`virtual size must be a non-negative multiple of ${SECTOR_SIZE}: ${virtualSize}`);
  }
  if (virtualSize > MAX_VIRTUAL_SIZE) {
    throw new RangeError(`virtual size ${virtualSize} exceeds ${MAX_VIRTUAL_SIZE}`);
  }
}

/**
 * The layout of a sparse disk given its present clusters (ascending, each below the guest cluster count;
 * RangeError otherwise). Also returns which L1 entries have an L2 table.
 */
export function sparseLayout(
  virtualSize: number,
  presentClusters: Iterable<number>,
): { readonly layout: Qcow2Layout; readonly l2Present: Uint8Array } {
  checkVirtualSize(virtualSize);
  const clusterCount = guestClusterCount(virtualSize);
  const l2Present = new Uint8Array(l1SizeFor(clusterCount));
  let previous = -1;
  let dataClusters = 0;
  let l2Tables = 0;
  for (const index of presentClusters) {
    if (!Number.isInteger(index) || index <= previous || index >= clusterCount) {
      throw new RangeError(
        `present clusters must be ascending integers below ${clusterCount}: ${index} after ${previous}`,
      );
    }
    previous = index;
    dataClusters += 1;
    const table = Math.floor(index / ENTRIES_PER_CLUSTER);
    if (l2Present[table] === 0) {
      l2Present[table] = 1;
      l2Tables += 1;
    }
  }
  return { layout: qcow2Layout(virtualSize, l2Tables, dataClusters), l2Present };
}

/**
 * Total bytes of the qcow2 the writer emits for this disk: (1 + rt + rb + l1c + L2 + D) × 64 KiB
 * (docs/design.md § QCOW2 stream).
 */
export function qcow2ByteLength(virtualSize: number, presentClusters: Iterable<number>): number {
  return sparseLayout(virtualSize, presentClusters).layout.totalClusters * CLUSTER_SIZE;
}

/**
 * `qcow2ByteLength` of a disk with every cluster present (each L1 entry then has its L2 table), from the
 * counts: no pass over the 268 million clusters of a 16 TiB disk. The largest export a disk can give.
 */
export function qcow2FullyAllocatedByteLength(virtualSize: number): number {
  const clusters = guestClusterCount(virtualSize);
  return qcow2Layout(virtualSize, l1SizeFor(clusters), clusters).totalClusters * CLUSTER_SIZE;
}
