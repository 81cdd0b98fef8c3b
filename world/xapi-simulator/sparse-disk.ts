import { createHash } from 'node:crypto';

export const BLOCK_SIZE = 2 * 1024 * 1024;
const SECTOR = 512;
/** A qcow2 image's cluster (64 KiB): the granularity at which a qcow2-backed VDI allocates. */
export const CLUSTER_SIZE = 64 * 1024;
export const CLUSTERS_PER_BLOCK = BLOCK_SIZE / CLUSTER_SIZE;
/** Every cluster of a block: bit c is cluster c. */
export const ALL_CLUSTERS = 0xffffffff;

/**
 * One 2 MiB block version. Blocks are immutable and shared by identity between a VDI and its snapshots
 * (copy-on-write): a write makes a new block, so "which blocks changed since the base snapshot" is a
 * comparison of identities, at the host's 2 MiB granularity. `data` holds written bytes; `pattern`
 * blocks are generated on demand so big benchmark disks cost no memory.
 */
export interface Block {
  readonly id: number;
  readonly data?: Uint8Array;
  readonly pattern?: BlockPattern;
  /**
   * Per 64 KiB cluster, the id of the block version whose write last touched it (0: never written): what a
   * qcow2 image's metadata calls allocated, and, compared with a base's, which clusters a write changed.
   * Absent: every cluster belongs to this version (the filled part of a pattern block).
   */
  readonly clusters?: Uint32Array;
}

export interface BlockPattern {
  readonly seed: number;
  /** Bytes from the block start that carry pattern data; the rest are zeros (a half-used filesystem block). */
  readonly filled: number;
}

let nextBlockId = 1;

function newBlock(content: { data?: Uint8Array; pattern?: BlockPattern }): Block {
  return { id: nextBlockId++, ...content };
}

/** The block's per-cluster versions (see Block.clusters); a fresh array. */
function clusterVersions(block: Block): Uint32Array {
  if (block.clusters !== undefined) return new Uint32Array(block.clusters);
  const versions = new Uint32Array(CLUSTERS_PER_BLOCK);
  const used = block.pattern === undefined ? BLOCK_SIZE : block.pattern.filled;
  versions.fill(block.id, 0, Math.min(CLUSTERS_PER_BLOCK, Math.ceil(used / CLUSTER_SIZE)));
  return versions;
}

/** The clusters a byte range [from, to) of a block touches, as a mask. */
export function clusterMask(from: number, to: number): number {
  let mask = 0;
  for (let c = Math.floor(from / CLUSTER_SIZE); c * CLUSTER_SIZE < to; c++) mask |= 1 << c;
  return mask;
}

/** A sparse virtual disk: absent blocks read as zeros. */
export class SparseDisk {
  readonly virtualSize: number;
  readonly #blocks: Map<number, Block>;

  constructor(virtualSize: number, blocks?: ReadonlyMap<number, Block>) {
    this.virtualSize = virtualSize;
    this.#blocks = new Map(blocks);
  }

  get blockCount(): number {
    return Math.ceil(this.virtualSize / BLOCK_SIZE);
  }

  /** A snapshot shares every block with its source; later writes to either side diverge. */
  clone(): SparseDisk {
    return new SparseDisk(this.virtualSize, this.#blocks);
  }

  /** Ascending indexes of allocated blocks. */
  allocatedIndexes(): number[] {
    return [...this.#blocks.keys()].sort((a, b) => a - b);
  }

  block(index: number): Block | undefined {
    return this.#blocks.get(index);
  }

  /** The block's 2 MiB of content (a fresh copy: callers may keep or modify it). */
  readBlock(index: number): Uint8Array {
    const block = this.#blocks.get(index);
    return block === undefined ? new Uint8Array(BLOCK_SIZE) : materialise(block);
  }

  /** Allocates a block with generated content (seeding and benchmarks). */
  fillBlockWithPattern(index: number, pattern: BlockPattern): void {
    this.#checkIndex(index);
    this.#blocks.set(index, newBlock({ pattern }));
  }

  /**
   * Replaces a whole block with the given 2 MiB (taken, not copied). `touched` says which 64 KiB clusters
   * the write covered (default all): only those count as written by it (Block.clusters).
   */
  putBlock(index: number, data: Uint8Array, touched = ALL_CLUSTERS): void {
    this.#checkIndex(index);
    if (data.length !== BLOCK_SIZE)
      throw new RangeError(`a block is ${BLOCK_SIZE} bytes, got ${data.length}`);
    const previous = this.#blocks.get(index);
    const block = newBlock({ data });
    const versions = previous === undefined ? new Uint32Array(CLUSTERS_PER_BLOCK) : clusterVersions(previous);
    for (let c = 0; c < CLUSTERS_PER_BLOCK; c++) if ((touched & (1 << c)) !== 0) versions[c] = block.id;
    this.#blocks.set(index, { ...block, clusters: versions });
  }

  /** Per 64 KiB cluster of the block, the version that last wrote it (0: never): undefined for a hole. */
  clusterVersions(index: number): Uint32Array | undefined {
    const block = this.#blocks.get(index);
    return block === undefined ? undefined : clusterVersions(block);
  }

  /** Writes bytes at a byte offset, copy-on-write per touched block. */
  write(offset: number, bytes: Uint8Array): void {
    if (offset < 0 || offset + bytes.length > this.virtualSize) {
      throw new RangeError(
        `write of ${bytes.length} bytes at ${offset} is outside ${this.virtualSize} bytes`,
      );
    }
    let done = 0;
    while (done < bytes.length) {
      const position = offset + done;
      const index = Math.floor(position / BLOCK_SIZE);
      const within = position - index * BLOCK_SIZE;
      const length = Math.min(BLOCK_SIZE - within, bytes.length - done);
      const data = this.readBlock(index);
      data.set(bytes.subarray(done, done + length), within);
      this.putBlock(index, data, clusterMask(within, within + length));
      done += length;
    }
  }

  /**
   * The import rule of the host: only sectors whose bitmap bit is set (most significant bit first) are
   * written; every other sector of the block keeps what it had. `blockSize` is the VHD's block size.
   */
  writeMappedSectors(vhdBlockIndex: number, blockSize: number, bitmap: Uint8Array, data: Uint8Array): void {
    const base = vhdBlockIndex * blockSize;
    const sectors = Math.min(blockSize, this.virtualSize - base) / SECTOR; // sectors past the end are dropped
    const runs: [number, number][] = [];
    for (let sector = 0; sector < sectors;) {
      if (!bitIsSet(bitmap, sector)) {
        sector += 1;
        continue;
      }
      let end = sector + 1;
      while (end < sectors && bitIsSet(bitmap, end)) end += 1;
      runs.push([sector, end]);
      sector = end;
    }
    if (blockSize !== BLOCK_SIZE) {
      for (const [from, to] of runs)
        this.write(base + from * SECTOR, data.subarray(from * SECTOR, to * SECTOR));
      return;
    }
    if (runs.length === 0) return;
    // One copy-on-write per block, however many runs the bitmap has.
    const merged = this.readBlock(vhdBlockIndex);
    let touched = 0;
    for (const [from, to] of runs) {
      merged.set(data.subarray(from * SECTOR, to * SECTOR), from * SECTOR);
      touched |= clusterMask(from * SECTOR, to * SECTOR);
    }
    this.putBlock(vhdBlockIndex, merged, touched);
  }

  read(offset: number, length: number): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new RangeError(`read of ${length} bytes at ${offset} is outside ${this.virtualSize} bytes`);
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / BLOCK_SIZE);
      const within = position - index * BLOCK_SIZE;
      const count = Math.min(BLOCK_SIZE - within, length - done);
      const block = this.#blocks.get(index);
      if (block !== undefined) out.set(materialise(block).subarray(within, within + count), done);
      done += count;
    }
    return out;
  }

  /** sha256 (hex) of the whole raw content: exactly virtualSize bytes, holes as zeros. */
  sha256(): string {
    const hash = createHash('sha256');
    const zeros = new Uint8Array(BLOCK_SIZE);
    for (let index = 0; index < this.blockCount; index++) {
      const length = Math.min(BLOCK_SIZE, this.virtualSize - index * BLOCK_SIZE);
      const block = this.#blocks.get(index);
      hash.update((block === undefined ? zeros : materialise(block)).subarray(0, length));
    }
    return hash.digest('hex');
  }

  /**
   * sha256 (hex) of the content, sparse: the virtual size, then each block that is not all zeros with its
   * index. Equal for two disks exactly when their raw content is equal (a block allocated as zeros and a
   * hole read alike), and it costs the allocated blocks only: a 3 TiB disk's raw sha256 hashes 3 TiB.
   */
  sparseSha256(): string {
    const hash = createHash('sha256');
    const word = Buffer.alloc(8);
    word.writeBigUInt64BE(BigInt(this.virtualSize));
    hash.update(word);
    for (const index of this.allocatedIndexes()) {
      const data = materialise(this.#blocks.get(index)!);
      if (data.every((byte) => byte === 0)) continue;
      word.writeBigUInt64BE(BigInt(index));
      hash.update(word);
      hash.update(data.subarray(0, Math.min(BLOCK_SIZE, this.virtualSize - index * BLOCK_SIZE)));
    }
    return hash.digest('hex');
  }

  /** Blocks of `this` whose identity differs from `base`'s (absent on one side counts as different). */
  changedSince(base: SparseDisk): number[] {
    const changed = new Set<number>();
    for (const [index, block] of this.#blocks) if (base.block(index) !== block) changed.add(index);
    // A block the base has and this disk lacks reads as zeros here: the delta must carry those zeros.
    for (const index of base.allocatedIndexes()) {
      if (index < this.blockCount && !this.#blocks.has(index)) changed.add(index);
    }
    return [...changed].sort((a, b) => a - b);
  }

  #checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.blockCount) {
      throw new RangeError(`block ${index} is outside a disk of ${this.blockCount} blocks`);
    }
  }
}

function bitIsSet(bitmap: Uint8Array, bit: number): boolean {
  return ((bitmap[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0;
}

function materialise(block: Block): Uint8Array {
  if (block.data !== undefined) return new Uint8Array(block.data);
  return patternBlock(block.pattern!);
}

// Generated content: a slice of a fixed pseudo-random pool chosen by the seed, stamped with the seed so
// no two blocks are equal. Copying is far cheaper than running a generator over 2 MiB.
let randomPool: Uint8Array | undefined;

function pool(): Uint8Array {
  if (randomPool !== undefined) return randomPool;
  const words = new Uint32Array((2 * BLOCK_SIZE) / 4);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  randomPool = new Uint8Array(words.buffer);
  return randomPool;
}

export function patternBlock(pattern: BlockPattern): Uint8Array {
  const start = ((pattern.seed >>> 0) % (BLOCK_SIZE / 8)) * 8;
  const out = pool().slice(start, start + BLOCK_SIZE);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) view.setUint32(i * 4, pattern.seed >>> 0);
  if (pattern.filled < BLOCK_SIZE) out.fill(0, Math.max(0, pattern.filled));
  return out;
}

/** A 32-bit seed mixed from a text and numbers (FNV-1a then a finaliser): deterministic content per VDI. */
export function mixSeed(text: string, ...numbers: number[]): number {
  let h = 0x811c9dc5;
  const feed = (byte: number): void => {
    h ^= byte & 0xff;
    h = Math.imul(h, 0x01000193);
  };
  for (let i = 0; i < text.length; i++) feed(text.charCodeAt(i));
  for (const n of numbers) for (let s = 0; s < 32; s += 8) feed(n >>> s);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}
