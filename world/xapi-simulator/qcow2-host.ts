/**
 * The simulated host's own qcow2 code: the export writer (what xapi's `qcow2-to-stdout.py` streams for
 * `export_raw_vdi?format=qcow2`) and the import reader (what `qcow-stream-tool stream_decode` does with
 * `import_raw_vdi?format=qcow2`). docs/design.md § QCOW2 stream has the facts.
 *
 * Like vhd-host.ts this is the independent oracle ON PURPOSE: written for the simulator from the qcow2
 * specification and the host tools' behaviour, sharing no code with the product's codec. Keep it that way:
 * no import from `lambdas/`, and no import of this file from the product.
 *
 * Export layout (big-endian, cluster size cs = 64 KiB, 16-bit refcounts): cluster 0 the header (version 3,
 * header length 112, the feature-name table extension, zeros to cs), the refcount table (rt clusters), the
 * refcount blocks (rb clusters, every cluster of the file counted once), the L1 table, one L2 table per L1
 * entry with data in ascending L1 index, then the data clusters contiguous in guest order. rt and rb come
 * from the exporter's fixed-point loop. Nothing follows the last data cluster.
 */

const CLUSTER_BITS = 16;
const CS = 1 << CLUSTER_BITS;
/** 8-byte entries per L1/L2/refcount-table cluster. */
const ENTRIES = CS / 8;
/** 16-bit refcounts per refcount block. */
const REFCOUNTS = CS / 2;
const HEADER_LENGTH = 112;
const FEATURE_NAME_TABLE = 0x6803f857;
const QCOW_MAGIC = 0x514649fb; // 'QFI\xfb'
/** A guest cluster group: the 2 MiB blocks the simulator's disks are made of (32 clusters). */
const GROUP_CLUSTERS = 32;
const GROUP_BYTES = GROUP_CLUSTERS * CS;
/** L2 tables per group run: one L2 table maps 8192 clusters, 256 groups. */
const GROUPS_PER_L2 = ENTRIES / GROUP_CLUSTERS;

const FEATURES: readonly [type: number, bit: number, name: string][] = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

export interface HostQcow2Source {
  readonly virtualSize: number;
  /** Ascending indexes of the 2 MiB groups (32 clusters) with something to send. */
  readonly groups: readonly number[];
  /** Per group, bit c set for each of its clusters the export carries. */
  readonly masks: Uint32Array;
  /** 2 MiB of a group's content; bytes past the virtual size are sent as zeros whatever they hold. */
  readGroup(index: number): Uint8Array;
}

export interface HostQcow2Layout {
  readonly guestClusters: number;
  readonly l1Entries: number;
  readonly l1Clusters: number;
  readonly l2Tables: number;
  readonly dataClusters: number;
  readonly refcountTableClusters: number;
  readonly refcountBlocks: number;
  readonly totalClusters: number;
}

/** The exporter's sizes for a disk and a number of data clusters and L2 tables, fixed-point loop included. */
export function hostQcow2Layout(
  virtualSize: number,
  l2Tables: number,
  dataClusters: number,
): HostQcow2Layout {
  const size = Math.ceil(virtualSize / 512) * 512;
  const guestClusters = Math.ceil(size / CS);
  const l1Entries = Math.ceil(guestClusters / ENTRIES);
  const l1Clusters = Math.ceil(l1Entries / ENTRIES);
  const base = 1 + l1Clusters + l2Tables + dataClusters;
  let refcountBlocks = Math.ceil(base / REFCOUNTS);
  let refcountTableClusters = Math.ceil(refcountBlocks / ENTRIES);
  for (;;) {
    const grown = Math.ceil((base + refcountTableClusters + refcountBlocks) / REFCOUNTS);
    if (grown <= refcountBlocks) break;
    refcountBlocks = grown;
    refcountTableClusters = Math.ceil(refcountBlocks / ENTRIES);
  }
  return {
    guestClusters,
    l1Entries,
    l1Clusters,
    l2Tables,
    dataClusters,
    refcountTableClusters,
    refcountBlocks,
    totalClusters: base + refcountTableClusters + refcountBlocks,
  };
}

/**
 * The host's qcow2 export: its exact length (known before the first byte) and its clusters, generated
 * one at a time so that neither the refcount blocks nor the L2 tables of a big disk are ever held whole.
 */
export function hostQcow2Export(source: HostQcow2Source): {
  byteLength: number;
  layout: HostQcow2Layout;
  chunks: Iterable<Uint8Array>;
} {
  const { virtualSize, groups, masks } = source;
  if (masks.length !== groups.length) throw new RangeError('one mask per group');
  // The L2 tables: one per 256 groups that has data (groups ascend, so these do too).
  const l2Indexes: number[] = [];
  let dataClusters = 0;
  for (let i = 0; i < groups.length; i++) {
    if (i > 0 && groups[i]! <= groups[i - 1]!)
      throw new RangeError(`group ${groups[i]} after ${groups[i - 1]}`);
    const mask = masks[i]!;
    if (mask === 0) continue;
    dataClusters += popcount(mask);
    const table = Math.floor(groups[i]! / GROUPS_PER_L2);
    if (l2Indexes[l2Indexes.length - 1] !== table) l2Indexes.push(table);
  }
  const layout = hostQcow2Layout(virtualSize, l2Indexes.length, dataClusters);
  const refcountTableAt = 1;
  const refcountBlocksAt = refcountTableAt + layout.refcountTableClusters;
  const l1At = refcountBlocksAt + layout.refcountBlocks;
  const l2At = l1At + layout.l1Clusters;
  const dataAt = l2At + layout.l2Tables;
  if (groups.length > 0 && groups[groups.length - 1]! * GROUP_CLUSTERS >= layout.guestClusters) {
    throw new RangeError(`group ${groups[groups.length - 1]} is outside the disk`);
  }

  function* chunks(): Generator<Uint8Array> {
    yield header(virtualSize, layout, l1At);
    for (let t = 0; t < layout.refcountTableClusters; t++) {
      const cluster = Buffer.alloc(CS);
      const first = t * ENTRIES;
      for (let i = 0; i < ENTRIES && first + i < layout.refcountBlocks; i++) {
        writeOffset(cluster, i * 8, (refcountBlocksAt + first + i) * CS, false);
      }
      yield cluster;
    }
    for (let b = 0; b < layout.refcountBlocks; b++) {
      const counted = Math.min(REFCOUNTS, layout.totalClusters - b * REFCOUNTS);
      const cluster = Buffer.alloc(CS);
      for (let i = 0; i < counted; i++) cluster.writeUInt16BE(1, i * 2);
      yield cluster;
    }
    for (let t = 0; t < layout.l1Clusters; t++) {
      const cluster = Buffer.alloc(CS);
      for (let k = 0; k < l2Indexes.length; k++) {
        const entry = l2Indexes[k]! - t * ENTRIES;
        if (entry >= 0 && entry < ENTRIES) writeOffset(cluster, entry * 8, (l2At + k) * CS, true);
      }
      yield cluster;
    }
    // L2 tables: the k-th data cluster (in guest order) lives at dataAt + k.
    let nextData = dataAt;
    let g = 0;
    for (const table of l2Indexes) {
      const cluster = Buffer.alloc(CS);
      while (g < groups.length && Math.floor(groups[g]! / GROUPS_PER_L2) === table) {
        const mask = masks[g]!;
        const firstEntry = (groups[g]! % GROUPS_PER_L2) * GROUP_CLUSTERS;
        for (let c = 0; c < GROUP_CLUSTERS; c++) {
          if ((mask & (1 << c)) === 0) continue;
          writeOffset(cluster, (firstEntry + c) * 8, nextData * CS, true);
          nextData += 1;
        }
        g += 1;
      }
      yield cluster;
    }
    // Data: runs of adjacent clusters of a group go out as one slice.
    for (let i = 0; i < groups.length; i++) {
      const mask = masks[i]!;
      if (mask === 0) continue;
      const group = groups[i]!;
      const content = source.readGroup(group);
      if (content.length !== GROUP_BYTES) throw new RangeError(`group ${group} is ${content.length} bytes`);
      const past = virtualSize - group * GROUP_BYTES;
      if (past < GROUP_BYTES) content.fill(0, Math.max(0, past));
      for (let c = 0; c < GROUP_CLUSTERS;) {
        if ((mask & (1 << c)) === 0) {
          c += 1;
          continue;
        }
        let end = c + 1;
        while (end < GROUP_CLUSTERS && (mask & (1 << end)) !== 0) end += 1;
        yield content.subarray(c * CS, end * CS);
        c = end;
      }
    }
  }
  return { byteLength: layout.totalClusters * CS, layout, chunks: { [Symbol.iterator]: chunks } };
}

function header(virtualSize: number, layout: HostQcow2Layout, l1At: number): Buffer {
  const cluster = Buffer.alloc(CS);
  cluster.writeUInt32BE(QCOW_MAGIC, 0);
  cluster.writeUInt32BE(3, 4); // version
  // 8: backing file offset (8 bytes) and 16: its length: none
  cluster.writeUInt32BE(CLUSTER_BITS, 20);
  writeOffset(cluster, 24, Math.ceil(virtualSize / 512) * 512, false);
  // 32: crypt method 0
  cluster.writeUInt32BE(layout.l1Entries, 36);
  writeOffset(cluster, 40, layout.l1Clusters === 0 ? 0 : l1At * CS, false);
  writeOffset(cluster, 48, CS, false); // refcount table at cluster 1
  cluster.writeUInt32BE(layout.refcountTableClusters, 56);
  // 60: no snapshots, 64: snapshot table offset, 72/80/88: incompatible, compatible, autoclear features: 0
  cluster.writeUInt32BE(4, 96); // refcount order: 16-bit refcounts
  cluster.writeUInt32BE(HEADER_LENGTH, 100);
  // 104: compression type 0 (zlib) and padding to the header length
  let at = HEADER_LENGTH;
  cluster.writeUInt32BE(FEATURE_NAME_TABLE, at);
  cluster.writeUInt32BE(FEATURES.length * 48, at + 4);
  at += 8;
  for (const [type, bit, name] of FEATURES) {
    cluster.writeUInt8(type, at);
    cluster.writeUInt8(bit, at + 1);
    cluster.write(name, at + 2, 46, 'ascii');
    at += 48;
  }
  // at = 504: the end-of-extensions entry (type 0, length 0) is already zeros.
  return cluster;
}

/** An offset as a big-endian u64, with the "copied" flag (bit 63) for L1 and L2 entries. */
function writeOffset(buffer: Buffer, at: number, offset: number, copied: boolean): void {
  const high = Math.floor(offset / 2 ** 32);
  buffer.writeUInt32BE((copied ? 0x80000000 : 0) + high, at);
  buffer.writeUInt32BE(offset % 2 ** 32, at + 4);
}

function popcount(mask: number): number {
  let bits = mask >>> 0;
  let count = 0;
  while (bits !== 0) {
    bits &= bits - 1;
    count += 1;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------------------
// Import

/**
 * Why qcow-stream-tool gave up: `exception` is how the OCaml exception prints, e.g. `End_of_file` or
 * `Failure("...")`; the task's error is VDI_IO_ERROR ["qcow-stream-tool: internal error, uncaught exception: <exception>"].
 */
export class HostQcow2Error extends Error {
  readonly exception: string;

  constructor(exception: string) {
    super(exception);
    this.name = 'HostQcow2Error';
    this.exception = exception;
  }
}

function failure(message: string): HostQcow2Error {
  return new HostQcow2Error(`Failure(${JSON.stringify(message)})`);
}

/** Bounds before allocating from numbers read off the wire. */
const MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;

/** One data cluster as the importer writes it: whole, at its guest offset. */
export type WriteCluster = (guestOffset: number, bytes: Uint8Array) => void;

type Phase = 'header' | 'metadata' | 'data' | 'done';

/**
 * The importer, fed the body as it arrives. Forward only: the first 512 bytes are the header, the rest of
 * cluster 0 is skipped, then clusters are read in order through a cache (the refcount table, the L1 table,
 * each L2 table its L1 names: a table behind the read position must already be cached), and then the data
 * clusters, which must follow the last cluster read without a gap, in ascending file order. Each is written
 * whole at its guest offset; nothing else is written. Bytes after the last data cluster are ignored.
 */
export class HostQcow2Import {
  readonly #write: WriteCluster;
  readonly #decoder: Generator<number, void, Buffer>;
  #wanted: number;
  #pieces: Buffer[] = [];
  #gathered = 0;
  #phase: Phase = 'header';
  /** The importer's last_read_cluster: the read position, in clusters. */
  #lastRead = 0;
  readonly #cache = new Map<number, Buffer>();
  #virtualSize: number | undefined;

  constructor(write: WriteCluster) {
    this.#write = write;
    this.#decoder = this.#decode();
    const first = this.#decoder.next();
    this.#wanted = first.done === true ? 0 : first.value;
  }

  /** The header's virtual size, once the header is read. */
  get virtualSize(): number | undefined {
    return this.#virtualSize;
  }

  get finished(): boolean {
    return this.#phase === 'done';
  }

  write(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length && this.#phase !== 'done') {
      const take = Math.min(this.#wanted - this.#gathered, chunk.length - offset);
      this.#pieces.push(Buffer.from(chunk.buffer, chunk.byteOffset + offset, take));
      this.#gathered += take;
      offset += take;
      if (this.#gathered < this.#wanted) break;
      const bytes = this.#pieces.length === 1 ? Buffer.from(this.#pieces[0]!) : Buffer.concat(this.#pieces);
      this.#pieces = [];
      this.#gathered = 0;
      const next = this.#decoder.next(bytes);
      if (next.done === true) this.#phase = 'done';
      else this.#wanted = next.value;
    }
  }

  /**
   * The body ended. Within the header, or among the data clusters, that is End_of_file; anywhere between
   * (refcount, L1 or L2 tables) the tool exits 0 having written nothing: the defect docs/design.md names.
   */
  end(): void {
    if (this.#phase === 'header' || this.#phase === 'data') throw new HostQcow2Error('End_of_file');
  }

  *#decode(): Generator<number, void, Buffer> {
    const head = yield 512;
    const header = parseHeader(head);
    this.#virtualSize = header.size;
    const cs = 2 ** header.clusterBits;
    this.#phase = 'metadata';
    yield cs - 512; // the rest of cluster 0: read and dropped
    const entriesPerCluster = cs / 8;
    const bound = new ClusterBound(header, cs);
    const seen = new Map<number, number>(); // every cluster a table points at → the byte offset pointing at it

    const mark = (cluster: number, from: number, isTable: boolean): void => {
      if (cluster === 0) return;
      if (cluster > bound.max) {
        throw new HostQcow2Error(`Qcow_stream.Reference_outside_file(${from}, ${cluster * cs})`);
      }
      const earlier = seen.get(cluster);
      if (earlier !== undefined) {
        throw new HostQcow2Error(`Qcow_error.Duplicate_reference(${earlier}, ${from}, ${cluster})`);
      }
      if (isTable) bound.max += 1;
      seen.set(cluster, from);
    };

    // The refcount table: its entries name refcount blocks, which are counted but never read.
    const refcountStart = Math.floor(header.refcountTableOffset / cs);
    for (let i = 0; i < header.refcountTableClusters; i++) {
      const table = yield* this.#readCluster(refcountStart + i, cs);
      for (let e = 0; e < entriesPerCluster; e++) {
        mark(clusterOf(entry(table, e), cs), (refcountStart + i) * cs + e * 8, false);
      }
    }
    // The L1 table, and each L2 table it names, then the data map.
    const l1Start = Math.floor(header.l1TableOffset / cs);
    const l1Clusters = Math.ceil(header.l1Size / entriesPerCluster);
    const data = new Map<number, number>(); // file cluster → guest offset
    for (let t = 0; t < l1Clusters; t++) {
      const l1 = yield* this.#readCluster(l1Start + t, cs);
      bound.max += 1;
      for (let e = 0; e < entriesPerCluster; e++) {
        const l2Cluster = clusterOf(entry(l1, e), cs);
        if (l2Cluster === 0) continue;
        mark(l2Cluster, (l1Start + t) * cs + e * 8, true);
        const l2 = yield* this.#readCluster(l2Cluster, cs);
        const l1Index = t * entriesPerCluster + e;
        for (let i = 0; i < entriesPerCluster; i++) {
          const dataCluster = clusterOf(entry(l2, i), cs);
          if (dataCluster === 0) continue;
          mark(dataCluster, l2Cluster * cs + i * 8, false);
          data.set(dataCluster, (l1Index * entriesPerCluster + i) * cs);
        }
      }
    }
    this.#cache.clear();
    // Data: ascending file order, each right after the previous read.
    const order = [...data.keys()].sort((a, b) => a - b);
    if (order.length > 0) this.#phase = 'data';
    for (const cluster of order) {
      if (cluster !== this.#lastRead + 1) {
        throw failure(
          `read_cluster_stream: can't read non-sequential clusters (last_read_cluster:${this.#lastRead}, i: ${cluster})`,
        );
      }
      this.#lastRead = cluster;
      const bytes = yield cs;
      this.#write(data.get(cluster)!, bytes);
    }
    this.#phase = 'done';
  }

  /** A metadata cluster through the tool's cache: read forward to it (caching what passes), or cached. */
  *#readCluster(cluster: number, cs: number): Generator<number, Buffer, Buffer> {
    const cached = this.#cache.get(cluster);
    if (cached !== undefined) return cached;
    // Behind the read position and not cached: the cache reads the next cluster and hands that back.
    const until = Math.max(cluster, this.#lastRead + 1);
    let bytes: Buffer | undefined;
    while (this.#lastRead < until) {
      bytes = yield cs;
      this.#lastRead += 1;
      this.#cache.set(this.#lastRead, bytes);
    }
    return bytes!;
  }
}

/** The cluster an L1/L2/refcount-table entry points at; compressed descriptors are refused. */
function clusterOf(value: { high: number; low: number }, cs: number): number {
  if (value.high === 0 && value.low === 0) return 0;
  if ((value.high & 0x40000000) !== 0) throw new HostQcow2Error('Qcow_stream.Compressed_unsupported');
  const offset = (value.high & 0x00ffffff) * 2 ** 32 + (value.low >>> 0);
  return Math.floor(offset / cs);
}

function entry(table: Buffer, index: number): { high: number; low: number } {
  return { high: table.readUInt32BE(index * 8), low: table.readUInt32BE(index * 8 + 4) };
}

/**
 * The tool's bound on cluster indexes while streaming: the guest clusters plus the refcount table and
 * whatever lies between it and the L1 table, grown by one for each L1 and L2 table cluster it meets.
 */
class ClusterBound {
  max: number;
  constructor(header: Qcow2Header, cs: number) {
    const refcountStart = Math.floor(header.refcountTableOffset / cs);
    const l1Start = Math.floor(header.l1TableOffset / cs);
    const gap = l1Start - (refcountStart + header.refcountTableClusters);
    this.max = Math.ceil(header.size / cs) + header.refcountTableClusters + gap;
  }
}

interface Qcow2Header {
  readonly version: number;
  readonly clusterBits: number;
  readonly size: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly refcountTableOffset: number;
  readonly refcountTableClusters: number;
}

const INCOMPATIBLE_DIRTY = 1;
const INCOMPATIBLE_CORRUPT = 2;
const INCOMPATIBLE_DATA_FILE = 4;
const INCOMPATIBLE_COMPRESSION = 8;
const INCOMPATIBLE_EXTENDED_L2 = 16;

/** The header as the tool reads it from the first 512 bytes: what it refuses, what it lets pass. */
function parseHeader(bytes: Buffer): Qcow2Header {
  if (bytes.readUInt32BE(0) !== QCOW_MAGIC) {
    throw failure(`Expected qcow2 magic 0x514649fb, got 0x${bytes.readUInt32BE(0).toString(16)}`);
  }
  const version = bytes.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw failure(`Unsupported qcow2 version ${version}`);
  const clusterBits = bytes.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw failure(`Unsupported cluster_bits ${clusterBits}`);
  const size = Number(bytes.readBigUInt64BE(24));
  const cryptMethod = bytes.readUInt32BE(32);
  if (cryptMethod !== 0) {
    throw failure(
      `Encrypted images are not supported (crypt_method ${cryptMethod === 2 ? 'LUKS' : cryptMethod})`,
    );
  }
  const l1Size = bytes.readUInt32BE(36);
  if (l1Size > MAX_L1_ENTRIES) throw failure(`L1 table of ${l1Size} entries is too large`);
  // Backing file (8, 16) and internal snapshots (60, 64) are not looked at.
  if (version === 3) {
    const incompatible = bytes.readBigUInt64BE(72);
    const headerLength = bytes.readUInt32BE(100);
    const compressionType = headerLength > 104 ? bytes.readUInt8(104) : 0;
    const known = BigInt(
      INCOMPATIBLE_DIRTY |
        INCOMPATIBLE_CORRUPT |
        INCOMPATIBLE_DATA_FILE |
        INCOMPATIBLE_COMPRESSION |
        INCOMPATIBLE_EXTENDED_L2,
    );
    if ((incompatible & BigInt(INCOMPATIBLE_DATA_FILE)) !== 0n) {
      throw failure('External data files are not supported');
    }
    if ((incompatible & BigInt(INCOMPATIBLE_COMPRESSION)) !== 0n || compressionType !== 0) {
      throw failure(`Compression type ${compressionType === 1 ? 'zstd' : compressionType} is not supported`);
    }
    if ((incompatible & BigInt(INCOMPATIBLE_EXTENDED_L2)) !== 0n) {
      throw failure('Extended L2 entries are not supported');
    }
    if ((incompatible & ~known) !== 0n)
      throw failure(`Unknown incompatible features 0x${incompatible.toString(16)}`);
    const autoclear = bytes.readBigUInt64BE(88);
    if (autoclear !== 0n) throw failure(`Unsupported autoclear features 0x${autoclear.toString(16)}`);
    // Dirty and corrupt bits: let pass.
  }
  return {
    version,
    clusterBits,
    size,
    l1Size,
    l1TableOffset: Number(bytes.readBigUInt64BE(40)),
    refcountTableOffset: Number(bytes.readBigUInt64BE(48)),
    refcountTableClusters: bytes.readUInt32BE(56),
  };
}
