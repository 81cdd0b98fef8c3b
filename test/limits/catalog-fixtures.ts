/**
 * Catalogs built directly in S3, as the backup workflow would have left them: each object a real VHD from
 * our writer (the host's export layout), each manifest the very bytes `commitManifest` (what Commit runs)
 * writes for it. Far faster than running hundreds of backups.
 */
import { mapConcurrently } from '../../lambdas/shared/concurrently.ts';
import { createHash, randomUUID } from 'node:crypto';
import { DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listKeys } from '../world/s3.ts';
import { manifestKey, newBackupId, objectKey, type CatalogLocation } from '../../lambdas/catalog/keys.ts';
import { MANIFEST_FORMAT_VERSION, type Manifest } from '../../lambdas/catalog/manifest.ts';
import { VHD_BLOCK_SIZE, writeVhd } from '../../lambdas/vhd/index.ts';

/** One restore point to fabricate: the blocks its export carries (index → 2 MiB of data). */
export interface LayerSpec {
  readonly kind: 'full' | 'delta';
  readonly blocks: ReadonlyMap<number, Buffer>;
  /** The snapshot it was exported from. Default: a random uuid (a snapshot long gone from the host). */
  readonly snapshotUuid?: string;
}

export interface SeriesSpec {
  readonly catalog: CatalogLocation;
  readonly pool: string;
  readonly vdiUuid: string;
  readonly vdiNameLabel?: string;
  readonly virtualSize: number;
  /** Oldest (the full) first; each delta's parent is the layer before it. */
  readonly layers: readonly LayerSpec[];
  /** Time of the first backup; each next one `stepMs` later. */
  readonly firstAt: Date;
  readonly stepMs?: number;
  /** S3 requests in flight. Default 16. */
  readonly concurrency?: number;
}

/** 2 MiB of data that no other tag produces (a digest of the tag, repeated). */
export function blockContent(tag: string): Buffer {
  return Buffer.alloc(VHD_BLOCK_SIZE, createHash('sha256').update(tag).digest());
}

/** sha256 of the disk the chain describes, computed by applying every layer's blocks in order. */
export function expectedDiskSha256(virtualSize: number, layers: readonly LayerSpec[]): string {
  const disk = Buffer.alloc(virtualSize);
  for (const layer of layers) {
    for (const [index, data] of layer.blocks) {
      const offset = index * VHD_BLOCK_SIZE;
      data.copy(disk, offset, 0, Math.min(VHD_BLOCK_SIZE, virtualSize - offset));
    }
  }
  return createHash('sha256').update(disk).digest('hex');
}

/** Writes every layer's object, then its manifest; returns the manifests, oldest first. */
export async function fabricateSeries(s3: S3Client, spec: SeriesSpec): Promise<Manifest[]> {
  const step = spec.stepMs ?? 3_600_000;
  const ids = spec.layers.map((layer, i) =>
    newBackupId(new Date(spec.firstAt.getTime() + i * step), layer.kind),
  );
  const manifests = await mapConcurrently(spec.layers, spec.concurrency ?? 16, async (layer, i) => {
    const indexes = [...layer.blocks.keys()].sort((a, b) => a - b);
    const vhd = writeVhd(
      {
        virtualSize: spec.virtualSize,
        blockIndexes: indexes,
        readBlock: (index) => layer.blocks.get(index)!,
      },
      { diskType: layer.kind === 'full' ? 'dynamic' : 'differencing' },
    );
    const chunks: Uint8Array[] = [];
    for await (const chunk of vhd.stream) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    if (body.length !== vhd.byteLength)
      throw new Error(`writer made ${body.length} of ${vhd.byteLength} bytes`);
    const key = objectKey(spec.catalog, spec.pool, spec.vdiUuid, ids[i]!);
    await s3.send(new PutObjectCommand({ Bucket: spec.catalog.bucket, Key: key, Body: body }));
    const startedAt = new Date(spec.firstAt.getTime() + i * step);
    const manifest: Manifest = {
      formatVersion: MANIFEST_FORMAT_VERSION,
      backupId: ids[i]!,
      kind: layer.kind,
      parentBackupId: i === 0 || layer.kind === 'full' ? null : ids[i - 1]!,
      pool: spec.pool,
      vdiUuid: spec.vdiUuid,
      vdiNameLabel: spec.vdiNameLabel ?? 'fabricated disk',
      snapshotUuid: layer.snapshotUuid ?? randomUUID(),
      virtualSize: spec.virtualSize,
      objectKey: key,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      presentBlocks: indexes.length,
      startedAt: startedAt.toISOString(),
      endedAt: new Date(startedAt.getTime() + 1000).toISOString(),
      host: 'xcp-master',
      ...(layer.kind === 'full' ? { fullReason: i === 0 ? 'first backup' : `full every ${i} backups` } : {}),
    };
    // What commitManifest writes once the object is there (it HEADs the object first: known here).
    await s3.send(
      new PutObjectCommand({
        Bucket: spec.catalog.bucket,
        Key: manifestKey(spec.catalog, spec.pool, spec.vdiUuid, manifest.backupId),
        Body: JSON.stringify(manifest, null, 2),
        ContentType: 'application/json',
      }),
    );
    return manifest;
  });
  return manifests;
}

/** Deletes every key under `prefix`, many at once (the world's own clean-up deletes one at a time). */
export async function deleteKeys(s3: S3Client, bucket: string, prefix = '', concurrency = 16): Promise<void> {
  await mapConcurrently(await listKeys(s3, bucket, prefix), concurrency, (key) =>
    s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })),
  );
}
