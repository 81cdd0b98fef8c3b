import { CATALOG_READS_IN_FLIGHT, mapConcurrently } from '../shared/concurrently.ts';
import {
  GetObjectCommand,
  HeadObjectCommand,
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
  const prefix = seriesPrefix(location, pool, vdiUuid);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: location.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** Every committed restore point of one VDI, oldest first. */
export async function listManifests(
  s3: S3Client,
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
): Promise<Manifest[]> {
  const keys = (await listSeriesKeys(s3, location, pool, vdiUuid)).filter((key) => key.endsWith('.json'));
  return mapConcurrently(keys, CATALOG_READS_IN_FLIGHT, (key) => readManifest(s3, location.bucket, key));
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
