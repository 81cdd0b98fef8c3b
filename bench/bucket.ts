import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { vhdContentDigest } from './content.ts';
import { GetObjectCommand } from '@aws-sdk/client-s3';

/** A bucket of our own for one bench run, so nothing it writes mixes with the tests' buckets. */
export async function createBenchBucket(s3: S3Client): Promise<string> {
  const bucket = `vdi-vault-bench-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Deletes every object (and open upload) under `prefix`: big exports must not pile up in Swift. */
export async function emptyPrefix(s3: S3Client, bucket: string, prefix = ''): Promise<void> {
  for (;;) {
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
    for (const upload of uploads.Uploads ?? []) {
      await s3.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
      );
    }
    if (!uploads.IsTruncated) break;
  }
  for (;;) {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    // One by one: DeleteObjects needs Content-MD5 on Swift, which WHEN_REQUIRED clients don't send.
    for (const object of page.Contents ?? []) {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
    }
    if (!page.IsTruncated) break;
  }
}

export async function deleteBenchBucket(s3: S3Client, bucket: string): Promise<void> {
  await emptyPrefix(s3, bucket);
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
}

/** vhdContentDigest of what S3 holds under `key`, streamed: what a run stored, read back outside its timing. */
export async function vhdDigestOfStored(s3: S3Client, bucket: string, key: string): Promise<string> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const digest = vhdContentDigest(object.ContentLength ?? 0);
  for await (const chunk of object.Body as AsyncIterable<Uint8Array>) digest.update(chunk);
  return digest.digest();
}
