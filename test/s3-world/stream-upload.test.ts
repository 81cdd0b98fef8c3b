/**
 * uploadStream, the export's multipart upload, against Swift: stored bytes equal the stream's whatever
 * its chunking, in as many parts as the part size makes (S3's part count in the ETag), and a stream or a
 * part that fails ends the upload with its error, leaving no object and no open upload.
 */
import { AbortMultipartUploadCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadStream } from '../../lambdas/s3/stream-upload.ts';
import {
  createTestBucket,
  deleteTestBucket,
  listKeys,
  listOpenMultipartUploads,
  readObject,
  s3World,
  sha256Hex,
} from '../world/s3.ts';
import { patternBytes, streamOf } from './bodies.ts';

const MiB = 1024 * 1024;
const { client } = s3World();
let bucket: string;

beforeAll(async () => {
  bucket = await createTestBucket(client, 'stream-upload');
});
afterAll(async () => {
  await deleteTestBucket(client, bucket);
});

describe('uploadStream', () => {
  it.each([
    ['uneven chunks', 64 * 1024 + 7],
    ['chunks larger than a part', 7 * MiB + 3],
  ])('stores a 23 MiB stream of %s byte for byte in 5 MiB parts, 2 in flight', async (_name, chunk) => {
    const data = patternBytes(23 * MiB + 123, chunk);
    const key = `object-${chunk}`;
    const result = await uploadStream({
      s3: client,
      bucket,
      key,
      body: streamOf(data, chunk),
      partSize: 5 * MiB,
      partsInFlight: 2,
    });
    expect(result).toEqual({ bytes: data.length, parts: 5 });
    expect(sha256Hex(await readObject(client, bucket, key))).toBe(sha256Hex(data));
    // Swift reports a multipart object's part count in its ETag ("…-5").
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ETag).toMatch(/-5"$/);
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
  });

  it('a stream that fails midway aborts the upload: no object, no open upload, the stream’s error', async () => {
    async function* failing() {
      yield patternBytes(12 * MiB);
      throw new Error('the host’s body broke');
    }
    await expect(
      uploadStream({
        s3: client,
        bucket,
        key: 'broken',
        body: failing(),
        partSize: 5 * MiB,
        partsInFlight: 2,
      }),
    ).rejects.toThrow('the host’s body broke');
    expect(await listKeys(client, bucket, 'broken')).toEqual([]);
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
  });

  it('a part S3 refuses stops the stream being read and fails the upload, leaving nothing', async () => {
    let chunksRead = 0;
    const key = 'refused';
    async function* endless() {
      for (;;) {
        chunksRead++;
        // Once two parts' worth went out, the upload disappears under us: every later part is refused.
        if (chunksRead === 11) {
          for (const upload of await listOpenMultipartUploads(client, bucket)) {
            await client.send(
              new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
            );
          }
        }
        yield patternBytes(MiB, chunksRead);
      }
    }
    await expect(
      uploadStream({ s3: client, bucket, key, body: endless(), partSize: 5 * MiB, partsInFlight: 2 }),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    // The pool holds 3 parts: at most that much more is read after the refusal before reading stops.
    expect(chunksRead).toBeLessThanOrEqual(11 + 3 * 5 + 1);
    expect(await listKeys(client, bucket, key)).toEqual([]);
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
  });
});
