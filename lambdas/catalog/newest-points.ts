import { CATALOG_READS_IN_FLIGHT, mapConcurrently } from '../shared/concurrently.ts';
import { UUID_PATTERN } from '../shared/input-error.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import { listKeysUnder, readManifest } from './catalog.ts';
import { seriesName, type CatalogLocation } from './keys.ts';

/** A series (one VDI of one pool) and its newest committed restore point. */
export interface NewestRestorePoint {
  /** `<pool>/<vdi-uuid>`, as the snapshots' series tag spells it. */
  readonly series: string;
  readonly backupId: string;
  /** When that point's export ended. */
  readonly endedAt: string;
  /** Seconds from then to `now` (never negative: a host clock ahead of ours). */
  readonly ageSeconds: number;
}

/**
 * The newest restore point of every series in the catalog: one listing of the prefix (backup ids sort by
 * time, so each series' last manifest key is its newest), then that manifest read for its end time. VM
 * points and the work areas are not series of disks and are skipped.
 */
export async function newestRestorePoints(
  s3: S3Client,
  location: CatalogLocation,
  now: Date = new Date(),
): Promise<NewestRestorePoint[]> {
  const root = location.prefix ? `${location.prefix}/` : '';
  const newest = new Map<string, string>();
  for (const key of await listKeysUnder(s3, location.bucket, root)) {
    const [pool, vdiUuid, name, ...rest] = key.slice(root.length).split('/');
    if (rest.length || !pool || !vdiUuid || !name?.endsWith('.json')) continue;
    if (pool.startsWith('.') || !UUID_PATTERN.test(vdiUuid)) continue;
    newest.set(seriesName(pool, vdiUuid), key);
  }
  return mapConcurrently([...newest], CATALOG_READS_IN_FLIGHT, async ([series, key]) => {
    const manifest = await readManifest(s3, location.bucket, key);
    const ageSeconds = Math.max(0, Math.round((now.getTime() - Date.parse(manifest.endedAt)) / 1000));
    return { series, backupId: manifest.backupId, endedAt: manifest.endedAt, ageSeconds };
  });
}
