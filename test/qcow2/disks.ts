import { CLUSTER_SIZE, Qcow2StreamParser, writeQcow2 } from '../../lambdas/qcow2/index.ts';
import type {
  Qcow2Cluster,
  Qcow2StreamParserOptions,
  Qcow2Summary,
  SparseClusterSource,
} from '../../lambdas/qcow2/index.ts';
import { VHD_BLOCK_SIZE } from '../../lambdas/vhd/index.ts';
import { collect, makeDisk as makeVhdDisk } from '../vhd/disks.ts';

/** A small in-memory sparse disk with deterministic cluster contents. */
export interface TestDisk extends SparseClusterSource {
  readonly presentClusters: readonly number[];
  readonly clusters: ReadonlyMap<number, Uint8Array>;
}

/**
 * Each present cluster holds its part of the VHD tests' pseudo-random 2 MiB block pattern; bytes past the
 * virtual size are zero.
 */
export function makeDisk(virtualSize: number, presentClusters: readonly number[], seed = 1): TestDisk {
  const perBlock = VHD_BLOCK_SIZE / CLUSTER_SIZE;
  const blocks = [...new Set(presentClusters.map((index) => Math.floor(index / perBlock)))];
  const pattern = makeVhdDisk(Math.max(...blocks, 0) * VHD_BLOCK_SIZE + VHD_BLOCK_SIZE, blocks, seed);
  const clusters = new Map<number, Uint8Array>();
  for (const index of presentClusters) {
    const start = (index % perBlock) * CLUSTER_SIZE;
    const data = pattern.blocks.get(Math.floor(index / perBlock))!.slice(start, start + CLUSTER_SIZE);
    const used = virtualSize - index * CLUSTER_SIZE;
    if (used < CLUSTER_SIZE) data.fill(0, Math.max(0, used));
    clusters.set(index, data);
  }
  return { virtualSize, presentClusters, clusters, readCluster: (index) => clusters.get(index)! };
}

export async function qcow2Bytes(source: SparseClusterSource): Promise<Buffer> {
  return collect(writeQcow2(source).stream);
}

/** The disk's bytes as a raw image of exactly virtualSize bytes. */
export function rawImage(disk: TestDisk): Buffer {
  return imageOf(
    [...disk.clusters].map(([index, data]) => ({ index, data })),
    disk.virtualSize,
  );
}

/** The raw image that clusters describe: each present cluster's data at its index, zeros elsewhere. */
export function imageOf(
  clusters: readonly Pick<Qcow2Cluster, 'index' | 'data'>[],
  virtualSize: number,
): Buffer {
  const image = Buffer.alloc(virtualSize);
  for (const { index, data } of clusters) {
    const start = index * CLUSTER_SIZE;
    image.set(data.subarray(0, Math.min(CLUSTER_SIZE, virtualSize - start)), start);
  }
  return image;
}

export interface ParseResult {
  readonly clusters: Qcow2Cluster[];
  readonly summary: Qcow2Summary;
}

/** Runs the push parser over the given chunks and ends it; throws what the parser throws. */
export function parseChunks(chunks: Iterable<Uint8Array>, options?: Qcow2StreamParserOptions): ParseResult {
  const parser = new Qcow2StreamParser(options);
  const clusters: Qcow2Cluster[] = [];
  for (const chunk of chunks) clusters.push(...parser.write(chunk));
  return { clusters, summary: parser.end() };
}

/** The error the parser throws on these chunks, or undefined when they parse. */
export function parseError(chunks: Iterable<Uint8Array>, options?: Qcow2StreamParserOptions): unknown {
  try {
    parseChunks(chunks, { ...options, keepClusterData: false });
    return undefined;
  } catch (error) {
    return error;
  }
}
