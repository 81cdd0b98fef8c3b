/** Words of the rank directory: one running count per this many 32-bit words (1024 bits). */
const RANK_STRIDE = 32;

function popcount(word: number): number {
  let w = word - ((word >>> 1) & 0x55555555);
  w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
  return (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/**
 * One bit per guest cluster: which clusters an image holds. Iterates its set bits in ascending order (so
 * it serves as `presentClusters` of a SparseClusterSource) and answers ranks once `freeze` built a small
 * directory (one 32-bit count per 1024 clusters).
 */
export class ClusterBitmap implements Iterable<number> {
  readonly size: number;
  readonly #words: Uint32Array;
  #count = 0;
  #ranks: Uint32Array | undefined;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bitmap size ${size}`);
    this.size = size;
    this.#words = new Uint32Array(Math.ceil(size / 32));
  }

  /** Set bits. */
  get count(): number {
    return this.#count;
  }

  has(index: number): boolean {
    return index >= 0 && index < this.size && (this.#words[index >>> 5]! & (1 << (index & 31))) !== 0;
  }

  set(index: number): void {
    if (this.#ranks !== undefined) throw new Error('the bitmap is frozen');
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new RangeError(`cluster ${index} is outside 0..${this.size - 1}`);
    }
    if (this.has(index)) return;
    this.#words[index >>> 5]! |= 1 << (index & 31);
    this.#count += 1;
  }

  /** Sets every bit of `other` below this bitmap's size. */
  or(other: ClusterBitmap): void {
    for (const index of other) {
      if (index >= this.size) return;
      this.set(index);
    }
  }

  /** Ends changes and builds the rank directory. */
  freeze(): this {
    if (this.#ranks !== undefined) return this;
    const ranks = new Uint32Array(Math.ceil(this.#words.length / RANK_STRIDE) + 1);
    let total = 0;
    for (let word = 0; word < this.#words.length; word++) {
      if (word % RANK_STRIDE === 0) ranks[word / RANK_STRIDE] = total;
      total += popcount(this.#words[word]!);
    }
    this.#ranks = ranks;
    return this;
  }

  /** Set bits below `index` (frozen bitmaps only). */
  rank(index: number): number {
    const ranks = this.#ranks;
    if (ranks === undefined) throw new Error('rank needs a frozen bitmap');
    const word = index >>> 5;
    let total = ranks[Math.floor(word / RANK_STRIDE)]!;
    for (let w = word - (word % RANK_STRIDE); w < word; w++) total += popcount(this.#words[w]!);
    const below = (1 << (index & 31)) - 1;
    return total + popcount((this.#words[word] ?? 0) & below);
  }

  *[Symbol.iterator](): Iterator<number> {
    const words = this.#words;
    for (let word = 0; word < words.length; word++) {
      let bits = words[word]!;
      while (bits !== 0) {
        const lowest = bits & -bits;
        yield word * 32 + 31 - Math.clz32(lowest);
        bits ^= lowest;
      }
    }
  }
}
