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

interface LayerMap {
  readonly layer: RestoreLayer;
  readonly map: VhdBlockMap;
}

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

/**
 * One disk image made of a chain: each present block comes from the newest layer holding it, fetched with
 * a ranged GET when the writer asks for it (one block in memory, plus one prefetched). Host exports carry
 * whole 2 MiB blocks (every bitmap bit set), so the newest block replaces the older ones entirely.
 */
export async function mergedBlockSource(
  s3: S3Client,
  bucket: string,
  layers: readonly RestoreLayer[],
): Promise<SparseBlockSource & { readonly layersByBlock: ReadonlyMap<number, string> }> {
  const maps: LayerMap[] = [];
  for (const layer of layers) {
    const map = await readVhdBlockMap(
      (start, length) => readRange(s3, bucket, layer.objectKey, start, length),
      layer.bytes,
    );
    if (map.blockSize !== VHD_BLOCK_SIZE) {
      throw new CatalogError(
        `${layer.objectKey}: block size ${map.blockSize}, merge needs ${VHD_BLOCK_SIZE}; use strategy "replay"`,
      );
    }
    maps.push({ layer, map });
  }
  const newest = new Map<number, LayerMap>();
  for (const entry of maps) for (const index of entry.map.blocks.keys()) newest.set(index, entry);
  const blockIndexes = [...newest.keys()].sort((a, b) => a - b);

  const fetchBlock = async (index: number): Promise<Uint8Array> => {
    const { layer, map } = newest.get(index)!;
    const offset = map.blocks.get(index)!;
    const bytes = await readRange(s3, bucket, layer.objectKey, offset, map.bitmapSize + map.blockSize);
    const bitmap = bytes.subarray(0, map.bitmapSize);
    if (!bitmapMarksEverySector(bitmap, map.blockSize)) {
      throw new CatalogError(`${layer.objectKey}: block ${index} is partial (bitmap); use strategy "replay"`);
    }
    return bytes.subarray(map.bitmapSize);
  };
  // Keeps the next block's GET in flight while the current one is sent.
  let prefetch: { index: number; data: Promise<Uint8Array> } | undefined;
  const position = new Map(blockIndexes.map((index, i) => [index, i]));
  return {
    virtualSize: maps.at(-1)!.map.virtualSize,
    blockIndexes,
    layersByBlock: new Map([...newest].map(([index, entry]) => [index, entry.layer.backupId])),
    async readBlock(index) {
      const data = prefetch?.index === index ? prefetch.data : fetchBlock(index);
      const next = blockIndexes[(position.get(index) ?? -1) + 1];
      prefetch = next === undefined ? undefined : { index: next, data: fetchBlock(next) };
      // An unawaited prefetch that fails is reported when (if) its block is read.
      prefetch?.data.catch(() => undefined);
      return data;
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
  const chain = [];
  for (const layer of layers) {
    const read = (start: number, length: number) => readRange(s3, bucket, layer.objectKey, start, length);
    chain.push({ map: await readQcow2ClusterMap(read, layer.bytes, { virtualSize }), read });
  }
  return mergeQcow2Layers(chain);
}
