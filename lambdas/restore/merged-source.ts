import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  bitmapMarksEverySector,
  readVhdBlockMap,
  VHD_BLOCK_SIZE,
  type SparseBlockSource,
  type VhdBlockMap,
} from '../vhd/index.ts';
import { CatalogError } from '../catalog/manifest.ts';
import { mergeQcow2Layers, readQcow2ClusterMap, type MergedClusterSource } from '../qcow2/index.ts';
import type { RestoreLayer } from './chain.ts';
import { CATALOG_READS_IN_FLIGHT, mapConcurrently } from '../shared/concurrently.ts';

interface LayerMap {
  readonly layer: RestoreLayer;
  readonly map: VhdBlockMap;
}

/**
 * A merged restore's read-ahead (docs/design.md § The catalog in S3): at most this many bytes fetched ahead of the
 * writer, in ranged GETs of at most MERGED_READ_RUN_BYTES, each joining a layer's adjacent blocks.
 */
export const MERGED_READ_AHEAD_BYTES = 32 * 1024 * 1024;
export const MERGED_READ_RUN_BYTES = 8 * 1024 * 1024;

export async function readRange(s3: S3Client, bucket: string, key: string, start: number, length: number) {
  const object = await s3.send(
    new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${start + length - 1}` }),
  );
  const bytes = await object.Body!.transformToByteArray();
  if (bytes.length !== length) {
    throw new CatalogError(`${key}: asked for ${length} bytes at ${start}, got ${bytes.length}`);
  }
  return bytes;
}

/** Blocks of one layer that lie back to back in its object: fetched with one ranged GET. */
interface ReadRun {
  readonly layer: LayerMap;
  readonly start: number;
  readonly blocks: number[];
  length: number;
  data?: Promise<Uint8Array>;
}

/**
 * One disk image made of a chain: each present block comes from the newest layer holding it. The layers'
 * block maps are read CATALOG_READS_IN_FLIGHT at a time; the blocks come by ranged GETs that join each
 * layer's adjacent blocks and run ahead of the writer, several in flight, within MERGED_READ_AHEAD_BYTES.
 * Host exports carry whole 2 MiB blocks (every bitmap bit set), so the newest block replaces the older
 * ones entirely.
 */
export async function mergedBlockSource(
  s3: S3Client,
  bucket: string,
  layers: readonly RestoreLayer[],
  readAhead: { readonly bytes: number; readonly runBytes: number } = {
    bytes: MERGED_READ_AHEAD_BYTES,
    runBytes: MERGED_READ_RUN_BYTES,
  },
): Promise<SparseBlockSource & { readonly layersByBlock: ReadonlyMap<number, string> }> {
  const maps: LayerMap[] = await mapConcurrently(layers, CATALOG_READS_IN_FLIGHT, async (layer) => {
    const map = await readVhdBlockMap(
      (start, length) => readRange(s3, bucket, layer.objectKey, start, length),
      layer.bytes,
    );
    if (map.blockSize !== VHD_BLOCK_SIZE) {
      throw new CatalogError(
        `${layer.objectKey}: block size ${map.blockSize}, merge needs ${VHD_BLOCK_SIZE}; use strategy "replay"`,
      );
    }
    return { layer, map };
  });
  const newest = new Map<number, LayerMap>();
  for (const entry of maps) for (const index of entry.map.blocks.keys()) newest.set(index, entry);
  const blockIndexes = [...newest.keys()].sort((a, b) => a - b);

  // The blocks in the writer's order, cut into runs: one layer's blocks that follow each other in the
  // image and lie back to back in its object, up to runBytes.
  const runs: ReadRun[] = [];
  const runOf = new Map<number, ReadRun>();
  for (const index of blockIndexes) {
    const layer = newest.get(index)!;
    const offset = layer.map.blocks.get(index)!;
    const regionBytes = layer.map.bitmapSize + layer.map.blockSize;
    const last = runs.at(-1);
    if (
      last?.layer === layer &&
      last.start + last.length === offset &&
      last.length + regionBytes <= Math.max(readAhead.runBytes, regionBytes)
    ) {
      last.blocks.push(index);
      last.length += regionBytes;
    } else {
      runs.push({ layer, start: offset, blocks: [index], length: regionBytes });
    }
    runOf.set(index, runs.at(-1)!);
  }

  // Runs [consumed, started) are in flight or held; each is dropped once its last block is handed out.
  let consumed = 0;
  let started = 0;
  let heldBytes = 0;
  const startRuns = () => {
    while (
      started < runs.length &&
      (started === consumed || heldBytes + runs[started]!.length <= readAhead.bytes)
    ) {
      const run = runs[started++]!;
      heldBytes += run.length;
      run.data = readRange(s3, bucket, run.layer.layer.objectKey, run.start, run.length);
      // A GET that fails ahead of the writer is reported when (if) its block is read.
      run.data.catch(() => undefined);
    }
  };
  const blockOf = (run: ReadRun, bytes: Uint8Array, index: number): Uint8Array => {
    const { map, layer } = run.layer;
    const at = run.blocks.indexOf(index) * (map.bitmapSize + map.blockSize);
    if (!bitmapMarksEverySector(bytes.subarray(at, at + map.bitmapSize), map.blockSize)) {
      throw new CatalogError(`${layer.objectKey}: block ${index} is partial (bitmap); use strategy "replay"`);
    }
    return bytes.subarray(at + map.bitmapSize, at + map.bitmapSize + map.blockSize);
  };
  return {
    virtualSize: maps.at(-1)!.map.virtualSize,
    blockIndexes,
    layersByBlock: new Map([...newest].map(([index, entry]) => [index, entry.layer.backupId])),
    async readBlock(index) {
      const run = runOf.get(index);
      if (!run || runs[consumed] !== run) {
        throw new Error(`merged source: block ${index} read out of order`);
      }
      startRuns();
      const block = blockOf(run, await run.data!, index);
      if (index === run.blocks.at(-1)) {
        run.data = undefined;
        heldBytes -= run.length;
        consumed++;
        startRuns();
      }
      return block;
    },
  };
}

/**
 * One qcow2 image made of a chain: each layer's cluster map read by ranged GETs of its tables (checked
 * against the chain's virtual size), then each present cluster from the newest layer holding it, zeros
 * included (docs/design.md § QCOW2 stream). Memory: one bit per cluster per layer, and one read-ahead run.
 */
export async function mergedClusterSource(
  s3: S3Client,
  bucket: string,
  layers: readonly RestoreLayer[],
  virtualSize: number,
): Promise<MergedClusterSource> {
  const chain = await mapConcurrently(layers, CATALOG_READS_IN_FLIGHT, async (layer) => {
    const read = (start: number, length: number) => readRange(s3, bucket, layer.objectKey, start, length);
    return { map: await readQcow2ClusterMap(read, layer.bytes, { virtualSize }), read };
  });
  return mergeQcow2Layers(chain);
}
