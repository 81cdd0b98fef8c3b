import { createHash } from 'node:crypto';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { CatalogError } from '../catalog/manifest.ts';
import { readRange } from '../restore/merged-source.ts';
import { CATALOG_READS_IN_FLIGHT, mapConcurrently } from '../shared/concurrently.ts';
import { abortUploadOrWarn, checksumsOf } from '../s3/stream-upload.ts';
import { silentLog, type Log } from '../shared/log.ts';
import { createVhdValidator, readVhdBlockMap, vhdHead, VHD_BLOCK_SIZE } from '../vhd/index.ts';
import {
  planParts,
  pieceLength,
  S3_PART_RULES,
  type PartPlanLimits,
  type Piece,
  type PlannedPart,
} from './part-plan.ts';

/** One stored vhd layer of the chain being merged, oldest (the full) first. */
export interface MergeLayer {
  readonly backupId: string;
  readonly objectKey: string;
  readonly bytes: number;
}

/** What building a synthetic full did, counted as it happened. */
export interface SyntheticFullReport {
  readonly objectKey: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly presentBlocks: number;
  readonly virtualSize: number;
  /** Parts of the upload, and of them copied inside S3. */
  readonly parts: number;
  readonly copyParts: number;
  /** Bytes S3 copied from the layers without them leaving S3. */
  readonly bytesCopied: number;
  /** Bytes written through our compute: the new head and footer, and runs too short to copy. */
  readonly bytesUploaded: number;
  /** Bytes read back to validate the new object and take its sha256 (the whole object). */
  readonly bytesVerified: number;
  /** S3 requests made. */
  readonly requests: number;
}

export interface SyntheticFullOptions {
  readonly s3: S3Client;
  readonly bucket: string;
  /** The chain, oldest (the full) first; the result equals the disk at the newest layer. */
  readonly layers: readonly MergeLayer[];
  readonly key: string;
  /** Per-part checksum (Object Lock requires one on uploads). */
  readonly checksumAlgorithm?: 'CRC32' | 'SHA256';
  readonly partsInFlight?: number;
  /** S3's rules by default; tests shrink them. */
  readonly limits?: PartPlanLimits;
  readonly log?: Log;
  /** Bytes written so far, then read back: twice the new object's length in all. */
  readonly onProgress?: (bytes: number, total: number) => void;
}

/**
 * Builds, inside S3, one dynamic VHD equal to the disk at the chain's newest layer: the new head (footer
 * copy, header, BAT) and footer are uploaded, each block is copied from the newest layer holding it, in
 * that layer's file order
 * (`UploadPartCopy` ranges; short runs are read and uploaded with their neighbours). Host exports carry
 * whole blocks, so a newer block replaces an older one entirely; the read-back refuses one that doesn't.
 * The new object is then read back once as a stream through the VHD validator and sha256 before anything
 * refers to it; on any failure the upload is aborted or the object deleted (docs/design.md § Forever
 * incremental).
 */
export async function buildSyntheticFull(options: SyntheticFullOptions): Promise<SyntheticFullReport> {
  const { s3, bucket, key } = options;
  const log = options.log ?? silentLog;
  let requests = 0;
  const counted = <T>(request: Promise<T>): Promise<T> => {
    requests++;
    return request;
  };
  const read = (objectKey: string, start: number, length: number) =>
    counted(readRange(s3, bucket, objectKey, start, length));

  // Two ranged reads per layer (its head and its BAT), CATALOG_READS_IN_FLIGHT layers at a time.
  const maps = await mapConcurrently(options.layers, CATALOG_READS_IN_FLIGHT, async (layer) => {
    const map = await readVhdBlockMap((start, length) => read(layer.objectKey, start, length), layer.bytes);
    if (map.blockSize !== VHD_BLOCK_SIZE) {
      throw new CatalogError(
        `${layer.objectKey}: block size ${map.blockSize}, a merge needs ${VHD_BLOCK_SIZE}`,
      );
    }
    return { layer, map };
  });
  const virtualSize = maps.at(-1)?.map.virtualSize;
  if (virtualSize === undefined) throw new CatalogError('a merge needs at least one layer');
  const mismatch = maps.find((entry) => entry.map.virtualSize !== virtualSize);
  if (mismatch) {
    throw new CatalogError(
      `${mismatch.layer.objectKey}: virtual size ${mismatch.map.virtualSize}, the chain's newest is ${virtualSize}`,
    );
  }
  const newest = new Map<number, { key: string; offset: number; regionBytes: number }>();
  for (const { layer, map } of maps) {
    for (const [index, offset] of map.blocks) {
      newest.set(index, { key: layer.objectKey, offset, regionBytes: map.bitmapSize + map.blockSize });
    }
  }
  const blockIndexes = [...newest.keys()].sort((a, b) => a - b);
  // The blocks in the order they lie in their layers (oldest layer first): the old full's surviving runs
  // and each delta's blocks stay contiguous, so most of the new object is a few long copies.
  const fileOrder = maps.flatMap(({ layer, map }) =>
    [...map.blocks]
      .filter(([index]) => newest.get(index)!.key === layer.objectKey)
      .sort(([, a], [, b]) => a - b)
      .map(([index]) => index),
  );
  const head = vhdHead(virtualSize, blockIndexes, { diskType: 'dynamic' }, fileOrder);

  // The block regions (bitmap + data) in that order, adjacent ones of one object joined.
  const pieces: Piece[] = [{ kind: 'bytes', data: head.prefix }];
  for (const index of fileOrder) {
    const block = newest.get(index)!;
    const last = pieces.at(-1)!;
    if (last.kind === 'range' && last.key === block.key && last.start + last.length === block.offset) {
      pieces[pieces.length - 1] = { ...last, length: last.length + block.regionBytes };
    } else {
      pieces.push({ kind: 'range', key: block.key, start: block.offset, length: block.regionBytes });
    }
  }
  pieces.push({ kind: 'bytes', data: head.footer });
  const planned = planParts(pieces, options.limits ?? S3_PART_RULES);

  const checksum = options.checksumAlgorithm;
  const created = await counted(
    s3.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        ContentType: 'application/octet-stream',
        ...(checksum ? { ChecksumAlgorithm: checksum } : {}),
      }),
    ),
  );
  const uploadId = created.UploadId!;
  let bytesCopied = 0;
  let bytesUploaded = 0;
  const reportWritten = () => options.onProgress?.(bytesCopied + bytesUploaded, 2 * head.byteLength);
  const sendPart = async (part: PlannedPart, index: number): Promise<CompletedPart> => {
    const PartNumber = index + 1;
    if (part.kind === 'copy') {
      const copied = await counted(
        s3.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber,
            CopySource: `${bucket}/${encodeURIComponent(part.key).replace(/%2F/g, '/')}`,
            CopySourceRange: `bytes=${part.start}-${part.start + part.length - 1}`,
          }),
        ),
      );
      bytesCopied += part.length;
      reportWritten();
      return { PartNumber, ETag: copied.CopyPartResult?.ETag, ...checksumsOf(copied.CopyPartResult) };
    }
    const body = Buffer.alloc(part.length);
    let at = 0;
    for (const piece of part.pieces) {
      body.set(piece.kind === 'bytes' ? piece.data : await read(piece.key, piece.start, piece.length), at);
      at += pieceLength(piece);
    }
    const uploaded = await counted(
      s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber,
          Body: body,
          ContentLength: body.length,
          ...(checksum ? { ChecksumAlgorithm: checksum } : {}),
        }),
      ),
    );
    bytesUploaded += part.length;
    reportWritten();
    return { PartNumber, ETag: uploaded.ETag, ...checksumsOf(uploaded) };
  };
  try {
    const parts = await mapConcurrently(planned, options.partsInFlight ?? 4, sendPart);
    await counted(
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      ),
    );
  } catch (error) {
    await abortUploadOrWarn(
      s3,
      { bucket, key, uploadId },
      log,
      'could not abort the synthetic full upload; the next run aborts it',
    );
    throw error;
  }

  try {
    const verified = await readBack(s3, bucket, key, (bytes) =>
      options.onProgress?.(head.byteLength + bytes, 2 * head.byteLength),
    );
    requests++;
    const problems: string[] = [];
    if (verified.bytes !== head.byteLength)
      problems.push(`${verified.bytes} bytes, expected ${head.byteLength}`);
    if (verified.presentBlocks !== blockIndexes.length) {
      problems.push(`${verified.presentBlocks} blocks, expected ${blockIndexes.length}`);
    }
    if (verified.virtualSize !== virtualSize) problems.push(`virtual size ${verified.virtualSize}`);
    if (problems.length)
      throw new CatalogError(`synthetic full ${key} read back wrong: ${problems.join(', ')}`);
    const report: SyntheticFullReport = {
      objectKey: key,
      bytes: verified.bytes,
      sha256: verified.sha256,
      presentBlocks: blockIndexes.length,
      virtualSize,
      parts: planned.length,
      copyParts: planned.filter((part) => part.kind === 'copy').length,
      bytesCopied,
      bytesUploaded,
      bytesVerified: verified.bytes,
      requests,
    };
    log.info('synthetic full built', { ...report });
    return report;
  } catch (error) {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch((deleteError: unknown) =>
      log.warn('could not delete the synthetic full that failed its read-back; the next run does', {
        key,
        error: String(deleteError),
      }),
    );
    throw error;
  }
}

/** Streams an object through the VHD validator and sha256; memory stays one chunk. */
async function readBack(
  s3: S3Client,
  bucket: string,
  key: string,
  onBytes: (bytes: number) => void = () => undefined,
) {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const validator = createVhdValidator();
  const hash = createHash('sha256');
  let bytes = 0;
  await pipeline(
    object.Body as Readable,
    validator,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        bytes += chunk.length;
        onBytes(bytes);
        callback();
      },
    }),
  );
  const summary = validator.summary;
  if (!summary || summary.diskType !== 'dynamic') {
    throw new CatalogError(
      `synthetic full ${key} read back as ${summary?.diskType ?? 'nothing'}, not a dynamic VHD`,
    );
  }
  return {
    bytes,
    sha256: hash.digest('hex'),
    presentBlocks: summary.presentBlocks,
    virtualSize: summary.virtualSize,
  };
}
