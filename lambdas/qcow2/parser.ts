import { CLUSTER_SIZE, QCOW2_MAGIC } from './constants.ts';
import { Qcow2MagicError, Qcow2TrailingDataError, Qcow2TruncatedError } from './errors.ts';
import { decodeHeader } from './header.ts';
import { mayBeStatusLine, statusLineIn } from './http-page.ts';
import type { Qcow2Layout } from './layout.ts';
import { Qcow2TableCheck } from './tables.ts';
import type { Qcow2Cluster, Qcow2HeaderInfo, Qcow2Summary } from './types.ts';

export interface Qcow2StreamParserOptions {
  /** Default true. False: validate only and never assemble cluster data (pass-through use); `data` is empty. */
  readonly keepClusterData?: boolean;
  /**
   * The size the disk must have (the VDI's virtual size). qcow2 has no checksum: without it, a damaged
   * size field that keeps the L1 size parses as a disk of another size.
   */
  readonly virtualSize?: number;
}

type Region = 'header' | 'refcount table' | 'refcount block' | 'L1 table' | 'L2 table' | 'data' | 'end';

const NO_DATA = new Uint8Array(0);
/** Bytes after the end collected to tell an appended HTTP error page from other trailing bytes. */
const TAIL_LIMIT = 256;
/** Last bytes kept to find a page appended after a partial image (xapi's pages are a few hundred bytes). */
const WINDOW = 4096;
const MAGIC = Buffer.alloc(4);
MAGIC.writeUInt32BE(QCOW2_MAGIC);

/**
 * Forward-only push parser of the host's qcow2 layout (docs/design.md § QCOW2 stream): header, refcount
 * table, refcount blocks, L1, L2 tables, then the data clusters, contiguous in guest order, and nothing
 * after. Holds one metadata cluster (and the data cluster being read) plus one bit per guest cluster;
 * throws a Qcow2FormatError subclass at the first defect (and again on any later call).
 */
export class Qcow2StreamParser {
  readonly #keepData: boolean;
  readonly #expectedSize: number | undefined;
  #bytesRead = 0;
  #failure: unknown = undefined;

  /** Index of the cluster being read, and how many of its bytes arrived. */
  #cluster = 0;
  #filled = 0;
  readonly #metadata = new Uint8Array(CLUSTER_SIZE);
  #data: Uint8Array = NO_DATA;
  #check: Qcow2TableCheck | undefined;
  #layout: Qcow2Layout | undefined;
  #header: Qcow2HeaderInfo | undefined;
  #dataIndexes: Iterator<number> | undefined;
  #dataIndex = -1;
  #tail: Uint8Array = NO_DATA;
  /** The last bytes seen and where they start, searched for an HTTP error page when the stream breaks off or runs long. */
  #window: Uint8Array = NO_DATA;
  #windowStart = 0;
  #summary: Qcow2Summary | undefined;

  constructor(options: Qcow2StreamParserOptions = {}) {
    this.#keepData = options.keepClusterData ?? true;
    this.#expectedSize = options.virtualSize;
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Available once the L2 tables are read (undefined before). */
  get header(): Qcow2HeaderInfo | undefined {
    return this.#header;
  }

  /** Feed the next chunk (any size); returns the data clusters this chunk completed. */
  write(chunk: Uint8Array): Qcow2Cluster[] {
    if (this.#failure !== undefined) throw this.#failure;
    const completed: Qcow2Cluster[] = [];
    try {
      this.#remember(chunk);
      this.#consume(chunk, completed);
    } catch (error) {
      this.#failure = error;
      throw error;
    }
    return completed;
  }

  /** Call when the stream ended; throws unless it ended exactly at the computed end. */
  end(): Qcow2Summary {
    if (this.#failure !== undefined) throw this.#failure;
    try {
      if (this.#tail.length > 0) throw this.#trailingError();
      if (this.#summary !== undefined) return this.#summary;
      if (this.#cluster === 0 && this.#filled > 0) this.#checkStart(true);
      throw this.#recentPage() ?? new Qcow2TruncatedError(this.#describe(), this.#bytesRead);
    } catch (error) {
      this.#failure = error;
      throw error;
    }
  }

  #consume(chunk: Uint8Array, completed: Qcow2Cluster[]): void {
    let position = 0;
    while (position < chunk.length) {
      if (this.#summary !== undefined) {
        this.#collectTail(chunk.subarray(position));
        return;
      }
      const taken = Math.min(CLUSTER_SIZE - this.#filled, chunk.length - position);
      const target = this.#region() === 'data' ? this.#data : this.#metadata;
      if (target !== NO_DATA) target.set(chunk.subarray(position, position + taken), this.#filled);
      this.#filled += taken;
      position += taken;
      this.#bytesRead += taken;
      if (this.#cluster === 0) this.#checkStart(false);
      if (this.#filled === CLUSTER_SIZE) this.#completeCluster(completed);
    }
  }

  /** What the cluster being read is, from what the tables read so far say. */
  #region(): Region {
    const c = this.#cluster;
    if (c === 0) return 'header';
    const check = this.#check!;
    const rt = check.header.refcountTableClusters;
    if (c <= rt) return 'refcount table';
    if (c < 1 + rt + check.refcountBlocks) return 'refcount block';
    if (c < check.l2Start) return 'L1 table';
    if (this.#layout === undefined) return 'L2 table';
    return c < this.#layout.totalClusters ? 'data' : 'end';
  }

  #completeCluster(completed: Qcow2Cluster[]): void {
    const region = this.#region();
    const check = this.#check;
    const c = this.#cluster;
    switch (region) {
      case 'header':
        this.#check = new Qcow2TableCheck(decodeHeader(this.#metadata, this.#expectedSize));
        break;
      case 'refcount table':
        check!.refcountTable(this.#metadata, c - 1);
        break;
      case 'refcount block':
        check!.refcountBlock(this.#metadata, c - 1 - check!.header.refcountTableClusters);
        break;
      case 'L1 table':
        check!.l1(this.#metadata, c - (check!.l2Start - check!.l1Clusters));
        break;
      case 'L2 table':
        check!.l2(this.#metadata, c - check!.l2Start);
        break;
      case 'data':
        completed.push({ index: this.#dataIndex, data: this.#data, fileOffset: c * CLUSTER_SIZE });
        break;
      case 'end':
        break;
    }
    this.#cluster += 1;
    this.#filled = 0;
    const tablesRead =
      region !== 'header' && region !== 'refcount table' && this.#cluster >= check!.l2Start + check!.l2Tables;
    if (this.#layout === undefined && tablesRead) this.#finishTables();
    if (this.#layout !== undefined) this.#beginData();
  }

  #finishTables(): void {
    const check = this.#check!;
    const layout = check.finish(true);
    this.#layout = layout;
    this.#header = {
      virtualSize: layout.virtualSize,
      clusterCount: layout.clusterCount,
      presentClusters: check.present,
      dataOffset: layout.dataStart * CLUSTER_SIZE,
      byteLength: layout.totalClusters * CLUSTER_SIZE,
    };
    this.#dataIndexes = check.present[Symbol.iterator]();
  }

  /** Sets up the next data cluster, or the summary once the last one is read. */
  #beginData(): void {
    const layout = this.#layout!;
    if (this.#cluster < layout.totalClusters) {
      this.#dataIndex = this.#dataIndexes!.next().value as number;
      this.#data = this.#keepData ? new Uint8Array(CLUSTER_SIZE) : NO_DATA;
      return;
    }
    this.#data = NO_DATA;
    this.#summary = {
      virtualSize: layout.virtualSize,
      clusterSize: CLUSTER_SIZE,
      clusterCount: layout.clusterCount,
      presentClusters: layout.dataClusters,
      bytesRead: this.#bytesRead,
    };
  }

  /** A body that does not start with the magic: an HTTP error page when it reads as one. */
  #checkStart(atEnd: boolean): void {
    const seen = this.#metadata.subarray(0, this.#filled);
    const magic = seen.subarray(0, 4);
    if (Buffer.compare(magic, MAGIC.subarray(0, magic.length)) === 0) return;
    if (mayBeStatusLine(seen)) {
      const complete = atEnd || seen.includes(0x0a) || seen.length >= TAIL_LIMIT;
      if (!complete) return;
      const page = statusLineIn(seen, 0);
      if (page !== undefined) throw page;
    }
    throw new Qcow2MagicError(
      `the stream starts with ${JSON.stringify(Buffer.from(magic).toString('latin1'))}, not "QFI\\xfb"`,
      0,
    );
  }

  #collectTail(bytes: Uint8Array): void {
    const room = TAIL_LIMIT - this.#tail.length;
    const tail = new Uint8Array(this.#tail.length + Math.min(room, bytes.length));
    tail.set(this.#tail);
    tail.set(bytes.subarray(0, room), this.#tail.length);
    this.#tail = tail;
    this.#bytesRead += bytes.length;
    if (!mayBeStatusLine(tail) || tail.includes(0x0a) || tail.length >= TAIL_LIMIT) {
      throw this.#trailingError();
    }
  }

  #trailingError(): Error {
    const end = this.#summary!.bytesRead;
    return (
      statusLineIn(this.#tail, end) ??
      this.#recentPage() ??
      new Qcow2TrailingDataError(`bytes follow the end of the image at ${end}`, end)
    );
  }

  #remember(chunk: Uint8Array): void {
    const end = this.#windowStart + this.#window.length + chunk.length;
    const kept = Math.min(WINDOW, this.#window.length + chunk.length);
    const window = new Uint8Array(kept);
    const fromChunk = Math.min(kept, chunk.length);
    window.set(this.#window.subarray(this.#window.length - (kept - fromChunk)));
    window.set(chunk.subarray(chunk.length - fromChunk), kept - fromChunk);
    this.#window = window;
    this.#windowStart = end - kept;
  }

  /** An HTTP status line in the last bytes: the host appended its error page where the data broke off. */
  #recentPage(): Error | undefined {
    return statusLineIn(this.#window, this.#windowStart);
  }

  #describe(): string {
    const region = this.#region();
    const at = this.#cluster * CLUSTER_SIZE;
    const progress = `${this.#filled} of ${CLUSTER_SIZE} bytes`;
    switch (region) {
      case 'header':
        return `the header (${progress})`;
      case 'data':
        return `the data of cluster ${this.#dataIndex} at byte ${at} (${progress})`;
      default:
        return `the ${region} cluster at byte ${at} (${progress})`;
    }
  }
}
