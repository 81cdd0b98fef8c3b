import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { HostState, PoolState } from './pool.ts';
import { completeTask, failTask } from './pool.ts';
import { HostQcow2Error, HostQcow2Import } from './qcow2-host.ts';
import type { SparseDisk } from './sparse-disk.ts';
import { BLOCK_SIZE, CLUSTER_SIZE, clusterMask } from './sparse-disk.ts';
import {
  okHead,
  PeerGone,
  qcow2ImportFailureResponses,
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
 *
 * `format=qcow2` (docs/design.md § QCOW2 stream) is qcow-stream-tool's: the `chunked` query parameter is
 * refused (404) like any Transfer-Encoding, Content-Length is not needed (without one Node reads an empty
 * body, where the real host would read to the close), the body is parsed forward only (qcow2-host.ts),
 * each allocated cluster is written whole and nothing else, with no size check: a cluster past the VDI's
 * end fails with ENOSPC after everything before it was written. A failure leaves a 400 response and a
 * 500 page on the socket and the task VDI_IO_ERROR ["qcow-stream-tool: internal error, uncaught exception: …"].
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
  if (format === 'qcow2' && start.query.has('chunked')) {
    failTask(task, ['INTERNAL_ERROR', 'Cannot import a qcow2 using chunked encoding']);
    start.cleanup();
    sendPlain(res, 404, 'Not Found');
    return;
  }
  const lengthHeader = req.headers['content-length'];
  if (lengthHeader === undefined && format !== 'qcow2') {
    // The trailing VHD footer is found from the length, so the host cannot do without it.
    failTask(task, ['INTERNAL_ERROR', 'Content-Length required']);
    start.cleanup();
    sendPlain(res, 400, 'Bad Request: Content-Length required');
    return;
  }
  const contentLength = Number(lengthHeader ?? 0);

  const abort = new AbortController();
  const { signal } = abort;
  vdi.activeTransfers += 1;
  task.cancel = () => abort.abort();
  const record = pool.recordTransfer('import', vdi, format);
  let body: number | undefined;
  if (pool.recordTransfersIn !== undefined) {
    record.bodyPath = join(pool.recordTransfersIn, `import-${pool.transfers.length}.${format}`);
    body = openSync(record.bodyPath, 'w');
  }
  let position = 0;
  let qcow2: Qcow2Sink | undefined;
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
        : format === 'qcow2'
          ? (qcow2 = new Qcow2Sink(vdi.disk))
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
    // qcow-stream-tool reads what arrives: a short body is its end of file, not a lost client.
    if (position !== contentLength && format !== 'qcow2') throw new PeerGone();
    sink.end();
    if (faults.failAfterBody !== undefined)
      failTask(task, [faults.failAfterBody.code, ...faults.failAfterBody.params]);
    else completeTask(task, `<value>${vdi.ref}</value>`);
    socket.end();
  } catch (error) {
    const reason = isAbortedRequest(error) ? new PeerGone() : error;
    if (qcow2 !== undefined && reason instanceof PeerGone) {
      // A cut connection is the tool's end of file: cut before the data, it exits 0 having written nothing.
      try {
        qcow2.end();
        completeTask(task, `<value>${vdi.ref}</value>`);
        socket.destroy();
      } catch (endError) {
        failQcow2Import(task, socket, (endError as HostQcow2Error).exception);
      }
    } else if (qcow2 !== undefined && reason instanceof HostQcow2Error) {
      failQcow2Import(task, socket, reason.exception);
    } else finishWithError(reason instanceof HostVhdError ? asIoError(reason) : reason, task, socket);
  } finally {
    if (body !== undefined) closeSync(body);
    record.outcome = task.status === 'success' ? 'success' : 'failure';
    vdi.activeTransfers -= 1;
    start.cleanup();
  }
}

function failQcow2Import(task: Parameters<typeof failTask>[0], socket: Socket, exception: string): void {
  const errorInfo = ['VDI_IO_ERROR', `qcow-stream-tool: internal error, uncaught exception: ${exception}`];
  failTask(task, errorInfo);
  if (!socket.destroyed && socket.writable) socket.end(qcow2ImportFailureResponses(errorInfo));
  else socket.destroy();
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

/**
 * qcow-stream-tool writing to the attached device: each data cluster whole at its guest offset (clusters
 * of one 2 MiB block are gathered, so a block is copied once), nothing else; past the device's end the
 * write fails with ENOSPC once the part inside is written.
 */
class Qcow2Sink {
  readonly #disk: SparseDisk;
  readonly #reader: HostQcow2Import;
  #pending: { index: number; data: Uint8Array; touched: number } | undefined;

  constructor(disk: SparseDisk) {
    this.#disk = disk;
    this.#reader = new HostQcow2Import((offset, bytes) => this.#cluster(offset, bytes));
  }

  write(bytes: Uint8Array): void {
    try {
      this.#reader.write(bytes);
    } finally {
      this.#flush();
    }
  }

  end(): void {
    this.#reader.end();
    this.#flush();
  }

  #cluster(offset: number, bytes: Uint8Array): void {
    const size = this.#disk.virtualSize;
    const fits = Math.max(0, Math.min(bytes.length, size - offset));
    const within = offset % BLOCK_SIZE;
    if (fits === bytes.length && bytes.length === CLUSTER_SIZE && within % CLUSTER_SIZE === 0) {
      const index = Math.floor(offset / BLOCK_SIZE);
      if (this.#pending?.index !== index) {
        this.#flush();
        this.#pending = { index, data: this.#disk.readBlock(index), touched: 0 };
      }
      this.#pending.data.set(bytes, within);
      this.#pending.touched |= clusterMask(within, within + CLUSTER_SIZE);
      return;
    }
    this.#flush();
    if (fits > 0) this.#disk.write(offset, bytes.subarray(0, fits));
    if (fits < bytes.length) throw new HostQcow2Error('Unix.Unix_error(Unix.ENOSPC, "pwrite", "")');
  }

  #flush(): void {
    const pending = this.#pending;
    if (pending === undefined) return;
    this.#pending = undefined;
    this.#disk.putBlock(pending.index, pending.data, pending.touched);
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
