import { CATALOG_READS_IN_FLIGHT, mapConcurrently } from '../shared/concurrently.ts';
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { CatalogError, parseManifest, type Manifest } from './manifest.ts';
import { manifestKey, seriesPrefix, type CatalogLocation } from './keys.ts';

/** Every key under one VDI's series prefix (manifests, objects), paginated. */
export async function listSeriesKeys(
  s3: S3Client,
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
): Promise<string[]> {
  return listKeysUnder(s3, location.bucket, seriesPrefix(location, pool, vdiUuid));
}

/** Every key under a prefix, sorted (so backup ids come oldest first). */
export async function listKeysUnder(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  return [...(await listSizesUnder(s3, bucket, prefix)).keys()];
}

/** Every object under a prefix with its size in bytes, sorted by key. */
export async function listSizesUnder(
  s3: S3Client,
  bucket: string,
  prefix: string,
): Promise<Map<string, number>> {
  const sizes: [string, number][] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) if (object.Key) sizes.push([object.Key, object.Size ?? 0]);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return new Map(sizes.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Every committed restore point of one VDI, oldest first. */
export async function listManifests(
  s3: S3Client,
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
): Promise<Manifest[]> {
  return (await listSeries(s3, location, pool, vdiUuid)).manifests;
}

/**
 * One VDI's series: its committed restore points, oldest first, and the size of every object the same
 * listing found (S3 lists with strong consistency, so a size from it is as good as a HEAD, without one
 * request per object: design.md § The catalog in S3).
 */
export async function listSeries(
  s3: S3Client,
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
): Promise<{ manifests: Manifest[]; sizes: ReadonlyMap<string, number> }> {
  const sizes = await listSizesUnder(s3, location.bucket, seriesPrefix(location, pool, vdiUuid));
  const keys = [...sizes.keys()].filter((key) => key.endsWith('.json'));
  const manifests = await mapConcurrently(keys, CATALOG_READS_IN_FLIGHT, (key) =>
    readManifest(s3, location.bucket, key),
  );
  return { manifests, sizes };
}

export async function readManifest(s3: S3Client, bucket: string, key: string): Promise<Manifest> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = (await object.Body?.transformToString('utf8')) ?? '';
  return parseManifest(text, key);
}

/**
 * Commits a backup: checks that its object is there with the recorded size, then writes the manifest.
 * The manifest goes last, so a manifest never points at an incomplete object.
 */
export async function commitManifest(
  s3: S3Client,
  location: CatalogLocation,
  manifest: Manifest,
): Promise<string> {
  const head = await s3.send(new HeadObjectCommand({ Bucket: location.bucket, Key: manifest.objectKey }));
  if (head.ContentLength !== manifest.bytes) {
    throw new CatalogError(
      `object ${manifest.objectKey} holds ${String(head.ContentLength)} bytes, the export sent ${manifest.bytes}: not committing`,
    );
  }
  const key = manifestKey(location, manifest.pool, manifest.vdiUuid, manifest.backupId);
  await s3.send(
    new PutObjectCommand({
      Bucket: location.bucket,
      Key: key,
      Body: JSON.stringify(manifest, null, 2),
      ContentType: 'application/json',
    }),
  );
  return key;
}

/** Aborts every open multipart upload under a key prefix (a Lambda killed mid-export leaves one behind). */
export async function abortUploads(s3: S3Client, bucket: string, prefix: string): Promise<number> {
  let aborted = 0;
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    const page = await s3.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      }),
    );
    for (const upload of page.Uploads ?? []) {
      if (!upload.Key?.startsWith(prefix) || !upload.UploadId) continue;
      await s3.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
      );
      aborted++;
    }
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
  } while (keyMarker);
  return aborted;
}

/**
 * Checks the newest backup's chain (newest first): every object must be there with its recorded size (in
 * `sizes`, the series' listing).
 * Layers that can't be restored any more (a missing object, and everything built on it) have their
 * manifests moved aside to `<id>.json.broken`, so the catalog only lists restorable points; the reason is
 * returned and the next backup is a full.
 */
export async function quarantineBrokenChain(
  s3: S3Client,
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
  chain: readonly Manifest[],
  sizes: ReadonlyMap<string, number>,
): Promise<string | undefined> {
  const bucket = location.bucket;
  let broken = -1;
  let reason: string | undefined;
  const intact = chain.map((manifest) => sizes.get(manifest.objectKey) === manifest.bytes);
  // The newest broken layer decides: everything from the full up to it depended on it.
  for (let i = chain.length - 1; i >= 0 && broken < 0; i--) {
    if (!intact[i]) {
      const manifest = chain[i]!;
      broken = i;
      reason = `object ${manifest.objectKey} of backup ${manifest.backupId} is missing or has the wrong size`;
    }
  }
  if (broken < 0 && chain.at(-1)?.kind !== 'full') {
    broken = chain.length - 1;
    reason = `backup ${chain.at(-1)?.backupId ?? '?'} has no full under it in the catalog`;
  }
  for (const manifest of chain.slice(0, broken + 1)) {
    const key = manifestKey(location, pool, vdiUuid, manifest.backupId);
    await s3.send(
      new CopyObjectCommand({ Bucket: bucket, Key: `${key}.broken`, CopySource: `${bucket}/${key}` }),
    );
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }
  return reason && `${reason}; moved aside ${broken + 1} manifest(s) that depended on it (*.json.broken)`;
}
