/**
 * The simulated host's own VHD code: the export writer (what xapi's vhd-tool streams for
 * `export_raw_vdi?format=vhd`) and the import reader (what it does with `import_raw_vdi?format=vhd`).
 *
 * This is the independent oracle ON PURPOSE, not duplication to merge with `lambdas/vhd`. It was written
 * for the simulator from the VHD specification and the host's behaviour (docs/design.md § VHD as the host
 * writes it), and shares no code with the product's codec: a bug shared by our writer and our parser
 * (BAT, bitmap polarity, differencing semantics) can only show when the other side of the wire is somebody
 * else's code. Keep it that way: no import from `lambdas/`, and no import of this file from the product.
 *
 * Host facts reproduced (mirage/ocaml-vhd `Vhd_input.vhd`, as used by vhd-tool):
 * - export layout: footer copy · dynamic header at 512 · one zero sector at 1536 · BAT at 2048 (all ones
 *   when absent, padded with all ones to a sector) · per present block in ascending index a 512-byte
 *   all-0xFF sector bitmap and 2 MiB of data · the footer again. Big-endian, one's-complement checksums.
 * - footer: disk type 3 for a full, 4 for a delta; a fresh random unique id per export; creator `tap`.
 * - a delta's header names its parent the host's way: the unique id of the base's VHD file on the host,
 *   its time stamp, its path as the UTF-16 parent name, and one `MacX` locator (`file://<path>`, one sector
 *   at byte 1536). The stream itself leaves that sector empty. None of it ever points at our objects.
 * - import: forward only (footer, header, BAT, then blocks in ascending file offset), the trailing footer
 *   found from the exact Content-Length, only bitmap-set sectors written, disk type and parent fields ignored.
 */
import { randomBytes } from 'node:crypto';

const SECTOR = 512;
const FOOTER_BYTES = 512;
const HEADER_BYTES = 1024;
const HEADER_AT = 512;
const BAT_AT = 2048;
/** Where the host's single parent locator says its data lives (the empty sector between header and BAT). */
const LOCATOR_DATA_AT = 1536;
export const HOST_BLOCK_SIZE = 2 * 1024 * 1024;
const NO_BLOCK = 0xffffffff;
const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);

const DISK_TYPE_DYNAMIC = 3;
const DISK_TYPE_DIFFERENCING = 4;
const PLATFORM_MAC_X = 0x4d616358; // 'MacX': a file:// URI

/** The base's VHD file on the host, as a delta's header names it. */
export interface HostParentFile {
  /** The unique id in the footer of the base's VHD file on the host (never a VDI uuid, never ours). */
  readonly uniqueId: Uint8Array;
  /** Host path, e.g. `/var/run/sr-mount/<sr>/<vdi>.vhd`. */
  readonly path: string;
  /** Modification time of that file. */
  readonly modified: Date;
}

export interface HostExportSource {
  readonly virtualSize: number;
  /** Ascending block indexes to include (2 MiB blocks). */
  readonly blockIndexes: readonly number[];
  /** 2 MiB of content of a block (zero padded past the virtual size). */
  readBlock(index: number): Uint8Array;
}

export interface HostExport {
  readonly byteLength: number;
  readonly uniqueId: Uint8Array;
  readonly chunks: Iterable<Uint8Array>;
}

/** The host's export of a full (no parent) or of a delta (parent given). */
export function hostVhdExport(source: HostExportSource, parent?: HostParentFile): HostExport {
  const { virtualSize, blockIndexes } = source;
  const entries = Math.ceil(virtualSize / HOST_BLOCK_SIZE);
  const batBytes = roundToSector(entries * 4);
  const uniqueId = randomBytes(16);
  const footer = hostFooter(
    virtualSize,
    parent === undefined ? DISK_TYPE_DYNAMIC : DISK_TYPE_DIFFERENCING,
    uniqueId,
  );

  const head = Buffer.alloc(BAT_AT + batBytes, 0);
  head.set(footer, 0);
  head.set(hostHeader(entries, parent), HEADER_AT);
  head.fill(0xff, BAT_AT); // every entry absent, padding included
  let nextSector = (BAT_AT + batBytes) / SECTOR;
  let previous = -1;
  for (const index of blockIndexes) {
    if (!(Number.isInteger(index) && index > previous && index < entries)) {
      throw new RangeError(`block ${index} after ${previous} in a disk of ${entries} blocks`);
    }
    previous = index;
    head.writeUInt32BE(nextSector, BAT_AT + index * 4);
    nextSector += (SECTOR + HOST_BLOCK_SIZE) / SECTOR;
  }
  const byteLength = head.length + blockIndexes.length * (SECTOR + HOST_BLOCK_SIZE) + FOOTER_BYTES;
  const bitmap = Buffer.alloc(SECTOR, 0xff);

  function* chunks(): Generator<Uint8Array> {
    yield head;
    for (const index of blockIndexes) {
      const data = source.readBlock(index);
      if (data.length !== HOST_BLOCK_SIZE) throw new RangeError(`block ${index} is ${data.length} bytes`);
      yield bitmap;
      yield data;
    }
    yield footer;
  }
  return { byteLength, uniqueId, chunks: { [Symbol.iterator]: chunks } };
}

/** The host's path of a VDI's VHD file: file SRs mount under /var/run/sr-mount, LVM SRs hold VHD-<uuid> LVs. */
export function hostVhdPath(srType: string, srUuid: string, vdiUuid: string): string {
  return srType.startsWith('lvm')
    ? `/dev/VG_XenStorage-${srUuid}/VHD-${vdiUuid}`
    : `/var/run/sr-mount/${srUuid}/${vdiUuid}.vhd`;
}

function hostFooter(virtualSize: number, diskType: number, uniqueId: Uint8Array): Buffer {
  const footer = Buffer.alloc(FOOTER_BYTES, 0);
  footer.write('conectix', 0, 'latin1');
  footer.writeUInt32BE(2, 8); // features: the reserved bit, always set
  footer.writeUInt32BE(0x00010000, 12); // format version 1.0
  footer.writeBigUInt64BE(BigInt(HEADER_AT), 16);
  footer.writeUInt32BE(vhdSeconds(new Date()), 24);
  footer.write('tap\0', 28, 'latin1');
  footer.writeUInt32BE(0x00010003, 32);
  footer.write('Wi2k', 36, 'latin1');
  footer.writeBigUInt64BE(BigInt(virtualSize), 40); // original size
  footer.writeBigUInt64BE(BigInt(virtualSize), 48); // current size
  const [cylinders, heads, sectorsPerTrack] = geometry(virtualSize / SECTOR);
  footer.writeUInt16BE(cylinders, 56);
  footer.writeUInt8(heads, 58);
  footer.writeUInt8(sectorsPerTrack, 59);
  footer.writeUInt32BE(diskType, 60);
  footer.set(uniqueId, 68);
  footer.writeUInt32BE(onesComplementSum(footer, 64), 64);
  return footer;
}

function hostHeader(entries: number, parent: HostParentFile | undefined): Buffer {
  const header = Buffer.alloc(HEADER_BYTES, 0);
  header.write('cxsparse', 0, 'latin1');
  header.fill(0xff, 8, 16); // data offset: unused
  header.writeBigUInt64BE(BigInt(BAT_AT), 16);
  header.writeUInt32BE(0x00010000, 24);
  header.writeUInt32BE(entries, 28);
  header.writeUInt32BE(HOST_BLOCK_SIZE, 32);
  if (parent !== undefined) {
    if (parent.uniqueId.length !== 16 || parent.uniqueId.every((byte) => byte === 0)) {
      throw new RangeError('a delta names its parent by a non-zero 16-byte unique id');
    }
    header.set(parent.uniqueId, 40);
    header.writeUInt32BE(vhdSeconds(parent.modified), 56);
    // Parent unicode name at 64: UTF-16 big-endian, 512 bytes at most.
    const name = Buffer.from(parent.path, 'utf16le').swap16();
    name.copy(header, 64, 0, Math.min(name.length, 512));
    // Locator 0 at 576 (24 bytes each): code, data space (sectors), data length, reserved, data offset.
    const uri = `file://${parent.path}`;
    header.writeUInt32BE(PLATFORM_MAC_X, 576);
    header.writeUInt32BE(1, 580);
    header.writeUInt32BE(Buffer.byteLength(uri, 'utf8'), 584);
    header.writeBigUInt64BE(BigInt(LOCATOR_DATA_AT), 592);
  }
  header.writeUInt32BE(onesComplementSum(header, 36), 36);
  return header;
}

/** The VHD specification's CHS algorithm. */
function geometry(totalSectors: number): [number, number, number] {
  const sectors = Math.min(totalSectors, 65535 * 16 * 255);
  if (sectors >= 65535 * 16 * 63) return [Math.floor(sectors / 255 / 16), 16, 255];
  let perTrack = 17;
  let cylTimesHeads = Math.floor(sectors / perTrack);
  let heads = Math.max(4, Math.floor((cylTimesHeads + 1023) / 1024));
  if (cylTimesHeads >= heads * 1024 || heads > 16) {
    perTrack = 31;
    heads = 16;
    cylTimesHeads = Math.floor(sectors / perTrack);
  }
  if (cylTimesHeads >= heads * 1024) {
    perTrack = 63;
    heads = 16;
    cylTimesHeads = Math.floor(sectors / perTrack);
  }
  return [Math.floor(cylTimesHeads / heads), heads, perTrack];
}

/** One's complement of the byte sum, the 4 checksum bytes counted as zero. */
function onesComplementSum(bytes: Uint8Array, checksumAt: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (i < checksumAt || i >= checksumAt + 4) sum = (sum + bytes[i]!) >>> 0;
  }
  return ~sum >>> 0;
}

function vhdSeconds(date: Date): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor((date.getTime() - VHD_EPOCH_MS) / 1000)));
}

function roundToSector(bytes: number): number {
  return Math.ceil(bytes / SECTOR) * SECTOR;
}

// ---------------------------------------------------------------------------------------------------------
// Import

/** Why the host refused a vhd import body; `code` reaches the task's error_info as `CODE: message`. */
export class HostVhdError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'HostVhdError';
    this.code = code;
  }
}

/** One block as the host applies it: write the sectors whose bitmap bit is set (MSB first), nothing else. */
export interface HostImportBlock {
  readonly index: number;
  readonly blockSize: number;
  readonly bitmap: Uint8Array;
  readonly data: Uint8Array;
}

/** Bounds before allocating from numbers read off the wire. */
const MAX_ENTRIES = 2 ** 22;
const MAX_BLOCK_SIZE = 32 * 1024 * 1024;

interface Wanted {
  readonly what: string;
  readonly at: number;
  readonly length: number;
  readonly done: (bytes: Buffer) => void;
}

/**
 * The host's reader of a vhd import body of exactly `contentLength` bytes: footer, header, BAT, then each
 * present block in ascending file offset, then the trailing footer at contentLength − 512. Forward only:
 * bytes between structures are skipped, a block behind the read position is an error. Holds one block.
 */
export class HostVhdImport {
  readonly #contentLength: number;
  #position = 0;
  #wanted: Wanted | undefined;
  #pieces: Buffer[] = [];
  #gathered = 0;
  #ready: HostImportBlock[] = [];
  #virtualSize: number | undefined;
  #blockSize = 0;
  #bitmapBytes = 0;
  #blocks: { index: number; at: number }[] = [];
  #next = 0;
  #done = false;

  constructor(contentLength: number) {
    this.#contentLength = contentLength;
    this.#want('the leading footer', 0, FOOTER_BYTES, (bytes) => this.#footer(bytes));
  }

  /** The footer's current size, once the leading footer is read. */
  get virtualSize(): number | undefined {
    return this.#virtualSize;
  }

  /** Feeds bytes; returns the blocks they completed, to be applied in order. */
  write(chunk: Uint8Array): HostImportBlock[] {
    let offset = 0;
    while (offset < chunk.length) {
      const wanted = this.#wanted;
      if (wanted === undefined) {
        throw new HostVhdError('VHD_TRAILING_DATA', `bytes after the trailing footer at ${this.#position}`);
      }
      if (this.#position < wanted.at) {
        const skip = Math.min(wanted.at - this.#position, chunk.length - offset);
        offset += skip;
        this.#position += skip;
        continue;
      }
      const take = Math.min(wanted.length - this.#gathered, chunk.length - offset);
      this.#pieces.push(Buffer.from(chunk.buffer, chunk.byteOffset + offset, take));
      this.#gathered += take;
      offset += take;
      this.#position += take;
      if (this.#gathered === wanted.length) {
        const bytes = this.#pieces.length === 1 ? Buffer.from(this.#pieces[0]!) : Buffer.concat(this.#pieces);
        this.#pieces = [];
        this.#gathered = 0;
        this.#wanted = undefined;
        wanted.done(bytes);
      }
    }
    const ready = this.#ready;
    this.#ready = [];
    return ready;
  }

  /** The body ended (Content-Length bytes were read); throws unless the VHD was complete. */
  end(): void {
    if (!this.#done) {
      throw new HostVhdError(
        'VHD_TRUNCATED',
        `the body ended at ${this.#position} while reading ${this.#wanted?.what ?? 'nothing'}`,
      );
    }
  }

  #want(what: string, at: number, length: number, done: (bytes: Buffer) => void): void {
    if (at < this.#position)
      throw new HostVhdError('VHD_BLOCK_ORDER', `${what} at ${at} is behind ${this.#position}`);
    if (at + length > this.#contentLength) {
      throw new HostVhdError(
        'VHD_TRUNCATED',
        `${what} (${length} bytes at ${at}) runs past the body's ${this.#contentLength} bytes`,
      );
    }
    this.#wanted = { what, at, length, done };
  }

  #footer(bytes: Buffer): void {
    if (bytes.toString('latin1', 0, 8) !== 'conectix') {
      throw new HostVhdError(
        'VHD_FOOTER_COOKIE',
        `footer cookie ${JSON.stringify(bytes.toString('latin1', 0, 8))}`,
      );
    }
    if (bytes.readUInt32BE(64) !== onesComplementSum(bytes, 64)) {
      throw new HostVhdError('VHD_FOOTER_CHECKSUM', 'footer checksum does not match');
    }
    this.#virtualSize = Number(bytes.readBigUInt64BE(48));
    const headerAt = Number(bytes.readBigUInt64BE(16));
    this.#want('the dynamic header', headerAt, HEADER_BYTES, (header) => this.#header(header));
  }

  #header(bytes: Buffer): void {
    if (bytes.toString('latin1', 0, 8) !== 'cxsparse') {
      throw new HostVhdError(
        'VHD_HEADER_COOKIE',
        `header cookie ${JSON.stringify(bytes.toString('latin1', 0, 8))}`,
      );
    }
    if (bytes.readUInt32BE(36) !== onesComplementSum(bytes, 36)) {
      throw new HostVhdError('VHD_HEADER_CHECKSUM', 'dynamic header checksum does not match');
    }
    const blockSize = bytes.readUInt32BE(32);
    if (blockSize < SECTOR || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
      throw new HostVhdError('VHD_BLOCK_SIZE', `block size ${blockSize}`);
    }
    const entries = bytes.readUInt32BE(28);
    if (entries > MAX_ENTRIES) throw new HostVhdError('VHD_LIMIT', `${entries} BAT entries`);
    this.#blockSize = blockSize;
    this.#bitmapBytes = roundToSector(Math.ceil(blockSize / SECTOR / 8));
    const tableAt = Number(bytes.readBigUInt64BE(16));
    // Parent unique id, time stamp, name and locators are not looked at: the host ignores them on import.
    this.#want('the BAT', tableAt, roundToSector(entries * 4), (bat) => this.#bat(bat, entries));
  }

  #bat(bat: Buffer, entries: number): void {
    for (let index = 0; index < entries; index++) {
      const sector = bat.readUInt32BE(index * 4);
      if (sector !== NO_BLOCK) this.#blocks.push({ index, at: sector * SECTOR });
    }
    this.#blocks.sort((a, b) => a.at - b.at);
    this.#wantNextBlock();
  }

  #wantNextBlock(): void {
    const block = this.#blocks[this.#next];
    if (block === undefined) {
      this.#want('the trailing footer', this.#contentLength - FOOTER_BYTES, FOOTER_BYTES, (bytes) => {
        if (bytes.toString('latin1', 0, 8) !== 'conectix') {
          throw new HostVhdError('VHD_FOOTER_MISMATCH', 'no footer at the end of the body');
        }
        this.#done = true;
      });
      return;
    }
    if (block.at + this.#bitmapBytes + this.#blockSize > this.#contentLength - FOOTER_BYTES) {
      throw new HostVhdError(
        'VHD_TRUNCATED',
        `block ${block.index} at ${block.at} runs into the trailing footer of a ${this.#contentLength}-byte body`,
      );
    }
    this.#want(`block ${block.index}`, block.at, this.#bitmapBytes + this.#blockSize, (bytes) => {
      this.#ready.push({
        index: block.index,
        blockSize: this.#blockSize,
        bitmap: bytes.subarray(0, this.#bitmapBytes),
        data: bytes.subarray(this.#bitmapBytes),
      });
      this.#next += 1;
      this.#wantNextBlock();
    });
  }
}
