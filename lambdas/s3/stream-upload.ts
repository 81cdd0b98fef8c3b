import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { silentLog, type Log } from '../shared/log.ts';

export interface StreamUploadOptions {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly body: AsyncIterable<Uint8Array>;
  readonly partSize: number;
  /** Parts uploading at once; one more buffer fills meanwhile. */
  readonly partsInFlight: number;
  readonly contentType?: string;
  /** A checksum S3 verifies on every part (`x-amz-checksum-*`), as Object Lock requires. */
  readonly checksumAlgorithm?: 'CRC32' | 'SHA256';
  readonly log?: Log;
}

/**
 * A stream into one multipart upload through a fixed pool of part buffers (parts in flight + 1, each
 * `partSize`), reused from part to part: each byte is copied once, from the stream's chunk into its part,
 * and memory neither grows nor churns with the stream's length (docs/design.md § S3 multipart uploads).
 * lib-storage's `Upload` instead joins each part's chunks into a new buffer, a fifth of an export's CPU
 * with the garbage it leaves. The upload completes once the stream ended and every part is in; any
 * failure (the stream's or a part's) aborts it, so no part is left behind, and the first error is thrown.
 */
export async function uploadStream(options: StreamUploadOptions): Promise<{ bytes: number; parts: number }> {
  const { s3, bucket, key, partSize } = options;
  const log = options.log ?? silentLog;
  const created = await s3.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      ...(options.contentType ? { ContentType: options.contentType } : {}),
      ...(options.checksumAlgorithm ? { ChecksumAlgorithm: options.checksumAlgorithm } : {}),
    }),
  );
  const uploadId = created.UploadId!;
  const free: Buffer[] = [];
  let allocated = 0;
  const inFlight = new Set<Promise<void>>();
  const completed: CompletedPart[] = [];
  let failure: { error: unknown } | undefined;

  const takeBuffer = async (): Promise<Buffer> => {
    while (!free.length && allocated > options.partsInFlight && !failure) await Promise.race(inFlight);
    if (failure) throw failure.error;
    const reused = free.pop();
    if (reused) return reused;
    allocated++;
    return Buffer.allocUnsafeSlow(partSize);
  };
  const send = (buffer: Buffer, length: number, partNumber: number): void => {
    const sent = s3
      .send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: buffer.subarray(0, length),
          ContentLength: length,
          ...(options.checksumAlgorithm ? { ChecksumAlgorithm: options.checksumAlgorithm } : {}),
        }),
      )
      .then(
        (part) => {
          completed.push({ PartNumber: partNumber, ETag: part.ETag, ...checksumsOf(part) });
          free.push(buffer);
        },
        (error: unknown) => {
          failure ??= { error };
        },
      )
      .finally(() => inFlight.delete(sent));
    inFlight.add(sent);
  };

  let bytes = 0;
  let partNumber = 1;
  try {
    let buffer = await takeBuffer();
    let filled = 0;
    for await (const chunk of options.body) {
      if (failure) throw failure.error;
      for (let offset = 0; offset < chunk.length;) {
        const length = Math.min(partSize - filled, chunk.length - offset);
        buffer.set(chunk.subarray(offset, offset + length), filled);
        filled += length;
        offset += length;
        if (filled === partSize) {
          send(buffer, filled, partNumber++);
          buffer = await takeBuffer();
          filled = 0;
        }
      }
      bytes += chunk.length;
    }
    // The last part may be short (S3 allows it of the last part alone); an empty stream is one empty part.
    if (filled > 0 || partNumber === 1) send(buffer, filled, partNumber++);
    await Promise.all(inFlight);
    if (failure) throw failure.error;
    completed.sort((a, b) => a.PartNumber! - b.PartNumber!);
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: completed },
      }),
    );
    return { bytes, parts: completed.length };
  } catch (error) {
    const first = failure ? failure.error : error;
    await Promise.allSettled(inFlight);
    await abortUploadOrWarn(
      s3,
      { bucket, key, uploadId },
      log,
      'could not abort the upload; the next run under this key aborts it',
    );
    throw first;
  }
}

/**
 * Aborts one multipart upload after a failure. Its own failure is only logged (the caller rethrows the
 * first error): the next run under the key, or the bucket's lifecycle rule, aborts what is left.
 */
export async function abortUploadOrWarn(
  s3: S3Client,
  upload: { readonly bucket: string; readonly key: string; readonly uploadId: string },
  log: Log,
  warning: string,
): Promise<void> {
  await s3
    .send(
      new AbortMultipartUploadCommand({ Bucket: upload.bucket, Key: upload.key, UploadId: upload.uploadId }),
    )
    .catch((error: unknown) => log.warn(warning, { key: upload.key, error: String(error) }));
}

/** The part checksum S3 returned, passed back on completion as S3 requires when the upload has one. */
export function checksumsOf(result: { ChecksumCRC32?: string; ChecksumSHA256?: string } | undefined) {
  return {
    ...(result?.ChecksumCRC32 ? { ChecksumCRC32: result.ChecksumCRC32 } : {}),
    ...(result?.ChecksumSHA256 ? { ChecksumSHA256: result.ChecksumSHA256 } : {}),
  };
}
