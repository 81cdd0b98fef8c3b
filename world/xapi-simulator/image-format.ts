/**
 * What backs a VDI (vhd, qcow2 or raw) and the host rules that follow from it (docs/design.md § QCOW2
 * stream): which format a new VDI gets, how big each may be, and which clusters a `format=qcow2` export
 * sends. The simulator's own code, like vhd-host.ts and qcow2-host.ts: nothing here comes from `lambdas/`.
 */
import type { ImageFormat, SrState } from './pool.ts';
import type { SparseDisk } from './sparse-disk.ts';
import { BLOCK_SIZE, CLUSTER_SIZE, CLUSTERS_PER_BLOCK } from './sparse-disk.ts';

const GiB = 1024 ** 3;
/** xapi's Constants.max_vhd_size, and SM's largest VHD VDI: 2040 GiB. */
export const MAX_VHD_SIZE = 2040 * GiB;
/** XCP-ng's largest qcow2 VDI: 16,381 GiB. */
export const MAX_QCOW2_SIZE = 16_381 * GiB;

export const IMAGE_FORMATS: readonly ImageFormat[] = ['vhd', 'qcow2', 'raw'];

export function isImageFormat(value: unknown): value is ImageFormat {
  return typeof value === 'string' && (IMAGE_FORMATS as readonly string[]).includes(value);
}

/** The format SM gives a new VDI: the one asked for, else the SR's preference, and qcow2 over 2040 GiB. */
export function newVdiImageFormat(
  sr: SrState,
  virtualSize: number,
  asked: ImageFormat | undefined,
): ImageFormat {
  if (asked !== undefined) return asked;
  if (virtualSize > MAX_VHD_SIZE) return 'qcow2';
  return sr.preferredImageFormats[0] ?? 'vhd';
}

/** The largest VDI of a format. */
export function maxVdiSize(format: ImageFormat): number {
  return format === 'vhd' ? MAX_VHD_SIZE : MAX_QCOW2_SIZE;
}

/**
 * The clusters a qcow2 export sends, grouped by 2 MiB block: `blocks` ascending, `masks[i]` bit c for
 * cluster c of block `blocks[i]` (never 0). Memory grows with the allocated blocks, never with the disk.
 */
export interface ClusterSelection {
  readonly blocks: number[];
  readonly masks: Uint32Array;
}

/**
 * "map" mode (a qcow2-backed VDI on xapi 26.0+): allocation is read from the image's metadata, so every
 * allocated cluster goes, zeros included; a delta sends the clusters written since the base (identical
 * bytes included). "scan" mode (VHD-backed or raw VDIs, and qcow2-backed ones on older hosts): the device
 * is read whole, all-zero clusters are skipped, and a delta sends the clusters whose bytes differ.
 */
export function selectExportClusters(
  disk: SparseDisk,
  base: SparseDisk | undefined,
  mode: 'map' | 'scan',
): ClusterSelection {
  const candidates = base === undefined ? disk.allocatedIndexes() : disk.changedSince(base);
  const blocks: number[] = [];
  const masks: number[] = [];
  for (const index of candidates) {
    const inDisk = clustersInDisk(disk.virtualSize, index);
    let mask: number;
    if (mode === 'map') mask = mapMask(disk, base, index);
    else if (base === undefined) mask = nonZeroMask(disk, index);
    else mask = differingMask(disk, base, index);
    mask &= inDisk;
    if (mask !== 0) {
      blocks.push(index);
      masks.push(mask);
    }
  }
  return { blocks, masks: Uint32Array.from(masks, (mask) => mask >>> 0) };
}

/** The clusters of a block that lie (at least partly) inside the virtual size. */
function clustersInDisk(virtualSize: number, index: number): number {
  const bytes = Math.min(BLOCK_SIZE, virtualSize - index * BLOCK_SIZE);
  const clusters = Math.ceil(bytes / CLUSTER_SIZE);
  return clusters >= CLUSTERS_PER_BLOCK ? -1 : (1 << clusters) - 1;
}

function mapMask(disk: SparseDisk, base: SparseDisk | undefined, index: number): number {
  const now = disk.clusterVersions(index);
  const before = base?.clusterVersions(index);
  let mask = 0;
  for (let c = 0; c < CLUSTERS_PER_BLOCK; c++) {
    const version = now?.[c] ?? 0;
    // A full: what the image has allocated. A delta: what changed hands since the base (a cluster the
    // base had and this image lacks reads as zeros now, so it travels as a zero cluster).
    if (before === undefined ? version !== 0 : version !== before[c]) mask |= 1 << c;
  }
  return mask;
}

function nonZeroMask(disk: SparseDisk, index: number): number {
  const pattern = disk.block(index)?.pattern;
  if (pattern !== undefined) {
    // Generated content has no all-zero cluster: only a pattern's zero tail is skipped.
    const used = Math.ceil(pattern.filled / CLUSTER_SIZE);
    return used >= CLUSTERS_PER_BLOCK ? -1 : (1 << used) - 1;
  }
  const data = disk.readBlock(index);
  let mask = 0;
  for (let c = 0; c < CLUSTERS_PER_BLOCK; c++) {
    if (!isZero(data.subarray(c * CLUSTER_SIZE, (c + 1) * CLUSTER_SIZE))) mask |= 1 << c;
  }
  return mask;
}

function differingMask(disk: SparseDisk, base: SparseDisk, index: number): number {
  const now = disk.readBlock(index);
  const before = base.readBlock(index);
  let mask = 0;
  for (let c = 0; c < CLUSTERS_PER_BLOCK; c++) {
    const from = c * CLUSTER_SIZE;
    const a = Buffer.from(now.buffer, now.byteOffset + from, CLUSTER_SIZE);
    const b = Buffer.from(before.buffer, before.byteOffset + from, CLUSTER_SIZE);
    if (!a.equals(b)) mask |= 1 << c;
  }
  return mask;
}

const ZERO_CLUSTER = Buffer.alloc(CLUSTER_SIZE);

function isZero(bytes: Uint8Array): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(
    ZERO_CLUSTER.subarray(0, bytes.length),
  );
}
