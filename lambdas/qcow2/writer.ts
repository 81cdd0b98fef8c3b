import { CLUSTER_SIZE, ENTRIES_PER_CLUSTER, REFCOUNTS_PER_BLOCK } from './constants.ts';
import { encodeHeader } from './header.ts';
import { sparseLayout } from './layout.ts';
import type { Qcow2Layout } from './layout.ts';
import type { SparseClusterSource } from './types.ts';

const COPIED_HIGH = 0x80000000;

/**
 * Serialises a sparse disk exactly in the host's layout (docs/design.md § QCOW2 stream): header, refcount
 * table, refcount blocks, L1, one L2 table per L1 entry with data, then the data clusters in ascending guest
 * order. `byteLength` is known before the first byte. Metadata is built one cluster at a time as it is
 * consumed; each iteration of `stream` reads the clusters afresh.
 */
export function writeQcow2(source: SparseClusterSource): {
  readonly byteLength: number;
  readonly layout: Qcow2Layout;
  readonly stream: AsyncIterable<Uint8Array>;
} {
  const { layout, l2Present } = sparseLayout(source.virtualSize, source.presentClusters);

  async function* emit(): AsyncGenerator<Uint8Array, void, void> {
    yield encodeHeader(layout);
    yield* refcountTable(layout);
    yield* refcountBlocks(layout);
    yield* l1Table(layout, l2Present);
    yield* l2Tables(layout, source.presentClusters);
    for (const index of source.presentClusters) {
      const data = await source.readCluster(index);
      if (data.length !== CLUSTER_SIZE) {
        throw new RangeError(`cluster ${index} has ${data.length} bytes, expected ${CLUSTER_SIZE}`);
      }
      yield data;
    }
  }

  return {
    byteLength: layout.totalClusters * CLUSTER_SIZE,
    layout,
    stream: { [Symbol.asyncIterator]: emit },
  };
}

/** Writes `offset | copied` at entry `entry` of a table cluster. */
function writePointer(cluster: Buffer, entry: number, offset: number): void {
  cluster.writeUInt32BE((COPIED_HIGH | Math.floor(offset / 2 ** 32)) >>> 0, entry * 8);
  cluster.writeUInt32BE(offset % 2 ** 32, entry * 8 + 4);
}

function* refcountTable(layout: Qcow2Layout): Generator<Uint8Array> {
  for (let c = 0; c < layout.refcountTableClusters; c++) {
    const cluster = Buffer.alloc(CLUSTER_SIZE);
    for (let i = 0; i < ENTRIES_PER_CLUSTER; i++) {
      const block = c * ENTRIES_PER_CLUSTER + i;
      if (block >= layout.refcountBlocks) break;
      cluster.writeBigUInt64BE(BigInt((layout.refcountBlockStart + block) * CLUSTER_SIZE), i * 8);
    }
    yield cluster;
  }
}

/** Every cluster of the file has refcount 1, 16 bits each; entries past the file stay 0. */
function* refcountBlocks(layout: Qcow2Layout): Generator<Uint8Array> {
  for (let b = 0; b < layout.refcountBlocks; b++) {
    const cluster = Buffer.alloc(CLUSTER_SIZE);
    const counted = Math.min(REFCOUNTS_PER_BLOCK, layout.totalClusters - b * REFCOUNTS_PER_BLOCK);
    for (let i = 0; i < counted; i++) cluster[i * 2 + 1] = 1;
    yield cluster;
  }
}

function* l1Table(layout: Qcow2Layout, l2Present: Uint8Array): Generator<Uint8Array> {
  let table = layout.l2Start;
  for (let c = 0; c < layout.l1Clusters; c++) {
    const cluster = Buffer.alloc(CLUSTER_SIZE);
    for (let i = 0; i < ENTRIES_PER_CLUSTER; i++) {
      if (l2Present[c * ENTRIES_PER_CLUSTER + i] !== 1) continue;
      writePointer(cluster, i, table * CLUSTER_SIZE);
      table += 1;
    }
    yield cluster;
  }
}

/** One L2 table per run of present clusters sharing an L1 entry, each emitted once it is complete. */
function* l2Tables(layout: Qcow2Layout, presentClusters: Iterable<number>): Generator<Uint8Array> {
  let data = layout.dataStart;
  let current = -1;
  let cluster = Buffer.alloc(0);
  for (const index of presentClusters) {
    const table = Math.floor(index / ENTRIES_PER_CLUSTER);
    if (table !== current) {
      if (current >= 0) yield cluster;
      cluster = Buffer.alloc(CLUSTER_SIZE);
      current = table;
    }
    writePointer(cluster, index % ENTRIES_PER_CLUSTER, data * CLUSTER_SIZE);
    data += 1;
  }
  if (current >= 0) yield cluster;
}
