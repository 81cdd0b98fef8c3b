/**
 * Proves the Swift world behaves like S3 where our code depends on it: stored bytes equal sent bytes,
 * aborts leave nothing behind, and the server enforces what a fake would let slide.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patternBytes, streamOf } from './bodies.ts';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  createTestBucket,
  deleteTestBucket,
  listKeys,
  listOpenMultipartUploads,
  readObject,
  s3World,
  sha256Hex,
  sha256OfObject,
} from '../world/s3.ts';

const MiB = 1024 * 1024;
const { client } = s3World();
let bucket: string;

beforeAll(async () => {
  bucket = await createTestBucket(client, 's3-world');
});
afterAll(async () => {
  await deleteTestBucket(client, bucket);
});

async function uploadSmallParts(key: string, sizes: number[]): Promise<string> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const parts = [];
  for (const [index, size] of sizes.entries()) {
    const PartNumber = index + 1;
    const { ETag } = await client.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber, Body: patternBytes(size) }),
    );
    parts.push({ PartNumber, ETag });
  }
  await expect(
    client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: parts },
      }),
    ),
  ).rejects.toMatchObject({ name: 'EntityTooSmall' });
  return UploadId!;
}

describe('Swift s3api', () => {
  it('stores a streamed 3-part Upload byte for byte, with a multipart ETag', async () => {
    const data = patternBytes(2 * 5 * MiB + 123_457);
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: 'upload/three-parts.bin', Body: streamOf(data) },
      partSize: 5 * MiB,
      queueSize: 2,
    });
    const result = await upload.done();

    expect(result.ETag).toMatch(/^"[0-9a-f]{32}-3"$/);
    expect(await sha256OfObject(client, bucket, 'upload/three-parts.bin')).toBe(sha256Hex(data));
    expect((await readObject(client, bucket, 'upload/three-parts.bin')).length).toBe(data.length);
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
  });

  it('leaves no multipart upload behind when an Upload fails mid-stream', async () => {
    const failing = Readable.from(
      (async function* () {
        yield patternBytes(6 * MiB);
        throw new Error('source went away');
      })(),
    );
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: 'upload/failed.bin', Body: failing },
      partSize: 5 * MiB,
    });
    await expect(upload.done()).rejects.toThrow('source went away');

    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
    expect(await listKeys(client, bucket, 'upload/failed')).toEqual([]);
  });

  it('lists an open multipart upload, and forgets it once aborted', async () => {
    const Key = 'abort/me.bin';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    await client.send(
      new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: patternBytes(5 * MiB) }),
    );
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([
      expect.objectContaining({ Key, UploadId }),
    ]);

    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));

    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
    await expect(client.send(new ListPartsCommand({ Bucket: bucket, Key, UploadId }))).rejects.toMatchObject({
      name: 'NoSuchUpload',
    });
    expect(await listKeys(client, bucket, 'abort/')).toEqual([]);
  });

  it('refuses to complete an upload whose non-last part is under 5 MiB', async () => {
    const uploadId = await uploadSmallParts('small/parts.bin', [5 * MiB - 1, 1024]);
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'small/parts.bin', UploadId: uploadId }),
    );
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
  });

  it("accepts part numbers up to AWS's 10,000 and refuses 10,001", async () => {
    const Key = 'limits/parts.bin';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    try {
      await client.send(
        new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 10_000, Body: 'x' }),
      );
      await expect(
        client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 10_001, Body: 'x' })),
      ).rejects.toMatchObject({ name: 'InvalidArgument' });
    } finally {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    }
  });

  it('checks Content-MD5', async () => {
    const body = Buffer.from('checked bytes\n');
    const rightMd5 = createHash('md5').update(body).digest('base64');
    const wrongMd5 = createHash('md5').update('other bytes').digest('base64');

    await expect(
      client.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'md5/wrong', Body: body, ContentMD5: wrongMd5 }),
      ),
    ).rejects.toMatchObject({ name: 'BadDigest' });
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'md5/right', Body: body, ContentMD5: rightMd5 }),
    );

    expect(await listKeys(client, bucket, 'md5/')).toEqual(['md5/right']);
    expect(await readObject(client, bucket, 'md5/right')).toEqual(body);
  });
});
