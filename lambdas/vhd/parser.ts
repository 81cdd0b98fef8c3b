import {
  ABSENT_BLOCK,
  DYNAMIC_HEADER_SIZE,
  FOOTER_SIZE,
  MAX_BLOCK_COUNT,
  MAX_GAP_BYTES,
  SECTOR_SIZE,
} from './constants.ts';
import { decodeDynamicHeader, HEADER_FIELD_OFFSETS } from './dynamic-header.ts';
import type { DynamicHeader } from './dynamic-header.ts';
import {
  HttpErrorInBody,
  VhdBatBoundsError,
  VhdBitmapNotFullError,
  VhdBlockOrderError,
  VhdFooterMismatchError,
  VhdLimitError,
  VhdTrailingDataError,
  VhdTruncatedError,
} from './errors.ts';
import { decodeFooter, FOOTER_FIELD_OFFSETS } from './footer.ts';
import type { VhdFooter } from './footer.ts';
import { batByteLength, bitmapByteLength, blockCount } from './layout.ts';
import type { VhdBlock, VhdHeaderInfo, VhdSummary } from './types.ts';

export interface VhdStreamParserOptions {
  /** Default true. False: validate only and never assemble block data (pass-through use); `data` is empty. */
  readonly keepBlockData?: boolean;
  /**
   * Default true: every bitmap must mark all sectors of its block, as the host's exports (and qemu-img's and
   * our writer's output) always do; a cleared bit fails with VhdBitmapNotFullError. False: accept partial
   * bitmaps (another writer's VHD) and leave their meaning to the caller.
   */
  readonly requireFullBitmap?: boolean;
}

type Phase = 'footer' | 'header' | 'bat' | 'bitmap' | 'data' | 'trailer' | 'done';

const NO_DATA = new Uint8Array(0);
const HTTP_PREFIX = 'HTTP/';
const BAT_ENTRIES_PER_SECTOR = SECTOR_SIZE / 4;

/**
 * Forward-only push parser of a dynamic or differencing VHD: footer copy, dynamic header, BAT, then blocks
 * in ascending file offset, then the trailing footer. Gaps between structures are skipped (bounded), so
 * qemu-img's layout parses as well as the host's. Holds at most one block; validates as bytes arrive and
 * throws a VhdFormatError subclass at the first defect (and again on any later call).
 */
export class VhdStreamParser {
  readonly #keepData: boolean;
  readonly #requireFullBitmap: boolean;
  #bytesRead = 0;
  #failure: unknown = undefined;

  // The structure being read: bytes before #phaseStart are skipped, then #phaseLength bytes are collected.
  #phase: Phase = 'footer';
  #phaseStart = 0;
  #phaseLength = FOOTER_SIZE;
  #buffer: Uint8Array | undefined = new Uint8Array(FOOTER_SIZE);
  #filled = 0;

  #footerBytes: Uint8Array | undefined;
  #footer: VhdFooter | undefined;
  #dynamic: DynamicHeader | undefined;
  #blocks = 0;
  #bitmapSize = 0;
  #batEnd = 0;
  #batSector = 0;
  /** Sector offset of each block below the virtual size; ABSENT_BLOCK when absent. */
  #bat: Uint32Array | undefined;
  /** Present block indexes in file order. */
  #order: number[] = [];
  #nextInOrder = 0;
  #bitmap: Uint8Array = NO_DATA;
  #trailerPadding = 0;
  #header: VhdHeaderInfo | undefined;
  #summary: VhdSummary | undefined;

  constructor(options: VhdStreamParserOptions = {}) {
    this.#keepData = options.keepBlockData ?? true;
    this.#requireFullBitmap = options.requireFullBitmap ?? true;
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Available as soon as the header and BAT are parsed (undefined before). */
  get header(): VhdHeaderInfo | undefined {
    return this.#header;
  }

  /** Feed the next chunk (any size); returns the blocks this chunk completed. */
  write(chunk: Uint8Array): VhdBlock[] {
    if (this.#failure !== undefined) throw this.#failure;
    const completed: VhdBlock[] = [];
    try {
      this.#consume(chunk, completed);
    } catch (error) {
      this.#failure = error;
      throw error;
    }
    return completed;
  }

  /** Call when the stream ended; throws if the VHD is incomplete. */
  end(): VhdSummary {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#summary !== undefined) return this.#summary;
    try {
      if (this.#phase === 'footer') this.#checkForHttpError(true);
      throw new VhdTruncatedError(this.#describePhase(), this.#bytesRead);
    } catch (error) {
      this.#failure = error;
      throw error;
    }
  }

  #consume(chunk: Uint8Array, completed: VhdBlock[]): void {
    let position = 0;
    while (position < chunk.length) {
      const available = chunk.length - position;
      if (this.#phase === 'done') {
        throw new VhdTrailingDataError(
          `${available} or more bytes follow the trailing footer`,
          this.#bytesRead,
        );
      }
      if (this.#bytesRead < this.#phaseStart) {
        const skipped = Math.min(this.#phaseStart - this.#bytesRead, available);
        position += skipped;
        this.#bytesRead += skipped;
        continue;
      }
      const taken = Math.min(this.#phaseLength - this.#filled, available);
      this.#buffer?.set(chunk.subarray(position, position + taken), this.#filled);
      this.#filled += taken;
      position += taken;
      this.#bytesRead += taken;
      if (this.#phase === 'footer') this.#checkForHttpError(false);
      if (this.#filled === this.#phaseLength) this.#completePhase(completed);
    }
  }

  #begin(phase: Phase, start: number, length: number, buffer: Uint8Array | undefined): void {
    this.#phase = phase;
    this.#phaseStart = start;
    this.#phaseLength = length;
    this.#buffer = buffer;
    this.#filled = 0;
  }

  #completePhase(completed: VhdBlock[]): void {
    switch (this.#phase) {
      case 'footer':
        return this.#completeFooter();
      case 'header':
        return this.#completeHeader();
      case 'bat':
        return this.#completeBatSector();
      case 'bitmap':
        return this.#completeBitmap();
      case 'data':
        return this.#completeData(completed);
      case 'trailer':
        return this.#completeTrailer();
      case 'done':
        return;
    }
  }

  #completeFooter(): void {
    const bytes = this.#buffer!;
    this.#footer = decodeFooter(bytes, 0);
    this.#footerBytes = bytes;
    const headerOffset = this.#footer.dataOffset;
    if (headerOffset < FOOTER_SIZE || headerOffset - FOOTER_SIZE > MAX_GAP_BYTES) {
      throw new VhdBatBoundsError(
        `dynamic header offset ${headerOffset} is not between ${FOOTER_SIZE} and ${FOOTER_SIZE + MAX_GAP_BYTES}`,
        FOOTER_FIELD_OFFSETS.dataOffset,
      );
    }
    this.#begin('header', headerOffset, DYNAMIC_HEADER_SIZE, new Uint8Array(DYNAMIC_HEADER_SIZE));
  }

  #completeHeader(): void {
    const headerStart = this.#phaseStart;
    const dynamic = decodeDynamicHeader(this.#buffer!, headerStart);
    const footer = this.#footer!;
    const blocks = blockCount(footer.virtualSize, dynamic.blockSize);
    if (blocks > MAX_BLOCK_COUNT) {
      throw new VhdLimitError(
        `${blocks} blocks of ${dynamic.blockSize} bytes exceed the limit of ${MAX_BLOCK_COUNT}`,
        headerStart + HEADER_FIELD_OFFSETS.blockSize,
      );
    }
    if (dynamic.maxTableEntries < blocks) {
      throw new VhdBatBoundsError(
        `the BAT holds ${dynamic.maxTableEntries} entries but a disk of ${footer.virtualSize} bytes needs ${blocks}`,
        headerStart + HEADER_FIELD_OFFSETS.maxTableEntries,
      );
    }
    const headerEnd = headerStart + DYNAMIC_HEADER_SIZE;
    if (dynamic.tableOffset < headerEnd || dynamic.tableOffset - headerEnd > MAX_GAP_BYTES) {
      throw new VhdBatBoundsError(
        `table offset ${dynamic.tableOffset} is not between ${headerEnd} and ${headerEnd + MAX_GAP_BYTES}`,
        headerStart + HEADER_FIELD_OFFSETS.tableOffset,
      );
    }
    this.#dynamic = dynamic;
    this.#blocks = blocks;
    this.#bitmapSize = bitmapByteLength(dynamic.blockSize);
    this.#batEnd = dynamic.tableOffset + batByteLength(dynamic.maxTableEntries);
    this.#bat = new Uint32Array(blocks).fill(ABSENT_BLOCK);
    if (dynamic.maxTableEntries === 0) return this.#completeBat();
    this.#begin('bat', dynamic.tableOffset, SECTOR_SIZE, new Uint8Array(SECTOR_SIZE));
  }

  #completeBatSector(): void {
    const dynamic = this.#dynamic!;
    const bat = this.#bat!;
    const sector = Buffer.from(this.#buffer!.buffer, this.#buffer!.byteOffset, SECTOR_SIZE);
    const first = this.#batSector * BAT_ENTRIES_PER_SECTOR;
    const count = Math.min(BAT_ENTRIES_PER_SECTOR, dynamic.maxTableEntries - first);
    for (let i = 0; i < count; i++) {
      const sectorOffset = sector.readUInt32BE(i * 4);
      if (sectorOffset === ABSENT_BLOCK) continue;
      const index = first + i;
      const entryOffset = this.#phaseStart + i * 4;
      if (index >= this.#blocks) {
        throw new VhdBatBoundsError(
          `BAT entry ${index} is present but the disk has ${this.#blocks} blocks`,
          entryOffset,
        );
      }
      if (sectorOffset * SECTOR_SIZE < this.#batEnd) {
        throw new VhdBatBoundsError(
          `block ${index} at byte ${sectorOffset * SECTOR_SIZE} lies inside the metadata ending at ${this.#batEnd}`,
          entryOffset,
        );
      }
      bat[index] = sectorOffset;
      this.#order.push(index);
    }
    this.#batSector += 1;
    if (first + BAT_ENTRIES_PER_SECTOR < dynamic.maxTableEntries) {
      this.#begin('bat', this.#phaseStart + SECTOR_SIZE, SECTOR_SIZE, this.#buffer);
    } else {
      this.#completeBat();
    }
  }

  /** All entries read: lay the present blocks out in file order and check they follow one another. */
  #completeBat(): void {
    const dynamic = this.#dynamic!;
    const bat = this.#bat!;
    this.#order.sort((a, b) => bat[a]! - bat[b]!);
    let end = this.#batEnd;
    for (const index of this.#order) {
      const start = bat[index]! * SECTOR_SIZE;
      const entryOffset = dynamic.tableOffset + index * 4;
      if (start < end) {
        throw new VhdBlockOrderError(
          `block ${index} at byte ${start} starts before the previous block ends at byte ${end}`,
          entryOffset,
        );
      }
      if (start - end > MAX_GAP_BYTES) {
        throw new VhdBatBoundsError(
          `block ${index} at byte ${start} leaves a gap of more than ${MAX_GAP_BYTES} bytes`,
          entryOffset,
        );
      }
      end = start + this.#bitmapSize + dynamic.blockSize;
    }
    const footer = this.#footer!;
    this.#header = {
      virtualSize: footer.virtualSize,
      diskType: footer.diskType,
      blockSize: dynamic.blockSize,
      maxTableEntries: dynamic.maxTableEntries,
      presentBlocks: this.#order.length,
    };
    this.#beginNextBlock(this.#batEnd);
  }

  #beginNextBlock(previousEnd: number): void {
    const index = this.#order[this.#nextInOrder];
    if (index === undefined) {
      this.#begin('trailer', previousEnd, FOOTER_SIZE, new Uint8Array(FOOTER_SIZE));
      return;
    }
    const start = this.#bat![index]! * SECTOR_SIZE;
    this.#begin('bitmap', start, this.#bitmapSize, new Uint8Array(this.#bitmapSize));
  }

  #completeBitmap(): void {
    this.#bitmap = this.#buffer!;
    if (this.#requireFullBitmap) {
      const lacking = firstUnmarkedBitmapByte(this.#bitmap, this.#dynamic!.blockSize);
      if (lacking !== undefined) {
        throw new VhdBitmapNotFullError(
          this.#order[this.#nextInOrder]!,
          this.#phaseStart + lacking,
          this.#bitmap[lacking]!,
        );
      }
    }
    const blockSize = this.#dynamic!.blockSize;
    const data = this.#keepData ? new Uint8Array(blockSize) : undefined;
    this.#begin('data', this.#phaseStart + this.#bitmapSize, blockSize, data);
  }

  #completeData(completed: VhdBlock[]): void {
    const index = this.#order[this.#nextInOrder]!;
    completed.push({
      index,
      bitmap: this.#bitmap,
      data: this.#buffer ?? NO_DATA,
      fileOffset: this.#phaseStart - this.#bitmapSize,
    });
    this.#bitmap = NO_DATA;
    this.#nextInOrder += 1;
    this.#beginNextBlock(this.#phaseStart + this.#dynamic!.blockSize);
  }

  #completeTrailer(): void {
    const trailer = this.#buffer!;
    if (Buffer.compare(trailer, this.#footerBytes!) === 0) {
      this.#phase = 'done';
      this.#buffer = undefined;
      const footer = this.#footer!;
      this.#summary = {
        virtualSize: footer.virtualSize,
        diskType: footer.diskType,
        blockSize: this.#dynamic!.blockSize,
        presentBlocks: this.#order.length,
        bytesRead: this.#bytesRead,
        uniqueId: Buffer.from(footer.uniqueId).toString('hex'),
      };
      return;
    }
    // Some writers leave zeroed sectors before the footer that ends the file.
    if (trailer.every((byte) => byte === 0) && this.#trailerPadding < MAX_GAP_BYTES) {
      this.#trailerPadding += FOOTER_SIZE;
      this.#begin('trailer', this.#phaseStart + FOOTER_SIZE, FOOTER_SIZE, trailer);
      return;
    }
    throw new VhdFooterMismatchError('the trailing footer differs from the leading one', this.#phaseStart);
  }

  #checkForHttpError(atEnd: boolean): void {
    const bytes = this.#buffer!;
    if (this.#filled < HTTP_PREFIX.length) return;
    if (Buffer.from(bytes.buffer, bytes.byteOffset, HTTP_PREFIX.length).toString('latin1') !== HTTP_PREFIX) {
      return;
    }
    const seen = bytes.subarray(0, this.#filled);
    const lineEnd = seen.indexOf(0x0a);
    if (lineEnd < 0 && !atEnd && this.#filled < this.#phaseLength) return;
    const line = Buffer.from(seen.subarray(0, lineEnd < 0 ? seen.length : lineEnd)).toString('latin1');
    throw new HttpErrorInBody(line.replace(/\r$/, '').slice(0, 200));
  }

  #describePhase(): string {
    const progress = `${this.#filled} of ${this.#phaseLength} bytes`;
    const index = this.#order[this.#nextInOrder];
    switch (this.#phase) {
      case 'footer':
        return `the leading footer (${progress})`;
      case 'header':
        return `the dynamic header at byte ${this.#phaseStart} (${progress})`;
      case 'bat':
        return `the BAT at byte ${this.#dynamic!.tableOffset} (sector ${this.#batSector}, ${progress})`;
      case 'bitmap':
        return `the bitmap of block ${index} at byte ${this.#phaseStart} (${progress})`;
      case 'data':
        return `the data of block ${index} at byte ${this.#phaseStart} (${progress})`;
      case 'trailer':
        return `the trailing footer at byte ${this.#phaseStart} (${progress})`;
      case 'done':
        return 'nothing';
    }
  }
}

/** True when the first blockSize / 512 bits (most significant bit first) are all set. */
export function bitmapMarksEverySector(bitmap: Uint8Array, blockSize: number): boolean {
  return firstUnmarkedBitmapByte(bitmap, blockSize) === undefined;
}

/** Index of the first bitmap byte lacking one of the block's blockSize / 512 sector bits; undefined if none. */
export function firstUnmarkedBitmapByte(bitmap: Uint8Array, blockSize: number): number | undefined {
  const sectors = blockSize / SECTOR_SIZE;
  const fullBytes = Math.floor(sectors / 8);
  for (let i = 0; i < fullBytes; i++) if (bitmap[i] !== 0xff) return i;
  const restBits = sectors % 8;
  if (restBits === 0) return undefined;
  const mask = (0xff << (8 - restBits)) & 0xff;
  return ((bitmap[fullBytes] ?? 0) & mask) === mask ? undefined : fullBytes;
}
