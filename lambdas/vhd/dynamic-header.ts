import { vhdChecksum } from './checksum.ts';
import {
  DYNAMIC_HEADER_COOKIE,
  DYNAMIC_HEADER_SIZE,
  DYNAMIC_HEADER_VERSION,
  MAX_BLOCK_SIZE,
  MAX_TABLE_ENTRIES,
  MIN_BLOCK_SIZE,
  SECTOR_SIZE,
} from './constants.ts';
import {
  VhdBatBoundsError,
  VhdBlockSizeError,
  VhdHeaderChecksumError,
  VhdHeaderCookieError,
  VhdLimitError,
  VhdUnsupportedError,
} from './errors.ts';
import { readSafeUint64, writeUint64 } from './uint64.ts';

// Field offsets inside the 1024-byte dynamic disk header (VHD specification, "Dynamic Disk Header Format").
const DATA_OFFSET = 8;
const TABLE_OFFSET = 16;
const HEADER_VERSION = 24;
const MAX_ENTRIES = 28;
const BLOCK_SIZE = 32;
const CHECKSUM = 36;

export interface DynamicHeader {
  readonly tableOffset: number;
  readonly maxTableEntries: number;
  readonly blockSize: number;
}

/** The parent fields stay zero: the host ignores them on import and we never chain by them. */
export function encodeDynamicHeader(header: DynamicHeader): Uint8Array {
  const bytes = Buffer.alloc(DYNAMIC_HEADER_SIZE);
  bytes.write(DYNAMIC_HEADER_COOKIE, 0, 'latin1');
  bytes.fill(0xff, DATA_OFFSET, DATA_OFFSET + 8); // unused, all ones by the specification
  writeUint64(bytes, TABLE_OFFSET, header.tableOffset);
  bytes.writeUInt32BE(DYNAMIC_HEADER_VERSION, HEADER_VERSION);
  bytes.writeUInt32BE(header.maxTableEntries, MAX_ENTRIES);
  bytes.writeUInt32BE(header.blockSize, BLOCK_SIZE);
  bytes.writeUInt32BE(vhdChecksum(bytes, CHECKSUM), CHECKSUM);
  return bytes;
}

/** Validates and decodes a header read at `streamOffset`; layout checks against the disk are the parser's. */
export function decodeDynamicHeader(bytes: Uint8Array, streamOffset: number): DynamicHeader {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cookie = view.toString('latin1', 0, 8);
  if (cookie !== DYNAMIC_HEADER_COOKIE) {
    throw new VhdHeaderCookieError(
      `dynamic header cookie is ${JSON.stringify(cookie)}, not "cxsparse"`,
      streamOffset,
    );
  }
  const stored = view.readUInt32BE(CHECKSUM);
  const computed = vhdChecksum(bytes, CHECKSUM);
  if (stored !== computed) {
    throw new VhdHeaderChecksumError(
      `dynamic header checksum is 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`,
      streamOffset + CHECKSUM,
    );
  }
  const version = view.readUInt32BE(HEADER_VERSION);
  if (version !== DYNAMIC_HEADER_VERSION) {
    throw new VhdUnsupportedError(
      `dynamic header version 0x${version.toString(16)} is not 0x10000`,
      streamOffset + HEADER_VERSION,
    );
  }
  const blockSize = view.readUInt32BE(BLOCK_SIZE);
  const powerOfTwo = blockSize > 0 && (blockSize & (blockSize - 1)) === 0;
  if (!powerOfTwo || blockSize % SECTOR_SIZE !== 0) {
    throw new VhdBlockSizeError(
      `block size ${blockSize} is not a power of two multiple of ${SECTOR_SIZE}`,
      streamOffset + BLOCK_SIZE,
    );
  }
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    throw new VhdBlockSizeError(
      `block size ${blockSize} is outside ${MIN_BLOCK_SIZE}..${MAX_BLOCK_SIZE}`,
      streamOffset + BLOCK_SIZE,
    );
  }
  const maxTableEntries = view.readUInt32BE(MAX_ENTRIES);
  if (maxTableEntries > MAX_TABLE_ENTRIES) {
    throw new VhdLimitError(
      `max table entries ${maxTableEntries} exceeds ${MAX_TABLE_ENTRIES}`,
      streamOffset + MAX_ENTRIES,
    );
  }
  const tableOffset = readSafeUint64(bytes, TABLE_OFFSET);
  if (tableOffset === undefined) {
    throw new VhdBatBoundsError(
      `table offset 0x${view.readBigUInt64BE(TABLE_OFFSET).toString(16)} is out of range`,
      streamOffset + TABLE_OFFSET,
    );
  }
  return { tableOffset, maxTableEntries, blockSize };
}

export const HEADER_FIELD_OFFSETS = {
  tableOffset: TABLE_OFFSET,
  maxTableEntries: MAX_ENTRIES,
  blockSize: BLOCK_SIZE,
  checksum: CHECKSUM,
} as const;
