import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { InjectedDrop, InjectedHttp500 } from './byte-faults.ts';
import { MAX_VHD_SIZE, selectExportClusters } from './image-format.ts';
import type { HostState, PoolState, VdiState } from './pool.ts';
import { completeTask, failTask, xapiAtLeast } from './pool.ts';
import { hostQcow2Export } from './qcow2-host.ts';
import type { SparseDisk } from './sparse-disk.ts';
import { BLOCK_SIZE } from './sparse-disk.ts';
import {
  errorResponseInBody,
  okHead,
  PeerGone,
  ReaderStalled,
  startTransfer,
  TransferCancelled,
  writeToSocket,
} from './transfer-common.ts';
import { hostVhdExport, hostVhdPath } from './vhd-host.ts';
import type { HostParentFile } from './vhd-host.ts';
import { asXapiError, XapiError } from './xapi-error.ts';

/** xapi's Constants.max_vhd_size: VHD exports of bigger disks fail with VDI_TOO_LARGE. */
export const MAX_VHD_EXPORT_SIZE = MAX_VHD_SIZE;

/**
 * `GET /export_raw_vdi?vdi=&format=vhd|raw|qcow2[&base=][&task_id=]`. After the checks in startTransfer the
 * socket is taken over: the 200 head goes out first, then the body with neither Content-Length nor
 * chunking, ended by closing the connection once the task is finished. Errors after the 200 fail the
 * task and append a whole HTTP 500 response to the body, as xapi's HTTP server does.
 * (A real host also ends any transfer after 24 hours; the simulator does not.)
 *
 * qcow2 (docs/design.md § QCOW2 stream): the exporter's layout (qcow2-host.ts), clusters chosen in "map"
 * mode for a qcow2-backed VDI on xapi 26.0+ and in "scan" mode otherwise (image-format.ts); the task's
 * progress is never updated, and a failure's page reads `HTTP/1.1 500 Internal Error`. A vhd export of a
 * VDI that is not VHD-backed reads the device as raw (every block present) and cannot be a delta.
 */
export async function handleExport(
  pool: PoolState,
  host: HostState,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const start = startTransfer(pool, host, 'export', req, res);
  if (start === undefined) return;
  const { vdi, task, format, query, socket, faults } = start;
  const abort = new AbortController();
  const { signal } = abort;
  vdi.activeTransfers += 1;
  task.cancel = () => abort.abort();
  const head: Record<string, string> =
    format === 'qcow2'
      ? { 'content-type': 'application/x-qemu-disk' }
      : {
          'Content-Type': format === 'vhd' ? 'application/vhd' : 'application/octet-stream',
          'Content-Disposition': `attachment; filename="${vdi.uuid}.${format}"`,
        };
  const record = pool.recordTransfer('export', vdi, format);
  let position = 0;
  try {
    await writeToSocket(socket, okHead(task, head), pool.readerStallTimeoutMs, signal);
    const virtualSize = vdi.disk.virtualSize;
    if (format === 'vhd' && virtualSize > MAX_VHD_EXPORT_SIZE) {
      throw new XapiError('VDI_TOO_LARGE', [vdi.ref, MAX_VHD_EXPORT_SIZE]);
    }
    // The disk as it is now: later writes (to the VDI) do not leak into a running export.
    const disk = vdi.disk.clone();
    const baseParam = query.get('base');
    const base = baseParam === null || baseParam === '' ? undefined : pool.vdiByRefOrUuid(baseParam);
    record.baseUuid = base?.uuid;
    if (format === 'vhd' && base !== undefined && (vdi.imageFormat !== 'vhd' || base.imageFormat !== 'vhd')) {
      throw new XapiError('INTERNAL_ERROR', ['Failure("Cannot compute differences on non-VHD images")']);
    }
    if (pool.recordTransfersIn !== undefined) record.exportedDisk = disk;
    const body =
      format === 'vhd'
        ? vhdBody(disk, base, vdi.imageFormat !== 'vhd')
        : format === 'qcow2'
          ? qcow2Body(disk, base, vdi.imageFormat === 'qcow2' && xapiAtLeast(pool.xapiVersion, '26.0'))
          : { byteLength: virtualSize, chunks: rawStream(disk) };

    for await (const chunk of body.chunks) {
      for (const slice of faults.slices(chunk, position)) {
        await faults.checkpoint(position, signal);
        if (signal.aborted) throw new TransferCancelled();
        await writeToSocket(socket, slice, pool.readerStallTimeoutMs, signal);
        position += slice.length;
        record.bytes = position;
        if (format !== 'qcow2') task.progress = Math.min(0.99, position / body.byteLength);
        await faults.throttle(slice.length, signal);
      }
    }
    await faults.checkpoint(position, signal);
    // The task is finished before the connection closes: a client reads it right after the body ends.
    if (faults.failAfterBody !== undefined)
      failTask(task, [faults.failAfterBody.code, ...faults.failAfterBody.params]);
    else completeTask(task, '');
    socket.end();
  } catch (error) {
    finishWithError(error, task, socket, format === 'qcow2' ? 'Internal Error' : undefined);
  } finally {
    record.outcome = task.status === 'success' ? 'success' : 'failure';
    vdi.activeTransfers -= 1;
    start.cleanup();
  }
}

/** Fails the task, then tells the client (500 in the body, or a cut connection), then closes. */
export function finishWithError(
  error: unknown,
  task: Parameters<typeof failTask>[0],
  socket: IncomingMessage['socket'],
  reason?: string,
): void {
  if (error instanceof InjectedDrop) {
    failTask(task, [error.code, 'Device I/O errors']);
    if (error.mode === 'reset') resetConnection(socket);
    else socket.end();
    return;
  }
  if (error instanceof PeerGone) {
    failTask(task, ['VDI_IO_ERROR', 'Device I/O errors']);
    socket.destroy();
    return;
  }
  if (error instanceof ReaderStalled) {
    // The host gives up on a reader that stops reading: nothing more can be written to it.
    failTask(task, ['VDI_IO_ERROR', 'Device I/O errors']);
    socket.destroy();
    return;
  }
  const errorInfo =
    error instanceof TransferCancelled
      ? ['TASK_CANCELLED', task.ref]
      : error instanceof InjectedHttp500
        ? [error.code, 'injected failure']
        : asXapiError(error).description;
  failTask(task, errorInfo);
  if (!socket.destroyed && socket.writable) socket.end(errorResponseInBody(errorInfo, reason));
  else socket.destroy();
}

/** A TCP reset; TLS sockets cannot reset themselves, so their underlying TCP socket is reset. */
function resetConnection(socket: IncomingMessage['socket']): void {
  const tcp = (socket as { _parent?: IncomingMessage['socket'] })._parent ?? socket;
  try {
    tcp.resetAndDestroy();
  } catch {
    tcp.destroy();
  }
  socket.destroy();
}

/**
 * The host's vhd export of the disk: a full, or with a base the delta naming the base's host file as
 * parent. `wholeDevice`: the VDI is not VHD-backed, so the device is read as raw and every block is present.
 */
function vhdBody(
  disk: SparseDisk,
  base: VdiState | undefined,
  wholeDevice: boolean,
): { byteLength: number; chunks: Iterable<Uint8Array> } {
  const source = {
    virtualSize: disk.virtualSize,
    blockIndexes: wholeDevice
      ? Array.from({ length: disk.blockCount }, (_, index) => index)
      : base === undefined
        ? disk.allocatedIndexes()
        : disk.changedSince(base.disk),
    readBlock: (index: number) => disk.readBlock(index),
  };
  return hostVhdExport(source, base === undefined ? undefined : hostParentFile(base));
}

/** The exporter's qcow2 of the disk (a delta is a standalone image of the clusters that changed). */
function qcow2Body(
  disk: SparseDisk,
  base: VdiState | undefined,
  mapMode: boolean,
): { byteLength: number; chunks: Iterable<Uint8Array> } {
  const { blocks, masks } = selectExportClusters(disk, base?.disk, mapMode ? 'map' : 'scan');
  return hostQcow2Export({
    virtualSize: disk.virtualSize,
    groups: blocks,
    masks,
    readGroup: (index) => disk.readBlock(index),
  });
}

/** Each VDI's VHD file on the host has its own unique id, unrelated to the VDI's uuid. */
const hostFileIds = new WeakMap<VdiState, Uint8Array>();

function hostParentFile(base: VdiState): HostParentFile {
  let uniqueId = hostFileIds.get(base);
  if (uniqueId === undefined) {
    uniqueId = randomBytes(16);
    uniqueId[6] = (uniqueId[6]! & 0x0f) | 0x40; // a version-4 uuid, as the host's tools make them
    uniqueId[8] = (uniqueId[8]! & 0x3f) | 0x80;
    hostFileIds.set(base, uniqueId);
  }
  return {
    uniqueId,
    path: hostVhdPath(base.sr.type, base.sr.uuid, base.uuid),
    modified: base.snapshotTime ?? new Date(),
  };
}

/** Raw: exactly virtual_size bytes, holes as zeros. */
async function* rawStream(disk: SparseDisk): AsyncGenerator<Uint8Array> {
  const zeros = new Uint8Array(BLOCK_SIZE);
  for (let index = 0; index < disk.blockCount; index++) {
    const length = Math.min(BLOCK_SIZE, disk.virtualSize - index * BLOCK_SIZE);
    const block = disk.block(index) === undefined ? zeros : disk.readBlock(index);
    yield block.subarray(0, length);
  }
}
