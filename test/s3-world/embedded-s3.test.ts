/**
 * The in-process S3 server the `npm start` demo uses, through the real SDK client: what the product needs
 * from S3 (multipart rules, listing and aborting stale uploads, checksums) behaves as S3 does, and bytes
 * stream through it without being held in memory.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patternBytes, streamOf } from './bodies.ts';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { abortUploads } from '../../lambdas/catalog/catalog.ts';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { startEmbeddedS3 } from '../../world/embedded-s3.ts';
import type { EmbeddedS3 } from '../../world/embedded-s3.ts';
import { decodeAwsChunked } from '../../world/embedded-s3/body.ts';
import {
  createTestBucket,
  listKeys,
  listOpenMultipartUploads,
  readObject,
  sha256Hex,
  sha256OfObject,
} from '../world/s3.ts';

const MiB = 1024 * 1024;
let s3: EmbeddedS3;
let client: S3Client;
let bucket: string;

beforeAll(async () => {
  s3 = await startEmbeddedS3();
  client = createS3Client(s3);
  bucket = await createTestBucket(client, 'embedded');
});
afterAll(async () => {
  client?.destroy();
  await s3?.close();
});

const md5 = (data: Buffer | string) => createHash('md5').update(data).digest();
const crc32Base64 = (data: Buffer) => {
  const raw = Buffer.alloc(4);
  raw.writeUInt32BE(crc32(data));
  return raw.toString('base64');
};
/** S3's multipart ETag: the MD5 of the parts' MD5s, then `-<part count>`. */
const multipartEtag = (parts: Buffer[]) =>
  `"${md5(Buffer.concat(parts.map((p) => md5(p)))).toString('hex')}-${parts.length}"`;

async function uploadParts(Key: string, bodies: Buffer[]) {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
  const parts = [];
  for (const [index, Body] of bodies.entries()) {
    const PartNumber = index + 1;
    const { ETag } = await client.send(
      new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber, Body }),
    );
    parts.push({ PartNumber, ETag });
  }
  return { UploadId: UploadId!, parts };
}

function complete(Key: string, UploadId: string, Parts: { PartNumber: number; ETag?: string }[]) {
  return client.send(
    new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts } }),
  );
}

describe('embedded S3 server', () => {
  it('puts, gets (whole and ranged), heads and deletes an object', async () => {
    const Key = 'basic/hello.txt';
    const body = 'hello, world';
    const put = await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key,
        Body: body,
        ContentType: 'text/plain',
        Metadata: { pool: 'demo' },
      }),
    );
    expect(put.ETag).toBe(`"${md5(body).toString('hex')}"`);

    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key }));
    expect(await got.Body!.transformToString()).toBe(body);
    expect(got).toMatchObject({ ContentType: 'text/plain', Metadata: { pool: 'demo' }, ETag: put.ETag });

    const ranged = await client.send(new GetObjectCommand({ Bucket: bucket, Key, Range: 'bytes=7-11' }));
    expect(ranged.$metadata.httpStatusCode).toBe(206);
    expect(ranged.ContentRange).toBe('bytes 7-11/12');
    expect(await ranged.Body!.transformToString()).toBe('world');
    const suffix = await client.send(new GetObjectCommand({ Bucket: bucket, Key, Range: 'bytes=-5' }));
    expect(await suffix.Body!.transformToString()).toBe('world');
    const open = await client.send(new GetObjectCommand({ Bucket: bucket, Key, Range: 'bytes=7-' }));
    expect(await open.Body!.transformToString()).toBe('world');
    await expect(
      client.send(new GetObjectCommand({ Bucket: bucket, Key, Range: 'bytes=12-' })),
    ).rejects.toMatchObject({ name: 'InvalidRange', $metadata: { httpStatusCode: 416 } });

    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
    expect(head).toMatchObject({ ContentLength: 12, ETag: put.ETag, ContentType: 'text/plain' });

    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
    await expect(client.send(new GetObjectCommand({ Bucket: bucket, Key }))).rejects.toMatchObject({
      name: 'NoSuchKey',
      $metadata: { httpStatusCode: 404 },
    });
    await expect(client.send(new HeadObjectCommand({ Bucket: bucket, Key }))).rejects.toMatchObject({
      name: 'NotFound',
    });
    // Deleting what isn't there is still a success, as in S3.
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
  });

  it('pages ListObjectsV2 over 1,200 keys: continuation tokens, start-after, delimiter', async () => {
    const keys = Array.from({ length: 1200 }, (_, i) => `list/${'abc'[i % 3]}/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(
        keys
          .slice(i, i + 50)
          .map((Key) => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }))),
      );
    }
    const sorted = [...keys].sort();

    const first = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/' }));
    expect(first).toMatchObject({ KeyCount: 1000, MaxKeys: 1000, IsTruncated: true });
    expect(first.Contents!.map((o) => o.Key)).toEqual(sorted.slice(0, 1000));
    expect(first.Contents![0]).toMatchObject({
      Size: sorted[0]!.length,
      ETag: `"${md5(sorted[0]!).toString('hex')}"`,
    });
    const second = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: 'list/',
        ContinuationToken: first.NextContinuationToken,
      }),
    );
    expect(second).toMatchObject({ KeyCount: 200, IsTruncated: false });
    expect(second.NextContinuationToken).toBeUndefined();
    expect(second.Contents!.map((o) => o.Key)).toEqual(sorted.slice(1000));
    expect(await listKeys(client, bucket, 'list/')).toEqual(sorted);

    const after = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/', StartAfter: sorted[1150], MaxKeys: 10 }),
    );
    expect(after.Contents!.map((o) => o.Key)).toEqual(sorted.slice(1151, 1161));

    // A delimiter rolls keys up into common prefixes, which count toward max-keys and page like keys.
    const grouped = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/', Delimiter: '/', MaxKeys: 2 }),
    );
    expect(grouped).toMatchObject({ KeyCount: 2, IsTruncated: true });
    expect(grouped.Contents).toBeUndefined();
    expect(grouped.CommonPrefixes!.map((p) => p.Prefix)).toEqual(['list/a/', 'list/b/']);
    const rest = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: 'list/',
        Delimiter: '/',
        ContinuationToken: grouped.NextContinuationToken,
      }),
    );
    expect(rest).toMatchObject({ KeyCount: 1, IsTruncated: false });
    expect(rest.CommonPrefixes!.map((p) => p.Prefix)).toEqual(['list/c/']);
  });

  it('round-trips a ~40 MiB lib-storage Upload in 6 MiB parts, with S3’s multipart ETag', async () => {
    const data = patternBytes(40 * MiB + 12_345, 7);
    const result = await new Upload({
      client,
      params: { Bucket: bucket, Key: 'upload/forty.bin', Body: streamOf(data) },
      partSize: 6 * MiB,
      queueSize: 3,
    }).done();

    const parts = Array.from({ length: 7 }, (_, i) => data.subarray(i * 6 * MiB, (i + 1) * 6 * MiB));
    expect(result.ETag).toBe(multipartEtag(parts));
    expect(await sha256OfObject(client, bucket, 'upload/forty.bin')).toBe(sha256Hex(data));
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'upload/forty.bin' }));
    expect(head).toMatchObject({ ContentLength: data.length, ETag: result.ETag });
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([]);
  });

  it('enforces the multipart rules at complete: EntityTooSmall, InvalidPartOrder, InvalidPart', async () => {
    const Key = 'rules/parts.bin';
    const { UploadId, parts } = await uploadParts(Key, [
      patternBytes(5 * MiB - 1),
      patternBytes(5 * MiB),
      patternBytes(10),
    ]);
    await expect(complete(Key, UploadId, parts)).rejects.toMatchObject({
      name: 'EntityTooSmall',
      $metadata: { httpStatusCode: 400 },
    });
    await expect(complete(Key, UploadId, [parts[1]!, parts[0]!])).rejects.toMatchObject({
      name: 'InvalidPartOrder',
    });
    await expect(complete(Key, UploadId, [{ ...parts[0]!, ETag: parts[1]!.ETag }])).rejects.toMatchObject({
      name: 'InvalidPart',
    });
    await expect(complete(Key, UploadId, [{ PartNumber: 4, ETag: parts[0]!.ETag }])).rejects.toMatchObject({
      name: 'InvalidPart',
    });
    await expect(
      client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 10_001, Body: 'x' })),
    ).rejects.toMatchObject({ name: 'InvalidArgument' });
    // The parts may still be listed in a valid subset: 5 MiB then a short last part.
    await complete(Key, UploadId, [parts[1]!, parts[2]!]);
    const object = await readObject(client, bucket, Key);
    expect(object.equals(Buffer.concat([patternBytes(5 * MiB), patternBytes(10)]))).toBe(true);
    expect(await listOpenMultipartUploads(client, bucket, 'rules/')).toEqual([]);
  });

  it('lists parts; aborting answers 204, after which the upload is NoSuchUpload and no longer listed', async () => {
    const Key = 'abort/me.bin';
    const { UploadId } = await uploadParts(Key, [patternBytes(5 * MiB), patternBytes(1000)]);
    const listed = await client.send(new ListPartsCommand({ Bucket: bucket, Key, UploadId }));
    expect(listed.Parts!.map((p) => [p.PartNumber, p.Size])).toEqual([
      [1, 5 * MiB],
      [2, 1000],
    ]);
    const page = await client.send(new ListPartsCommand({ Bucket: bucket, Key, UploadId, MaxParts: 1 }));
    expect(page).toMatchObject({ IsTruncated: true, NextPartNumberMarker: '1' });

    const aborted = await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    expect(aborted.$metadata.httpStatusCode).toBe(204);
    expect(await listOpenMultipartUploads(client, bucket, 'abort/')).toEqual([]);
    await expect(client.send(new ListPartsCommand({ Bucket: bucket, Key, UploadId }))).rejects.toMatchObject({
      name: 'NoSuchUpload',
      $metadata: { httpStatusCode: 404 },
    });
    await expect(
      client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId })),
    ).rejects.toMatchObject({
      name: 'NoSuchUpload',
    });
    await expect(
      client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 3, Body: 'x' })),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    expect(await listKeys(client, bucket, 'abort/')).toEqual([]);
  });

  it('lists open uploads page by page (key-marker, upload-id-marker), and the product aborts them all', async () => {
    const created = [];
    for (const Key of ['stale/b.vhd', 'stale/a.vhd', 'stale/b.vhd', 'other/c.vhd']) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
      created.push({ Key, UploadId });
    }
    const seen: { Key?: string; UploadId?: string }[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await client.send(
        new ListMultipartUploadsCommand({
          Bucket: bucket,
          Prefix: 'stale/',
          MaxUploads: 1,
          KeyMarker,
          UploadIdMarker,
        }),
      );
      expect(page.Uploads!.length).toBe(1);
      seen.push(...page.Uploads!.map(({ Key, UploadId }) => ({ Key, UploadId })));
      KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (KeyMarker);
    // By key, then (same key) in the order they were started.
    expect(seen).toEqual([created[1], created[0], created[2]]);

    expect(await abortUploads(client, bucket, 'stale/')).toBe(3);
    expect(await listOpenMultipartUploads(client, bucket)).toEqual([expect.objectContaining(created[3]!)]);
    expect(await abortUploads(client, bucket, 'other/')).toBe(1);
  });

  it('assembles an object from UploadPartCopy ranges, and copies whole objects', async () => {
    const source = patternBytes(12 * MiB, 3);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'copy/source', Body: source }));
    const Key = 'copy/assembled';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    const ranges = [
      [6 * MiB, 12 * MiB - 1],
      [0, MiB - 1],
    ] as const;
    const parts = [];
    for (const [index, [first, last]] of ranges.entries()) {
      const PartNumber = index + 1;
      const { CopyPartResult } = await client.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key,
          UploadId,
          PartNumber,
          CopySource: `${bucket}/copy/source`,
          CopySourceRange: `bytes=${first}-${last}`,
        }),
      );
      parts.push({ PartNumber, ETag: CopyPartResult!.ETag });
    }
    await expect(
      client.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key,
          UploadId,
          PartNumber: 3,
          CopySource: `${bucket}/copy/source`,
          CopySourceRange: `bytes=0-${12 * MiB}`,
        }),
      ),
    ).rejects.toMatchObject({ name: 'InvalidArgument' });
    const done = await complete(Key, UploadId!, parts);
    const expected = ranges.map(([first, last]) => source.subarray(first, last + 1));
    expect(done.ETag).toBe(multipartEtag(expected));
    expect(await sha256OfObject(client, bucket, Key)).toBe(sha256Hex(Buffer.concat(expected)));

    const copied = await client.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: 'copy/whole.broken',
        CopySource: `${bucket}/copy/source`,
      }),
    );
    expect(copied.CopyObjectResult!.ETag).toBe(`"${md5(source).toString('hex')}"`);
    expect(await sha256OfObject(client, bucket, 'copy/whole.broken')).toBe(sha256Hex(source));
    await expect(
      client.send(
        new CopyObjectCommand({ Bucket: bucket, Key: 'copy/x', CopySource: `${bucket}/copy/missing` }),
      ),
    ).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('deletes several keys with DeleteObjects', async () => {
    for (const Key of ['bulk/1', 'bulk/2', 'bulk/3']) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }));
    }
    const result = await client.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: [{ Key: 'bulk/1' }, { Key: 'bulk/3' }, { Key: 'bulk/never' }] },
      }),
    );
    expect(result.Deleted!.map((d) => d.Key)).toEqual(['bulk/1', 'bulk/3', 'bulk/never']);
    expect(result.Errors).toBeUndefined();
    expect(await listKeys(client, bucket, 'bulk/')).toEqual(['bulk/2']);
  });

  it('checks Content-MD5 and x-amz-checksum-* (BadDigest); stores and echoes checksums', async () => {
    const body = Buffer.from('checked bytes\n');
    await expect(
      client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'sum/md5',
          Body: body,
          ContentMD5: md5('other').toString('base64'),
        }),
      ),
    ).rejects.toMatchObject({ name: 'BadDigest', $metadata: { httpStatusCode: 400 } });
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'sum/md5',
        Body: body,
        ContentMD5: md5(body).toString('base64'),
      }),
    );
    await expect(
      client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'sum/crc',
          Body: body,
          ChecksumCRC32: crc32Base64(Buffer.from('x')),
        }),
      ),
    ).rejects.toMatchObject({ name: 'BadDigest' });
    expect(await listKeys(client, bucket, 'sum/')).toEqual(['sum/md5']);

    // A stream body with a checksum travels aws-chunked, the checksum in a trailer.
    const data = patternBytes(3 * MiB + 5, 11);
    const chunked = await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'sum/chunked',
        Body: streamOf(data),
        ContentLength: data.length,
        ChecksumAlgorithm: 'CRC32',
      }),
    );
    expect(chunked.ChecksumCRC32).toBe(crc32Base64(data));
    // With ChecksumMode the SDK checks the body against the checksum the server returns.
    const got = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'sum/chunked', ChecksumMode: 'ENABLED' }),
    );
    expect(got.ChecksumCRC32).toBe(crc32Base64(data));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);

    const sha = await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'sum/sha', Body: data, ChecksumAlgorithm: 'SHA256' }),
    );
    expect(sha.ChecksumSHA256).toBe(createHash('sha256').update(data).digest('base64'));

    // Multipart with a checksum: every part carries one, the object gets S3's composite `…-N`.
    const upload = await new Upload({
      client,
      params: {
        Bucket: bucket,
        Key: 'sum/multipart',
        Body: patternBytes(11 * MiB, 5),
        ChecksumAlgorithm: 'CRC32',
      },
      partSize: 5 * MiB,
    }).done();
    expect(upload.ChecksumCRC32).toMatch(/^[A-Za-z0-9+/]{6}==-3$/);
    const head = await client.send(
      new HeadObjectCommand({ Bucket: bucket, Key: 'sum/multipart', ChecksumMode: 'ENABLED' }),
    );
    expect(head.ChecksumCRC32).toBe(upload.ChecksumCRC32);
  });

  it('decodes signed aws-chunked framing with trailers, however the bytes are split', async () => {
    const framed = Buffer.from(
      '5;chunk-signature=' + 'a'.repeat(64) + '\r\nhello\r\n' +
        '7;chunk-signature=' + 'b'.repeat(64) + '\r\n, world\r\n' +
        '0;chunk-signature=' + 'c'.repeat(64) + '\r\n' +
        'x-amz-checksum-crc32:abcd==\r\nx-amz-trailer-signature:' + 'd'.repeat(64) + '\r\n\r\n',
    ); // prettier-ignore
    for (const step of [1, 3, framed.length]) {
      const trailers = new Map<string, string>();
      const pieces = (async function* () {
        for (let i = 0; i < framed.length; i += step) yield framed.subarray(i, i + step);
      })();
      const out: Buffer[] = [];
      for await (const chunk of decodeAwsChunked(pieces, trailers)) out.push(chunk);
      expect(Buffer.concat(out).toString()).toBe('hello, world');
      expect(trailers.get('x-amz-checksum-crc32')).toBe('abcd==');
    }
  });

  it('answers S3 errors for buckets, credentials and what it does not implement', async () => {
    const name = await createTestBucket(client, 'errors');
    expect((await client.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name)).toContain(name);
    await client.send(new HeadBucketCommand({ Bucket: name }));
    await expect(client.send(new CreateBucketCommand({ Bucket: name }))).rejects.toMatchObject({
      name: 'BucketAlreadyOwnedByYou',
      $metadata: { httpStatusCode: 409 },
    });
    await client.send(new PutObjectCommand({ Bucket: name, Key: 'k', Body: 'v' }));
    await expect(client.send(new DeleteBucketCommand({ Bucket: name }))).rejects.toMatchObject({
      name: 'BucketNotEmpty',
      $metadata: { httpStatusCode: 409 },
    });
    await client.send(new DeleteObjectCommand({ Bucket: name, Key: 'k' }));
    await client.send(new DeleteBucketCommand({ Bucket: name }));
    await expect(client.send(new ListObjectsV2Command({ Bucket: name }))).rejects.toMatchObject({
      name: 'NoSuchBucket',
      $metadata: { httpStatusCode: 404 },
    });
    await expect(
      client.send(new PutObjectCommand({ Bucket: name, Key: 'k', Body: 'v' })),
    ).rejects.toMatchObject({
      name: 'NoSuchBucket',
    });

    const stranger = createS3Client({ ...s3, credentials: { accessKeyId: 'SOMEONE', secretAccessKey: 'x' } });
    await expect(stranger.send(new ListObjectsV2Command({ Bucket: bucket }))).rejects.toMatchObject({
      name: 'InvalidAccessKeyId',
      $metadata: { httpStatusCode: 403 },
    });
    stranger.destroy();
    // 501 is a server error, which the SDK would retry.
    const once = new S3Client({ ...s3, forcePathStyle: true, maxAttempts: 1 });
    await expect(once.send(new GetBucketVersioningCommand({ Bucket: bucket }))).rejects.toMatchObject({
      name: 'NotImplemented',
      $metadata: { httpStatusCode: 501 },
    });
    // Refused, not ignored: ignoring a condition would answer as if it held.
    await expect(
      once.send(new GetObjectCommand({ Bucket: bucket, Key: 'copy/source', IfNoneMatch: '"x"' })),
    ).rejects.toMatchObject({ name: 'NotImplemented' });
    once.destroy();
  });

  it(
    'streams 512 MiB in (PutObject, then a multipart Upload) and out with flat memory',
    { timeout: 300_000 },
    async () => {
      const size = 512 * MiB;
      /** Fresh 1 MiB chunks, each different, hashed as they are made. */
      const source = (hash: ReturnType<typeof createHash>) =>
        Readable.from(
          (function* () {
            for (let i = 0; i < size / MiB; i++) {
              const chunk = Buffer.alloc(MiB, i & 0xff);
              chunk.writeUInt32LE(i, 0);
              hash.update(chunk);
              yield chunk;
            }
          })(),
        );
      const growth = async (work: () => Promise<void>) => {
        const before = process.memoryUsage().rss;
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
        try {
          await work();
        } finally {
          clearInterval(sampler);
        }
        return Math.max(peak, process.memoryUsage().rss) - before;
      };

      const sent = createHash('sha256');
      const put = await growth(async () => {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: 'big/put.bin',
            Body: source(sent),
            ContentLength: size,
          }),
        );
      });
      let backHash = '';
      const get = await growth(async () => {
        backHash = await sha256OfObject(client, bucket, 'big/put.bin');
      });
      expect(backHash).toBe(sent.digest('hex'));

      const uploaded = createHash('sha256');
      const multipart = await growth(async () => {
        await new Upload({
          client,
          params: { Bucket: bucket, Key: 'big/upload.bin', Body: source(uploaded) },
          partSize: 8 * MiB,
          queueSize: 2,
        }).done();
      });
      expect(await sha256OfObject(client, bucket, 'big/upload.bin')).toBe(uploaded.digest('hex'));

      const mib = (bytes: number) => Math.round(bytes / MiB);
      console.info(
        `RSS growth streaming 512 MiB: PutObject ${mib(put)} MiB, GetObject ${mib(get)} MiB, ` +
          `Upload (8 MiB parts, 2 in flight, client buffers included) ${mib(multipart)} MiB`,
      );
      for (const bytes of [put, get, multipart]) expect(bytes).toBeLessThan(128 * MiB);
    },
  );
});
