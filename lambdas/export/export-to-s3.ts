import { DEFAULT_EXPORT_TASK_TIMEOUT_MS, DEFAULT_PARTS_IN_FLIGHT } from '../runtime/defaults.ts';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { uploadStream } from '../s3/stream-upload.ts';
import { silentLog, type Log } from '../shared/log.ts';
import type { ImageFormat } from '../catalog/manifest.ts';
import { createQcow2Validator, qcow2LengthBound } from '../qcow2/index.ts';
import { createVhdValidator, type VhdDiskType } from '../vhd/index.ts';
import { openExport, taskFailure, XapiError, type Ref, type XapiSession } from '../xapi/index.ts';
import { exportUpperBound, partSizeFor, S3_MAX_PARTS } from './part-size.ts';

export interface ExportToS3Options {
  readonly session: XapiSession;
  readonly s3: S3Client;
  readonly bucket: string;
  readonly key: string;
  /** The snapshot to export. */
  readonly vdiRef: Ref;
  /** For a delta: the previous snapshot. */
  readonly baseRef?: Ref;
  /** A task we created; the transfer's outcome is read from it. */
  readonly taskRef: Ref;
  /**
   * The VDI's virtual size: bounds the export's size and so chooses the part size; a qcow2 export must
   * declare exactly this size.
   */
  readonly virtualSize: number;
  /** The export's image format. Default vhd. */
  readonly format?: ImageFormat;
  /**
   * Default: from the virtual size (docs/design.md § S3 multipart uploads), so that any export of the disk
   * fits. Plan gives a smaller one for a delta (`sizeExport`): an export that outgrows it fails before part
   * 10,001.
   */
  readonly partSize?: number;
  /** S3's 10,000; lower only to see the limit in a test without sending 10,000 parts. */
  readonly maxParts?: number;
  /** Parts uploading at once; enough that the host never waits long for us to read. Default 4. */
  readonly partsInFlight?: number;
  /** Fail when the host sends nothing for this long. Default 60 s. */
  readonly stallTimeoutMs?: number;
  /** How long to wait for the task to leave `pending` once the body ended. Default 60 s. */
  readonly taskTimeoutMs?: number;
  /**
   * A checksum S3 verifies on every part (`x-amz-checksum-*`); S3 Object Lock requires one on uploads.
   * Default: none beyond what the S3 client sends by itself.
   */
  readonly checksumAlgorithm?: 'CRC32' | 'SHA256';
  readonly onProgress?: (bytesSoFar: number) => void;
  readonly log?: Log;
}

export interface ExportToS3Result {
  readonly bytes: number;
  readonly sha256: string;
  readonly format: ImageFormat;
  /** Present 2 MiB blocks of a vhd export, present 64 KiB clusters of a qcow2 one. */
  readonly presentBlocks: number;
  readonly virtualSize: number;
  /** A vhd export's disk type (a qcow2 export is a standalone image, full or delta alike). */
  readonly diskType?: VhdDiskType;
  readonly partSize: number;
  /** The host that served the export (after any redirect). */
  readonly host: string;
  readonly startedAt: string;
  readonly endedAt: string;
}

/** The export would need more parts than one multipart upload may have. */
export class PartLimitError extends Error {
  override readonly name = 'PartLimitError';
}

/**
 * Streams `GET /export_raw_vdi?format=vhd|qcow2` through the format's validator and sha256 into an S3 multipart
 * upload. The upload completes only after the body validated and the task reported `success`; any other
 * outcome aborts it, so no object or part is left behind. Memory: about parts in flight + 4 part buffers
 * (`exportMemoryBytes`).
 */
export async function exportToS3(options: ExportToS3Options): Promise<ExportToS3Result> {
  const log = options.log ?? silentLog;
  const startedAt = new Date().toISOString();
  const format = options.format ?? 'vhd';
  const upperBound = exportUpperBound(format, options.virtualSize);
  const plannedPartSize = options.partSize ?? partSizeFor(upperBound);
  // One part size for the whole upload: what passes this cannot be stored.
  const maxParts = Math.min(options.maxParts ?? S3_MAX_PARTS, S3_MAX_PARTS);

  const opened = await openExport(options.session, {
    vdiRef: options.vdiRef,
    taskRef: options.taskRef,
    format,
    ...(options.baseRef ? { baseRef: options.baseRef } : {}),
    ...(options.stallTimeoutMs ? { stallTimeoutMs: options.stallTimeoutMs } : {}),
  });
  let body: Readable = opened.body;
  let partSize = plannedPartSize;
  if (format === 'qcow2') {
    // A qcow2 stream says how long it can be in its first clusters: a sparse disk's parts stay small
    // however large the disk (docs/design.md § QCOW2 backups).
    const peeked = await peekQcow2LengthBound(opened.body).catch(async (error: unknown) => {
      opened.body.destroy();
      await explainWithTask(options, error);
      throw error;
    });
    body = peeked.body;
    if (peeked.bound !== undefined) partSize = Math.min(plannedPartSize, partSizeFor(peeked.bound));
  }
  const byteLimit = partSize * maxParts;
  log.info('export started', { host: opened.host, key: options.key, format, partSize });

  const validator =
    format === 'qcow2' ? createQcow2Validator({ virtualSize: options.virtualSize }) : createVhdValidator();
  const hash = createHash('sha256');
  let bytes = 0;
  const gate = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > byteLimit) {
        callback(
          new PartLimitError(
            `the export passed ${byteLimit} bytes, all that ${maxParts} parts of ${partSize} bytes can hold ` +
              `(the most one multipart upload may have), so it was stopped before part ${maxParts + 1} and ` +
              `its upload aborted` +
              (partSize < plannedPartSize
                ? `: the parts were sized for the length the image's refcount table declares, which it outgrew`
                : plannedPartSize < partSizeFor(upperBound)
                  ? `: the parts were sized for a smaller delta; a full backup (mode full) sizes them for ` +
                    `the whole disk (${upperBound} bytes)`
                  : ''),
          ),
        );
        return;
      }
      hash.update(chunk);
      options.onProgress?.(bytes);
      callback(null, chunk);
    },
    // The body ended and validated: only a successful task lets the upload complete.
    flush(callback) {
      options.session
        .awaitTask(options.taskRef, options.taskTimeoutMs ?? DEFAULT_EXPORT_TASK_TIMEOUT_MS)
        .then((task) => callback(task.status === 'success' ? null : taskFailure(task, 'export')))
        .catch((error: Error) => callback(error));
    },
  });

  let firstError: unknown;
  const uploaded = uploadStream({
    s3: options.s3,
    bucket: options.bucket,
    key: options.key,
    body: gate,
    contentType: 'application/octet-stream',
    partSize,
    partsInFlight: options.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT,
    ...(options.checksumAlgorithm ? { checksumAlgorithm: options.checksumAlgorithm } : {}),
    log,
  }).catch((error: unknown) => {
    firstError ??= error;
    gate.destroy(error as Error);
    throw error;
  });
  const streamed = pipeline(body, validator, gate).catch((error: unknown) => {
    firstError ??= error;
    throw error;
  });
  const [streamOutcome, uploadOutcome] = await Promise.allSettled([streamed, uploaded]);
  if (streamOutcome.status === 'rejected' || uploadOutcome.status === 'rejected') {
    opened.body.destroy();
    if (streamOutcome.status === 'rejected') await explainWithTask(options, firstError);
    log.warn('export failed; upload aborted', { key: options.key, bytes, error: String(firstError) });
    throw firstError;
  }
  const summary = validator.summary;
  if (!summary) throw new Error(`internal: the ${format} validator finished without a summary`);
  const result: ExportToS3Result = {
    bytes,
    sha256: hash.digest('hex'),
    format,
    ...('diskType' in summary
      ? { presentBlocks: summary.presentBlocks, diskType: summary.diskType }
      : { presentBlocks: summary.presentClusters }),
    virtualSize: summary.virtualSize,
    partSize,
    host: opened.host,
    startedAt,
    endedAt: new Date().toISOString(),
  };
  log.info('export stored', { key: options.key, bytes, presentBlocks: result.presentBlocks });
  return result;
}

/**
 * Reads the first clusters of a qcow2 export, as many as `qcow2LengthBound` needs, and gives back the
 * whole stream (those clusters first) with the bound, if the prefix has one.
 */
async function peekQcow2LengthBound(source: Readable): Promise<{ body: Readable; bound?: number }> {
  const chunks: Buffer[] = [];
  let length = 0;
  const reader = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let ended = false;
  let bound: number | undefined;
  for (;;) {
    const prefix = Buffer.concat(chunks, length);
    const found = qcow2LengthBound(prefix);
    if (found.kind === 'bound') bound = found.bound;
    if (found.kind !== 'needMore') break;
    while (length < found.bytesNeeded && !ended) {
      const next = await reader.next();
      if (next.done) ended = true;
      else {
        chunks.push(next.value);
        length += next.value.length;
      }
    }
    if (ended && length < found.bytesNeeded) break;
  }
  async function* replay(): AsyncGenerator<Buffer> {
    yield* chunks;
    if (ended) return;
    for (;;) {
      const next = await reader.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const body = Readable.from(replay(), { objectMode: false });
  // Destroying the stream we hand out must stop the host's body too.
  body.once('close', () => source.destroy());
  return { body, ...(bound !== undefined ? { bound } : {}) };
}

/**
 * A broken stream is often the visible half of a failure the host records in the task (a 500 written
 * into the body, an I/O error): add the host's code to the message so the cause names both.
 */
async function explainWithTask(options: ExportToS3Options, error: unknown): Promise<void> {
  if (!(error instanceof Error) || error instanceof XapiError) return;
  const task = await options.session.awaitTask(options.taskRef, 2_000).catch(() => undefined);
  if (task?.status !== 'failure') return;
  const failure = taskFailure(task, 'export');
  error.message += `; the host's task failed: ${failure.code}${failure.params.length ? ` [${failure.params.join(', ')}]` : ''}`;
}
