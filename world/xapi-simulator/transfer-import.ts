import type { IncomingMessage, ServerResponse } from 'node:http';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { HostState, PoolState, TransferRecord } from './pool.ts';
import { completeTask, failTask } from './pool.ts';
import type { SparseDisk } from './sparse-disk.ts';
import { BLOCK_SIZE } from './sparse-disk.ts';
import {
  okHead,
  PeerGone,
  sendPlain,
  startTransfer,
  TransferCancelled,
  writeToSocket,
} from './transfer-common.ts';
import { finishWithError } from './transfer-export.ts';
import { HostVhdError, HostVhdImport } from './vhd-host.ts';
import { XapiError } from './xapi-error.ts';

/**
 * `PUT /import_raw_vdi?vdi=&format=vhd|raw[&task_id=]`. Any Transfer-Encoding is refused (404, task failed);
 * Content-Length must be present and exact. The 200 goes out before the body is read. A vhd body is parsed
 * forward only and each block writes just the sectors its bitmap marks; raw writes Content-Length bytes
 * from offset 0. On success the task's result is the VDI ref, XML-RPC encoded as xapi stores task results
 * (`<value>OpaqueRef:…</value>`).
 */
export async function handleImport(
  pool: PoolState,
  host: HostState,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const start = startTransfer(pool, host, 'import', req, res);
  if (start === undefined) return;
  const { vdi, task, format, socket, faults } = start;

  const transferEncoding = req.headers['transfer-encoding'];
  if (transferEncoding !== undefined) {
    failTask(task, ['INTERNAL_ERROR', `Cannot handle encoding: ${transferEncoding}`]);
    start.cleanup();
    sendPlain(res, 404, 'Not Found');
    return;
  }
  const lengthHeader = req.headers['content-length'];
  if (lengthHeader === undefined) {
    // The trailing VHD footer is found from the length, so the host cannot do without it.
    failTask(task, ['INTERNAL_ERROR', 'Content-Length required']);
    start.cleanup();
    sendPlain(res, 400, 'Bad Request: Content-Length required');
    return;
  }
  const contentLength = Number(lengthHeader);

  const abort = new AbortController();
  const { signal } = abort;
  vdi.activeTransfers += 1;
  task.cancel = () => abort.abort();
  const record: TransferRecord = {
    direction: 'import',
    vdiUuid: vdi.uuid,
    format,
    baseUuid: undefined,
    bytes: 0,
    outcome: 'running',
  };
  pool.transfers.push(record);
  let body: number | undefined;
  if (pool.recordTransfersIn !== undefined) {
    record.bodyPath = join(pool.recordTransfersIn, `import-${pool.transfers.length}.${format}`);
    body = openSync(record.bodyPath, 'w');
  }
  let position = 0;
  try {
    await writeToSocket(
      socket,
      okHead(task, { 'Content-Type': 'text/plain' }),
      pool.readerStallTimeoutMs,
      signal,
    );
    const sink =
      format === 'vhd'
        ? new VhdSink(vdi.disk, vdi.ref, contentLength)
        : new RawSink(vdi.disk, vdi.ref, contentLength);
    if (format === 'vhd' && !vdi.sr.prezeroed) {
      throw new XapiError('VDI_IO_ERROR', ['Device I/O errors', 'vhd import needs a prezeroed SR']);
    }
    const onClose = (): void => abort.abort(new PeerGone());
    socket.once('close', onClose);
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        for (const slice of faults.slices(chunk, position)) {
          await faults.checkpoint(position, signal);
          if (signal.aborted)
            throw signal.reason instanceof PeerGone ? signal.reason : new TransferCancelled();
          if (body !== undefined) writeSync(body, slice);
          sink.write(slice);
          position += slice.length;
          record.bytes = position;
          task.progress = Math.min(0.99, position / Math.max(1, contentLength));
          await faults.throttle(slice.length, signal);
        }
      }
      await faults.checkpoint(position, signal);
    } finally {
      socket.off('close', onClose);
    }
    if (position !== contentLength) throw new PeerGone();
    sink.end();
    if (faults.failAfterBody !== undefined)
      failTask(task, [faults.failAfterBody.code, ...faults.failAfterBody.params]);
    else completeTask(task, `<value>${vdi.ref}</value>`);
    socket.end();
  } catch (error) {
    const reason = isAbortedRequest(error) ? new PeerGone() : error;
    finishWithError(reason instanceof HostVhdError ? asIoError(reason) : reason, task, socket);
  } finally {
    if (body !== undefined) closeSync(body);
    record.outcome = task.status === 'success' ? 'success' : 'failure';
    vdi.activeTransfers -= 1;
    start.cleanup();
  }
}

function isAbortedRequest(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (error as Error)?.message === 'aborted'
  );
}

/** vhd-tool's failures reach the task as VDI_IO_ERROR; the reader's message says what was wrong. */
function asIoError(error: HostVhdError): XapiError {
  return new XapiError('VDI_IO_ERROR', ['Device I/O errors', `${error.code}: ${error.message}`]);
}

class VhdSink {
  readonly #reader: HostVhdImport;
  readonly #disk: SparseDisk;
  readonly #vdiRef: string;
  #checkedSize = false;

  constructor(disk: SparseDisk, vdiRef: string, contentLength: number) {
    this.#reader = new HostVhdImport(contentLength);
    this.#disk = disk;
    this.#vdiRef = vdiRef;
  }

  write(bytes: Uint8Array): void {
    const blocks = this.#reader.write(bytes);
    const virtualSize = this.#reader.virtualSize;
    if (!this.#checkedSize && virtualSize !== undefined) {
      this.#checkedSize = true;
      if (virtualSize > this.#disk.virtualSize) {
        throw new XapiError('VDI_TOO_LARGE', [this.#vdiRef, this.#disk.virtualSize]);
      }
    }
    for (const block of blocks) {
      this.#disk.writeMappedSectors(block.index, block.blockSize, block.bitmap, block.data);
    }
  }

  end(): void {
    this.#reader.end();
  }
}

/** Raw bodies are gathered into whole blocks so each block is written (copied) once. */
class RawSink {
  readonly #disk: SparseDisk;
  #offset = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  constructor(disk: SparseDisk, vdiRef: string, contentLength: number) {
    this.#disk = disk;
    if (contentLength > disk.virtualSize) throw new XapiError('VDI_TOO_LARGE', [vdiRef, disk.virtualSize]);
  }

  write(bytes: Uint8Array): void {
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    while (this.#pendingBytes > 0 && (this.#offset % BLOCK_SIZE) + this.#pendingBytes >= BLOCK_SIZE) {
      this.#flush(BLOCK_SIZE - (this.#offset % BLOCK_SIZE));
    }
  }

  end(): void {
    if (this.#pendingBytes > 0) this.#flush(this.#pendingBytes);
  }

  #flush(length: number): void {
    const joined = Buffer.concat(this.#pending);
    const piece = joined.subarray(0, length);
    const rest = joined.subarray(length);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    const index = Math.floor(this.#offset / BLOCK_SIZE);
    if (piece.length === BLOCK_SIZE) {
      // An all-zero block over a hole changes nothing (the SR is prezeroed): leave it unallocated.
      if (!(this.#disk.block(index) === undefined && piece.every((byte) => byte === 0))) {
        this.#disk.putBlock(index, new Uint8Array(piece));
      }
    } else {
      this.#disk.write(this.#offset, piece);
    }
    this.#offset += length;
  }
}
