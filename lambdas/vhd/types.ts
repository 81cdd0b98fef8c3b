export type VhdDiskType = 'dynamic' | 'differencing'; // footer disk type 3 / 4

/** A sparse disk to serialise: present blocks in ascending index order. */
export interface SparseBlockSource {
  /** Bytes; a multiple of 512. */
  readonly virtualSize: number;
  /** Ascending, each < ceil(virtualSize / 2 MiB). */
  readonly blockIndexes: readonly number[];
  /**
   * Exactly VHD_BLOCK_SIZE bytes (the last block of a disk whose size is not a multiple of 2 MiB is still
   * a full 2 MiB block, zero padded). Called once per block, in order, as the stream is consumed.
   */
  readBlock(index: number): Uint8Array | Promise<Uint8Array>;
}

export interface VhdWriteOptions {
  readonly diskType: VhdDiskType;
  /** 16 bytes; default random. */
  readonly uniqueId?: Uint8Array;
  /** Default: now. */
  readonly timestamp?: Date;
}

export interface VhdBlock {
  readonly index: number;
  /**
   * The block's sector bitmap as read (512 bytes for 2 MiB blocks). The host and qemu-img mark every
   * sector; `bitmapMarksEverySector` tells whether the whole of `data` is meaningful.
   */
  readonly bitmap: Uint8Array;
  /** blockSize bytes (VHD_BLOCK_SIZE for the host and qemu-img); empty when the parser keeps no data. */
  readonly data: Uint8Array;
  /** Stream offset of the block's bitmap (its BAT entry × 512). */
  readonly fileOffset: number;
}

export interface VhdSummary {
  readonly virtualSize: number;
  readonly diskType: VhdDiskType;
  readonly blockSize: number;
  readonly presentBlocks: number;
  readonly bytesRead: number;
  /** 32 hex digits. */
  readonly uniqueId: string;
}

export interface VhdHeaderInfo {
  readonly virtualSize: number;
  readonly diskType: VhdDiskType;
  readonly blockSize: number;
  readonly maxTableEntries: number;
  readonly presentBlocks: number;
}
