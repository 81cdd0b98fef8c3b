import type { VmDescription } from '../vm/describe.ts';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { CATALOG_READS_IN_FLIGHT, mapConcurrently } from '../shared/concurrently.ts';
import { listKeysUnder } from './catalog.ts';
import type { CatalogLocation } from './keys.ts';
import { CatalogError } from './manifest.ts';

export const VM_MANIFEST_FORMAT_VERSION = 1;

/** A disk of a VM restore point: its slot, and the restore point of its own series it restores from. */
export interface VmManifestDisk {
  readonly userdevice: string;
  readonly bootable: boolean;
  readonly mode: 'RO' | 'RW';
  /** The VM's disk: the series (`<pool>/<vdiUuid>/`) its backups are in. */
  readonly vdiUuid: string;
  readonly nameLabel: string;
  readonly virtualSize: number;
  /** That series' restore point taken with this VM point. */
  readonly backupId: string;
}

/**
 * A VM restore point (docs/design.md § VM backups): written last, once every disk committed, so its
 * presence means every disk it names has a restore point.
 */
export interface VmManifest extends Omit<VmDescription, 'disks'> {
  readonly formatVersion: typeof VM_MANIFEST_FORMAT_VERSION;
  readonly vmBackupId: string;
  readonly pool: string;
  readonly vmUuid: string;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly disks: readonly VmManifestDisk[];
}

/** `<prefix>/<pool>/vms/<vm-uuid>/`: beside the disks' series, which are named by uuid. */
export function vmSeriesPrefix(location: CatalogLocation, pool: string, vmUuid: string): string {
  return `${location.prefix ? location.prefix + '/' : ''}${pool}/vms/${vmUuid}/`;
}

export function vmManifestKey(location: CatalogLocation, pool: string, vmUuid: string, vmBackupId: string) {
  return `${vmSeriesPrefix(location, pool, vmUuid)}${vmBackupId}.json`;
}

/** Reads a VM manifest, refusing one that lacks what a restore needs, naming each problem. */
export function parseVmManifest(text: string, key: string): VmManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CatalogError(`VM manifest ${key} is not JSON`);
  }
  const m = value as Partial<VmManifest>;
  const problems: string[] = [];
  if (m.formatVersion !== VM_MANIFEST_FORMAT_VERSION)
    problems.push(`formatVersion ${String(m.formatVersion)}`);
  for (const field of ['vmBackupId', 'pool', 'vmUuid', 'startedAt', 'endedAt'] as const) {
    if (typeof m[field] !== 'string' || m[field] === '') problems.push(`${field} missing`);
  }
  if (typeof m.record !== 'object' || m.record === null) problems.push('record missing');
  if (!Array.isArray(m.disks) || m.disks.length === 0) problems.push('no disks');
  else {
    m.disks.forEach((disk, index) => {
      if (typeof disk?.backupId !== 'string' || typeof disk.vdiUuid !== 'string')
        problems.push(`disks[${index}] without vdiUuid and backupId`);
      if (typeof disk?.userdevice !== 'string') problems.push(`disks[${index}] without userdevice`);
    });
  }
  for (const field of ['excludedDisks', 'removableDrives', 'vifs'] as const) {
    if (!Array.isArray(m[field])) problems.push(`${field} missing`);
  }
  if (problems.length) throw new CatalogError(`VM manifest ${key} is invalid: ${problems.join(', ')}`);
  return m as VmManifest;
}

/** Every VM restore point of one VM, oldest first. */
export async function listVmManifests(
  s3: S3Client,
  location: CatalogLocation,
  pool: string,
  vmUuid: string,
): Promise<VmManifest[]> {
  const prefix = vmSeriesPrefix(location, pool, vmUuid);
  const keys = (await listKeysUnder(s3, location.bucket, prefix)).filter((key) => key.endsWith('.json'));
  return mapConcurrently(keys, CATALOG_READS_IN_FLIGHT, async (key) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: key }));
    return parseVmManifest((await object.Body?.transformToString('utf8')) ?? '', key);
  });
}
