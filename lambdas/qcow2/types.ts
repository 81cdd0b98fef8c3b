import type { ClusterBitmap } from './bitmap.ts';

/** A sparse disk to serialise in the host's layout. */
export interface SparseClusterSource {
  /** Bytes; a multiple of 512. */
  readonly virtualSize: number;
  /**
   * Present guest clusters, ascending, each below ceil(virtualSize / 64 KiB). Iterated more than once
   * (an array or a ClusterBitmap, not a generator).
   */
  readonly presentClusters: Iterable<number>;
  /**
   * Exactly 64 KiB (the last cluster of a disk whose size is not a multiple of 64 KiB is zero padded).
   * Called once per present cluster, in ascending order, as the stream is consumed.
   */
  readCluster(index: number): Uint8Array | Promise<Uint8Array>;
}

export interface Qcow2Cluster {
  /** Guest cluster index: the cluster holds guest bytes index × 64 KiB onwards. */
  readonly index: number;
  /** 64 KiB; empty when the parser keeps no data. */
  readonly data: Uint8Array;
  readonly fileOffset: number;
}

/** Known once the L2 tables are read, before the first data cluster. */
export interface Qcow2HeaderInfo {
  readonly virtualSize: number;
  readonly clusterCount: number;
  readonly presentClusters: ClusterBitmap;
  /** Where the data starts and the whole stream ends. */
  readonly dataOffset: number;
  readonly byteLength: number;
}

export interface Qcow2Summary {
  readonly virtualSize: number;
  readonly clusterSize: number;
  readonly clusterCount: number;
  readonly presentClusters: number;
  readonly bytesRead: number;
}
