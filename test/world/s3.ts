/**
 * Test helpers over S3, for the server global-setup.ts provides (Swift's s3api) or any other endpoint.
 * Everything takes the client as an argument so the same helpers work against the embedded server too.
 */
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import type { MultipartUpload, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { createS3Client } from '../../lambdas/s3/client.ts';
import type { S3Endpoint } from '../../lambdas/s3/client.ts';

export interface S3TestWorld {
  /** A client for the test server (path-style, WHEN_REQUIRED checksums). */
  readonly client: S3Client;
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** The same coordinates as `createS3Client` takes them, to hand to the code under test. */
  readonly target: S3Endpoint;
}

/** The S3 server of this test run (see global-setup.ts), with a client for it. */
export function s3World(): S3TestWorld {
  const { endpoint, region, accessKeyId, secretAccessKey } = inject('s3');
  const target: S3Endpoint = { endpoint, region, credentials: { accessKeyId, secretAccessKey } };
  return {
    client: createS3Client(target),
    endpoint,
    region,
    credentials: { accessKeyId, secretAccessKey },
    target,
  };
}

/** Creates a bucket with a unique, DNS-compliant name starting with `prefix`; returns the name. */
export async function createTestBucket(client: S3Client, prefix = 'test'): Promise<string> {
  const clean =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'test';
  const unique = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const bucket = `${clean.slice(0, 63 - unique.length - 1)}-${unique}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Aborts open multipart uploads, deletes every object, then the bucket. Missing bucket: no-op. */
export async function deleteTestBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    for (const upload of await listOpenMultipartUploads(client, bucket)) {
      await client.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
      );
    }
    // One by one: DeleteObjects needs Content-MD5 on Swift, which WHEN_REQUIRED clients don't send.
    for (const key of await listKeys(client, bucket)) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchBucket') return;
    throw error;
  }
}

/** Every multipart upload still open in the bucket (under `prefix`), across all pages. */
export async function listOpenMultipartUploads(
  client: S3Client,
  bucket: string,
  prefix?: string,
): Promise<MultipartUpload[]> {
  const uploads: MultipartUpload[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  while (true) {
    const page = await client.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      }),
    );
    uploads.push(...(page.Uploads ?? []));
    if (!page.IsTruncated) return uploads;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
}

/** Every key in the bucket under `prefix`, in S3's (byte) order, across all pages. */
export async function listKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return keys;
}

/** The object's bytes, in memory: for small objects. */
export async function readObject(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (Body === undefined) throw new Error(`s3://${bucket}/${key} has no body`);
  return Buffer.from(await Body.transformToByteArray());
}

/** Hex sha256 of the object, streamed (fine for large objects). */
export async function sha256OfObject(client: S3Client, bucket: string, key: string): Promise<string> {
  const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (Body === undefined) throw new Error(`s3://${bucket}/${key} has no body`);
  const hash = createHash('sha256');
  for await (const chunk of Body as Readable) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Hex sha256 of bytes in memory, to compare with `sha256OfObject`. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
