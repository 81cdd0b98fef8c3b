/** The in-process s3rver the `npm start` demo uses: what the demo needs works on Node 24 without flags. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { startEmbeddedS3 } from '../world/embedded-s3.ts';
import type { EmbeddedS3 } from '../world/embedded-s3.ts';
import { createTestBucket, listKeys, readObject, sha256Hex, sha256OfObject } from '../world/s3.ts';

const MiB = 1024 * 1024;
let s3: EmbeddedS3;
let client: S3Client;
let bucket: string;

beforeAll(async () => {
  s3 = await startEmbeddedS3();
  client = createS3Client(s3);
  bucket = await createTestBucket(client, 'demo');
});
afterAll(async () => {
  client?.destroy();
  await s3?.close();
});

describe('embedded s3rver', () => {
  it('round-trips a 3-part Upload byte for byte', async () => {
    const data = Buffer.alloc(2 * 5 * MiB + 4321);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >>> 11)) & 0xff;

    await new Upload({
      client,
      params: { Bucket: bucket, Key: 'pool/vdi/full.vhd', Body: data },
      partSize: 5 * MiB,
    }).done();

    expect(await sha256OfObject(client, bucket, 'pool/vdi/full.vhd')).toBe(sha256Hex(data));
    expect((await readObject(client, bucket, 'pool/vdi/full.vhd')).length).toBe(data.length);
  });

  it('pages ListObjectsV2 (continuation tokens) without --openssl-legacy-provider', async () => {
    const keys = ['page/a', 'page/b', 'page/c', 'page/d', 'page/e'];
    for (const Key of keys) await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }));

    const first = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'page/', MaxKeys: 2 }),
    );
    expect(first.IsTruncated).toBe(true);
    const second = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: 'page/',
        MaxKeys: 2,
        ContinuationToken: first.NextContinuationToken,
      }),
    );
    expect(second.Contents?.map((object) => object.Key)).toEqual(['page/c', 'page/d']);
    expect(await listKeys(client, bucket, 'page/')).toEqual(keys);
  });
});
