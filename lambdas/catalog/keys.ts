import type { ImageFormat } from './manifest.ts';

/** The extensions of backup objects, one per image format: `<backup-id>.vhd`, `<backup-id>.qcow2`. */
export const OBJECT_EXTENSIONS: readonly string[] = ['.vhd', '.qcow2'];

/**
 * Where a VDI's backups live: `<prefix>/<pool>/<vdi-uuid>/<backup-id>.{vhd,qcow2,json}` (docs/design.md § The
 * catalog in S3).
 */
export interface CatalogLocation {
  readonly bucket: string;
  /** Key prefix without trailing slash; may be empty. */
  readonly prefix: string;
}

/**
 * The catalog's working areas, beside the series: what one execution hands from step to step (chain
 * documents, Fargate results) and VM descriptions between SnapshotVms and CommitVms. Each execution deletes
 * its own; the bucket's lifecycle expires what a killed one left (`WORK_AREA_EXPIRY_DAYS` in
 * `lambdas/runtime/defaults.ts`).
 */
export const WORK_AREAS = { transfers: '.transfers', vmPending: '.vm-pending' } as const;

/** `<prefix>/<area>/`. */
export function workAreaPrefix(
  location: Pick<CatalogLocation, 'prefix'>,
  area: (typeof WORK_AREAS)[keyof typeof WORK_AREAS],
): string {
  return `${location.prefix ? location.prefix + '/' : ''}${area}/`;
}

export function seriesPrefix(location: CatalogLocation, pool: string, vdiUuid: string): string {
  return `${location.prefix ? location.prefix + '/' : ''}${pool}/${vdiUuid}/`;
}

export function objectKey(
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
  backupId: string,
  format: ImageFormat = 'vhd',
): string {
  return `${seriesPrefix(location, pool, vdiUuid)}${backupId}.${format}`;
}

/**
 * Where a point's synthetic full goes (`<backup-id>.synthetic.vhd`): beside the point's own delta object,
 * which goes once the manifest refers to the new one (docs/design.md § Forever incremental).
 */
export function syntheticObjectKey(
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
  backupId: string,
): string {
  return `${seriesPrefix(location, pool, vdiUuid)}${backupId}.synthetic.vhd`;
}

export function manifestKey(
  location: CatalogLocation,
  pool: string,
  vdiUuid: string,
  backupId: string,
): string {
  return `${seriesPrefix(location, pool, vdiUuid)}${backupId}.json`;
}

/**
 * Backup ids sort by time: `20261126T164000.123Z-full`, `…-delta`, and `…-vm` for a VM restore point.
 * Milliseconds keep two backups started in the same second apart.
 */
export function newBackupId(startedAt: Date, kind: 'full' | 'delta' | 'vm'): string {
  const stamp = startedAt.toISOString().replace(/[-:]/g, '');
  return `${stamp}-${kind}`;
}

/** The series tag on our snapshots: which VDI's backups they belong to. */
export function seriesName(pool: string, vdiUuid: string): string {
  return `${pool}/${vdiUuid}`;
}
