import { ClusterBitmap } from './bitmap.ts';
import { CLUSTER_SIZE, ENTRIES_PER_CLUSTER, REFCOUNTS_PER_BLOCK } from './constants.ts';
import {
  Qcow2DataOrderError,
  Qcow2HeaderError,
  Qcow2L2OrderError,
  Qcow2RefcountError,
  Qcow2TableEntryError,
} from './errors.ts';
import type { Qcow2Header } from './header.ts';
import { HEADER_FIELD_OFFSETS } from './header.ts';
import { qcow2Layout } from './layout.ts';
import type { Qcow2Layout } from './layout.ts';

const TWO_32 = 2 ** 32;
const COPIED_HIGH = 0x80000000;

/**
 * Checks the tables that follow the header, one cluster at a time in file order, against the host's
 * layout: the refcount table, the refcount blocks (optional: a reader that knows the file's size may skip
 * them), the L1 table and the L2 tables. Keeps a counter per table and one bit per guest cluster.
 */
export class Qcow2TableCheck {
  readonly header: Qcow2Header;
  /** Present guest clusters, filled by the L2 tables. */
  readonly present: ClusterBitmap;
  #refcountBlocks = -1;
  #refcountedClusters = 0;
  #refcountsEnded = false;
  /** L1 index of each L2 table, in file order. */
  readonly #l2Owners: number[] = [];
  #dataClusters = 0;

  constructor(header: Qcow2Header) {
    this.header = header;
    this.present = new ClusterBitmap(header.clusterCount);
  }

  /** Refcount blocks the refcount table points at (known once the table is read). */
  get refcountBlocks(): number {
    return this.#refcountBlocks;
  }

  get l1Clusters(): number {
    return Math.ceil(this.header.l1Size / ENTRIES_PER_CLUSTER);
  }

  /** L2 tables the L1 table points at (known once it is read). */
  get l2Tables(): number {
    return this.#l2Owners.length;
  }

  get l2Start(): number {
    return 1 + this.header.refcountTableClusters + this.#refcountBlocks + this.l1Clusters;
  }

  /** Cluster `index` of the refcount table: block offsets one after another from cluster 1 + rt, then 0. */
  refcountTable(cluster: Uint8Array, index: number): void {
    const view = bufferOf(cluster);
    const rt = this.header.refcountTableClusters;
    const start = (1 + index) * CLUSTER_SIZE;
    for (let i = 0; i < ENTRIES_PER_CLUSTER; i++) {
      const entry = index * ENTRIES_PER_CLUSTER + i;
      const value = readEntry(view, i * 8);
      if (this.#refcountBlocks < 0 && value === 0) this.#refcountBlocks = entry;
      const expected = this.#refcountBlocks < 0 ? (1 + rt + entry) * CLUSTER_SIZE : 0;
      if (value !== expected) {
        const found = value < 0 ? `0x${view.readBigUInt64BE(i * 8).toString(16)}` : value;
        throw new Qcow2RefcountError(
          `refcount table entry ${entry} is ${found}, the host writes ${expected}`,
          start + i * 8,
        );
      }
    }
    if (index < rt - 1) return;
    if (this.#refcountBlocks < 0) this.#refcountBlocks = rt * ENTRIES_PER_CLUSTER;
    if (this.#refcountBlocks === 0) {
      throw new Qcow2RefcountError('the refcount table points at no refcount block', CLUSTER_SIZE);
    }
    const expected = this.l1Clusters === 0 ? 0 : (1 + rt + this.#refcountBlocks) * CLUSTER_SIZE;
    if (this.header.l1TableOffset !== expected) {
      throw new Qcow2HeaderError(
        'l1_table_offset',
        `${this.header.l1TableOffset}, the L1 table follows the refcount blocks at ${expected}`,
        HEADER_FIELD_OFFSETS.l1TableOffset,
      );
    }
  }

  /** Refcount block `index`: 1 for every cluster of the file, then 0. */
  refcountBlock(cluster: Uint8Array, index: number): void {
    const view = bufferOf(cluster);
    const start = (1 + this.header.refcountTableClusters + index) * CLUSTER_SIZE;
    for (let i = 0; i < REFCOUNTS_PER_BLOCK; i++) {
      const value = view.readUInt16BE(i * 2);
      if (!this.#refcountsEnded && value === 0) this.#refcountsEnded = true;
      if (value !== (this.#refcountsEnded ? 0 : 1)) {
        throw new Qcow2RefcountError(
          `the refcount of cluster ${index * REFCOUNTS_PER_BLOCK + i} is ${value}: the host writes 1 ` +
            'for each cluster of the file, then 0',
          start + i * 2,
        );
      }
      if (!this.#refcountsEnded) this.#refcountedClusters += 1;
    }
  }

  /** Cluster `index` of the L1 table: each present entry is the next L2 table, with the copied flag. */
  l1(cluster: Uint8Array, index: number): void {
    const view = bufferOf(cluster);
    const start = this.header.l1TableOffset + index * CLUSTER_SIZE;
    for (let i = 0; i < ENTRIES_PER_CLUSTER; i++) {
      const entry = index * ENTRIES_PER_CLUSTER + i;
      const at = start + i * 8;
      const high = view.readUInt32BE(i * 8);
      const low = view.readUInt32BE(i * 8 + 4);
      if (high === 0 && low === 0) continue;
      if (entry >= this.header.l1Size) {
        throw new Qcow2TableEntryError(`L1 entry ${entry} is set, past l1_size ${this.header.l1Size}`, at);
      }
      const expected = (this.l2Start + this.#l2Owners.length) * CLUSTER_SIZE;
      if (!matchesPointer(high, low, expected)) {
        checkEntryBits(high, low, `L1 entry ${entry}`, at, false);
        throw new Qcow2L2OrderError(
          `L1 entry ${entry} points at byte ${pointerOf(high, low)}, the next L2 table is at ${expected}`,
          at,
        );
      }
      this.#l2Owners.push(entry);
    }
  }

  /** The `index`-th L2 table in file order: each present entry is the next data cluster. */
  l2(cluster: Uint8Array, index: number): void {
    const view = bufferOf(cluster);
    const start = (this.l2Start + index) * CLUSTER_SIZE;
    const firstGuest = this.#l2Owners[index]! * ENTRIES_PER_CLUSTER;
    const dataStart = this.l2Start + this.#l2Owners.length;
    for (let i = 0; i < ENTRIES_PER_CLUSTER; i++) {
      const high = view.readUInt32BE(i * 8);
      const low = view.readUInt32BE(i * 8 + 4);
      if (high === 0 && low === 0) continue;
      const guest = firstGuest + i;
      const at = start + i * 8;
      if (guest >= this.header.clusterCount) {
        throw new Qcow2TableEntryError(
          `the L2 entry of cluster ${guest} is set, past the disk's ${this.header.clusterCount} clusters`,
          at,
        );
      }
      const expected = (dataStart + this.#dataClusters) * CLUSTER_SIZE;
      if (!matchesPointer(high, low, expected)) {
        checkEntryBits(high, low, `the L2 entry of cluster ${guest}`, at, true);
        throw new Qcow2DataOrderError(
          `the L2 entry of cluster ${guest} points at byte ${pointerOf(high, low)}, the next data ` +
            `cluster is at ${expected}`,
          at,
        );
      }
      this.present.set(guest);
      this.#dataClusters += 1;
    }
  }

  /**
   * All tables read: the refcount table and blocks must be the host's fixed point for what the L1 and L2
   * tables describe, and, when the blocks were read, count exactly the clusters of that file.
   */
  finish(refcountsRead: boolean): Qcow2Layout {
    const layout = qcow2Layout(this.header.virtualSize, this.#l2Owners.length, this.#dataClusters);
    if (layout.refcountTableClusters !== this.header.refcountTableClusters) {
      throw new Qcow2HeaderError(
        'refcount_table_clusters',
        `${this.header.refcountTableClusters}, a file of ${layout.totalClusters} clusters needs ` +
          `${layout.refcountTableClusters}`,
        HEADER_FIELD_OFFSETS.refcountTableClusters,
      );
    }
    if (layout.refcountBlocks !== this.#refcountBlocks) {
      throw new Qcow2RefcountError(
        `the refcount table points at ${this.#refcountBlocks} blocks, a file of ` +
          `${layout.totalClusters} clusters needs ${layout.refcountBlocks}`,
        CLUSTER_SIZE + Math.min(layout.refcountBlocks, this.#refcountBlocks) * 8,
      );
    }
    if (refcountsRead && layout.totalClusters !== this.#refcountedClusters) {
      const first = Math.min(layout.totalClusters, this.#refcountedClusters);
      throw new Qcow2RefcountError(
        `the refcount blocks count ${this.#refcountedClusters} clusters, the tables describe a file of ` +
          `${layout.totalClusters}`,
        layout.refcountBlockStart * CLUSTER_SIZE + first * 2,
      );
    }
    this.present.freeze();
    return layout;
  }
}

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A table entry as a number (entries of the host stay far below 2^53; larger ones read as -1). */
function readEntry(view: Buffer, at: number): number {
  const high = view.readUInt32BE(at);
  return high >= 0x200000 ? -1 : high * TWO_32 + view.readUInt32BE(at + 4);
}

function matchesPointer(high: number, low: number, offset: number): boolean {
  return low === offset % TWO_32 && high === (COPIED_HIGH | Math.floor(offset / TWO_32)) >>> 0;
}

/** Bits 0-55 of an entry without its flags. */
function pointerOf(high: number, low: number): number {
  return (high & 0x00ffffff) * TWO_32 + low;
}

/** Names what is wrong with an entry's bits beyond a wrong offset; returns when only the offset is. */
function checkEntryBits(high: number, low: number, what: string, at: number, isL2: boolean): void {
  const problems: string[] = [];
  if (isL2 && (high & 0x40000000) !== 0) problems.push('the compressed flag');
  if (isL2 && (low & 1) !== 0) problems.push('the zero flag');
  if ((high & COPIED_HIGH) === 0) problems.push('no copied flag');
  if ((high & (isL2 ? 0x3f000000 : 0x7f000000)) !== 0) problems.push('reserved bits 56-62');
  if ((low & 0xffff & ~(isL2 ? 1 : 0)) !== 0) problems.push('an offset not on a 64 KiB cluster');
  if (problems.length === 0) return;
  const value = `0x${high.toString(16).padStart(8, '0')}${low.toString(16).padStart(8, '0')}`;
  throw new Qcow2TableEntryError(`${what} is ${value}: ${problems.join(', ')}`, at);
}
