import {
  CLUSTER_BITS,
  CLUSTER_SIZE,
  HEADER_LENGTH,
  MAX_VIRTUAL_SIZE,
  QCOW2_MAGIC,
  QCOW2_VERSION,
  REFCOUNT_ORDER,
  SECTOR_SIZE,
} from './constants.ts';
import {
  Qcow2ExtensionError,
  Qcow2HeaderError,
  Qcow2LimitError,
  Qcow2MagicError,
  Qcow2SizeMismatchError,
} from './errors.ts';
import { guestClusterCount, l1SizeFor, qcow2Layout } from './layout.ts';
import type { Qcow2Layout } from './layout.ts';

// Field offsets of the version 3 header (QEMU docs/interop/qcow2.txt, "Header").
const SIZE = 24;
const L1_SIZE = 36;
const L1_TABLE_OFFSET = 40;
const REFCOUNT_TABLE_OFFSET = 48;
const REFCOUNT_TABLE_CLUSTERS = 56;
const COMPRESSION_TYPE = 104;

/** Fields that hold one value in every image of the host: [name, offset, width in bytes, value]. */
const FIXED_FIELDS: readonly (readonly [string, number, 4 | 8, number])[] = [
  ['version', 4, 4, QCOW2_VERSION],
  ['backing_file_offset', 8, 8, 0],
  ['backing_file_size', 16, 4, 0],
  ['cluster_bits', 20, 4, CLUSTER_BITS],
  ['crypt_method', 32, 4, 0],
  ['refcount_table_offset', REFCOUNT_TABLE_OFFSET, 8, CLUSTER_SIZE],
  ['nb_snapshots', 60, 4, 0],
  ['snapshots_offset', 64, 8, 0],
  ['incompatible_features', 72, 8, 0],
  ['compatible_features', 80, 8, 0],
  ['autoclear_features', 88, 8, 0],
  ['refcount_order', 96, 4, REFCOUNT_ORDER],
  ['header_length', 100, 4, HEADER_LENGTH],
];

const FEATURE_NAME_TABLE = 0x6803f857;
/** The feature-name table the host's exporter writes (type, bit, name), as QEMU 9.0 does. */
const FEATURE_NAMES: readonly (readonly [number, number, string])[] = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];
const FEATURE_ENTRY = 48;

/** The header extensions: the feature-name table, then the end marker (8 zero bytes) at byte 504. */
const EXTENSIONS = ((): Buffer => {
  const bytes = Buffer.alloc(8 + FEATURE_NAMES.length * FEATURE_ENTRY);
  bytes.writeUInt32BE(FEATURE_NAME_TABLE, 0);
  bytes.writeUInt32BE(FEATURE_NAMES.length * FEATURE_ENTRY, 4);
  FEATURE_NAMES.forEach(([type, bit, name], i) => {
    bytes[8 + i * FEATURE_ENTRY] = type;
    bytes[9 + i * FEATURE_ENTRY] = bit;
    bytes.write(name, 10 + i * FEATURE_ENTRY, 'latin1');
  });
  return bytes;
})();
const EXTENSIONS_END = HEADER_LENGTH + EXTENSIONS.length;

/** What cluster 0 says; the refcount table and L1 offset are checked against the tables that follow. */
export interface Qcow2Header {
  readonly virtualSize: number;
  readonly clusterCount: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly refcountTableClusters: number;
}

/** Cluster 0 of the host's layout. */
export function encodeHeader(layout: Qcow2Layout): Buffer {
  const bytes = Buffer.alloc(CLUSTER_SIZE);
  bytes.writeUInt32BE(QCOW2_MAGIC, 0);
  for (const [, offset, width, value] of FIXED_FIELDS) {
    if (width === 4) bytes.writeUInt32BE(value, offset);
    else bytes.writeBigUInt64BE(BigInt(value), offset);
  }
  bytes.writeBigUInt64BE(BigInt(layout.virtualSize), SIZE);
  bytes.writeUInt32BE(layout.l1Size, L1_SIZE);
  const l1TableOffset = layout.l1Clusters === 0 ? 0 : layout.l1Start * CLUSTER_SIZE;
  bytes.writeBigUInt64BE(BigInt(l1TableOffset), L1_TABLE_OFFSET);
  bytes.writeUInt32BE(layout.refcountTableClusters, REFCOUNT_TABLE_CLUSTERS);
  EXTENSIONS.copy(bytes, HEADER_LENGTH);
  return bytes;
}

/**
 * Validates cluster 0 against the host's layout, field by field, and returns what the rest is checked
 * against. `expectedSize`, when given, is the size the disk must have (the header has no checksum).
 */
export function decodeHeader(cluster: Uint8Array, expectedSize?: number): Qcow2Header {
  const view = Buffer.from(cluster.buffer, cluster.byteOffset, cluster.byteLength);
  const magic = view.readUInt32BE(0);
  if (magic !== QCOW2_MAGIC) {
    throw new Qcow2MagicError(`magic is 0x${magic.toString(16).padStart(8, '0')}, not "QFI\\xfb"`, 0);
  }
  for (const [field, offset, width, value] of FIXED_FIELDS) {
    const found = width === 4 ? BigInt(view.readUInt32BE(offset)) : view.readBigUInt64BE(offset);
    if (found !== BigInt(value)) {
      throw new Qcow2HeaderError(field, `${found}, the host writes ${value}`, offset);
    }
  }
  const size = view.readBigUInt64BE(SIZE);
  if (size > BigInt(MAX_VIRTUAL_SIZE)) {
    throw new Qcow2LimitError(`virtual size ${size} exceeds ${MAX_VIRTUAL_SIZE}`, SIZE);
  }
  const virtualSize = Number(size);
  if (expectedSize !== undefined && virtualSize !== expectedSize) {
    throw new Qcow2SizeMismatchError(`virtual size is ${virtualSize}, expected ${expectedSize}`, SIZE);
  }
  if (virtualSize % SECTOR_SIZE !== 0) {
    throw new Qcow2HeaderError('size', `${virtualSize} is not a multiple of ${SECTOR_SIZE}`, SIZE);
  }
  const clusterCount = guestClusterCount(virtualSize);
  const l1Size = view.readUInt32BE(L1_SIZE);
  if (l1Size !== l1SizeFor(clusterCount)) {
    throw new Qcow2HeaderError(
      'l1_size',
      `${l1Size}, a disk of ${clusterCount} clusters needs ${l1SizeFor(clusterCount)}`,
      L1_SIZE,
    );
  }
  const rt = view.readUInt32BE(REFCOUNT_TABLE_CLUSTERS);
  const most = qcow2Layout(virtualSize, l1Size, clusterCount).refcountTableClusters;
  if (rt < 1 || rt > most) {
    throw new Qcow2HeaderError(
      'refcount_table_clusters',
      `${rt}, a disk of ${clusterCount} clusters needs 1 to ${most}`,
      REFCOUNT_TABLE_CLUSTERS,
    );
  }
  const l1TableOffset = view.readBigUInt64BE(L1_TABLE_OFFSET);
  if (l1TableOffset > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Qcow2HeaderError('l1_table_offset', `${l1TableOffset} is out of range`, L1_TABLE_OFFSET);
  }
  checkExtensions(view);
  return {
    virtualSize,
    clusterCount,
    l1Size,
    l1TableOffset: Number(l1TableOffset),
    refcountTableClusters: rt,
  };
}

/** The compression type byte and its padding, the extensions, then zeros to the end of the cluster. */
function checkExtensions(view: Buffer): void {
  for (let at = COMPRESSION_TYPE; at < HEADER_LENGTH; at++) {
    if (view[at] !== 0) {
      const field = at === COMPRESSION_TYPE ? 'compression_type' : 'header padding';
      throw new Qcow2HeaderError(field, `byte ${view[at]}, the host writes 0`, at);
    }
  }
  for (let i = 0; i < EXTENSIONS.length; i++) {
    if (view[HEADER_LENGTH + i] !== EXTENSIONS[i]) {
      throw new Qcow2ExtensionError(
        `the header extensions differ from the host's feature-name table at its byte ${i}`,
        HEADER_LENGTH + i,
      );
    }
  }
  for (let at = EXTENSIONS_END; at < view.length; at++) {
    if (view[at] !== 0) {
      const where =
        at < EXTENSIONS_END + 8 ? 'the end-of-extensions marker' : 'the zero padding of cluster 0';
      throw new Qcow2ExtensionError(`byte ${view[at]} in ${where}`, at);
    }
  }
}

export const HEADER_FIELD_OFFSETS = {
  size: SIZE,
  l1Size: L1_SIZE,
  l1TableOffset: L1_TABLE_OFFSET,
  refcountTableClusters: REFCOUNT_TABLE_CLUSTERS,
} as const;
