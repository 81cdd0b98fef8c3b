import { vhdChecksum } from './checksum.ts';
import {
  CREATOR_APPLICATION,
  CREATOR_HOST_OS,
  CREATOR_VERSION,
  FILE_FORMAT_VERSION,
  FOOTER_COOKIE,
  FOOTER_SIZE,
  MAX_VIRTUAL_SIZE,
  SECTOR_SIZE,
} from './constants.ts';
import {
  VhdFooterChecksumError,
  VhdFooterCookieError,
  VhdLimitError,
  VhdUnsupportedError,
} from './errors.ts';
import { chsGeometry } from './geometry.ts';
import type { VhdDiskType } from './types.ts';
import { readSafeUint64, writeUint64 } from './uint64.ts';

// Field offsets inside the 512-byte footer (VHD specification, "Hard Disk Footer Format").
const FEATURES = 8;
const FORMAT_VERSION = 12;
const DATA_OFFSET = 16;
const TIMESTAMP = 24;
const CREATOR_APP = 28;
const CREATOR_VER = 32;
const CREATOR_OS = 36;
const ORIGINAL_SIZE = 40;
const CURRENT_SIZE = 48;
const GEOMETRY = 56;
const DISK_TYPE = 60;
const CHECKSUM = 64;
const UNIQUE_ID = 68;

const FEATURE_RESERVED = 2; // always set
const DISK_TYPE_FIXED = 2;
const DISK_TYPE_DYNAMIC = 3;
const DISK_TYPE_DIFFERENCING = 4;
/** VHD timestamps count seconds from 2000-01-01T00:00:00Z. */
const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);

export interface VhdFooter {
  readonly virtualSize: number;
  readonly diskType: VhdDiskType;
  /** Stream offset of the dynamic header. */
  readonly dataOffset: number;
  readonly uniqueId: Uint8Array;
}

export interface FooterFields {
  readonly virtualSize: number;
  readonly diskType: VhdDiskType;
  readonly uniqueId: Uint8Array;
  readonly timestamp: Date;
  readonly dataOffset: number;
}

export function encodeFooter(fields: FooterFields): Uint8Array {
  if (fields.uniqueId.length !== 16) throw new RangeError('unique id must be 16 bytes');
  const seconds = Math.floor((fields.timestamp.getTime() - VHD_EPOCH_MS) / 1000);
  if (!(seconds >= 0 && seconds <= 0xffffffff)) {
    throw new RangeError(`timestamp must lie between 2000 and 2136: ${fields.timestamp.toISOString()}`);
  }
  const footer = Buffer.alloc(FOOTER_SIZE);
  footer.write(FOOTER_COOKIE, 0, 'latin1');
  footer.writeUInt32BE(FEATURE_RESERVED, FEATURES);
  footer.writeUInt32BE(FILE_FORMAT_VERSION, FORMAT_VERSION);
  writeUint64(footer, DATA_OFFSET, fields.dataOffset);
  footer.writeUInt32BE(seconds, TIMESTAMP);
  footer.write(CREATOR_APPLICATION, CREATOR_APP, 'latin1');
  footer.writeUInt32BE(CREATOR_VERSION, CREATOR_VER);
  footer.write(CREATOR_HOST_OS, CREATOR_OS, 'latin1');
  writeUint64(footer, ORIGINAL_SIZE, fields.virtualSize);
  writeUint64(footer, CURRENT_SIZE, fields.virtualSize);
  const chs = chsGeometry(fields.virtualSize);
  footer.writeUInt16BE(chs.cylinders, GEOMETRY);
  footer.writeUInt8(chs.heads, GEOMETRY + 2);
  footer.writeUInt8(chs.sectorsPerTrack, GEOMETRY + 3);
  footer.writeUInt32BE(fields.diskType === 'dynamic' ? DISK_TYPE_DYNAMIC : DISK_TYPE_DIFFERENCING, DISK_TYPE);
  footer.set(fields.uniqueId, UNIQUE_ID);
  footer.writeUInt32BE(vhdChecksum(footer, CHECKSUM), CHECKSUM);
  return footer;
}

/** Validates and decodes a footer read at `streamOffset` (error offsets are stream offsets). */
export function decodeFooter(footer: Uint8Array, streamOffset: number): VhdFooter {
  const view = Buffer.from(footer.buffer, footer.byteOffset, footer.byteLength);
  const cookie = view.toString('latin1', 0, 8);
  if (cookie !== FOOTER_COOKIE) {
    throw new VhdFooterCookieError(
      `footer cookie is ${JSON.stringify(cookie)}, not "conectix"`,
      streamOffset,
    );
  }
  const stored = view.readUInt32BE(CHECKSUM);
  const computed = vhdChecksum(footer, CHECKSUM);
  if (stored !== computed) {
    throw new VhdFooterChecksumError(
      `footer checksum is 0x${hex32(stored)}, computed 0x${hex32(computed)}`,
      streamOffset + CHECKSUM,
    );
  }
  const version = view.readUInt32BE(FORMAT_VERSION);
  if (version >>> 16 !== 1) {
    throw new VhdUnsupportedError(
      `file format version 0x${hex32(version)} is not 1.x`,
      streamOffset + FORMAT_VERSION,
    );
  }
  const type = view.readUInt32BE(DISK_TYPE);
  if (type !== DISK_TYPE_DYNAMIC && type !== DISK_TYPE_DIFFERENCING) {
    const what = type === DISK_TYPE_FIXED ? 'fixed disks have no header to stream' : 'unknown disk type';
    throw new VhdUnsupportedError(`disk type ${type}: ${what}`, streamOffset + DISK_TYPE);
  }
  const virtualSize = readSafeUint64(footer, CURRENT_SIZE);
  if (virtualSize === undefined || virtualSize > MAX_VIRTUAL_SIZE) {
    throw new VhdLimitError(
      `virtual size ${view.readBigUInt64BE(CURRENT_SIZE)} exceeds ${MAX_VIRTUAL_SIZE} bytes`,
      streamOffset + CURRENT_SIZE,
    );
  }
  if (virtualSize % SECTOR_SIZE !== 0) {
    throw new VhdLimitError(
      `virtual size ${virtualSize} is not a multiple of ${SECTOR_SIZE}`,
      streamOffset + CURRENT_SIZE,
    );
  }
  const dataOffset = readSafeUint64(footer, DATA_OFFSET);
  if (dataOffset === undefined) {
    throw new VhdLimitError(
      `data offset 0x${view.readBigUInt64BE(DATA_OFFSET).toString(16)} is out of range`,
      streamOffset + DATA_OFFSET,
    );
  }
  return {
    virtualSize,
    diskType: type === DISK_TYPE_DYNAMIC ? 'dynamic' : 'differencing',
    dataOffset,
    uniqueId: footer.slice(UNIQUE_ID, UNIQUE_ID + 16),
  };
}

export const FOOTER_FIELD_OFFSETS = { dataOffset: DATA_OFFSET } as const;

function hex32(value: number): string {
  return value.toString(16).padStart(8, '0');
}
