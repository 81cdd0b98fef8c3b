import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listSeriesKeys } from './catalog.ts';
import type { CatalogLocation } from './keys.ts';
import { manifestKey, OBJECT_EXTENSIONS, seriesPrefix } from './keys.ts';
import { chainOf, type Manifest } from './manifest.ts';
import { silentLog, type Log } from '../shared/log.ts';

/** Per job: keep the newest `keep` restore points; take a full at least every `fullEvery` backups. */
export interface RetentionPolicy {
  readonly keep: number;
  readonly fullEvery: number;
}

export interface RetentionPlan {
  readonly retained: readonly string[];
  /** Restore points no retained point needs, newest first (children before their parents). */
  readonly expired: readonly Manifest[];
}

/** What to delete: everything that is neither among the newest `keep` points nor needed by one of them. */
export function planRetention(manifests: readonly Manifest[], policy: RetentionPolicy): RetentionPlan {
  const sorted = [...manifests].sort((a, b) => a.backupId.localeCompare(b.backupId));
  const retained = sorted.slice(-policy.keep);
  const needed = new Set(retained.flatMap((m) => chainOf(sorted, m.backupId).map((c) => c.backupId)));
  return {
    retained: retained.map((m) => m.backupId),
    expired: sorted.filter((m) => !needed.has(m.backupId)).reverse(),
  };
}

/**
 * What one retention run deleted, in counts: the keys themselves go to the logs, one line each, never
 * into a step's output (a first run over a long catalog deletes thousands; Step Functions passes at most
 * 256 KiB between states).
 */
export interface RetentionDeletions {
  /** Restore points deleted (manifest, then object). */
  restorePoints: number;
  /** Objects deleted that had no manifest (an earlier run interrupted between the two). */
  orphanObjects: number;
  /** S3 keys deleted in all. */
  keys: number;
  /** The first few restore points deleted (newest first), as a pointer into the logs. */
  readonly firstBackupIds: string[];
}

/** How many deleted backup ids a report carries at most. */
export const RETENTION_REPORTED_IDS = 3;

export function noDeletions(): RetentionDeletions {
  return { restorePoints: 0, orphanObjects: 0, keys: 0, firstBackupIds: [] };
}

/**
 * Deletes expired restore points: each one's manifest first (so no manifest ever points at a missing
 * object), then its object; children before parents, so an interruption at any step leaves every
 * remaining manifest with its whole chain. Objects whose manifest is gone (an earlier interrupted run)
 * and older than `olderThan` go too. Counts into `tally` as it goes (so an interrupted run still says
 * how far it got) and logs every key it deletes.
 */
export async function applyRetention(
  s3: S3Client,
  catalog: CatalogLocation,
  pool: string,
  vdiUuid: string,
  plan: RetentionPlan,
  olderThan: string,
  options: { readonly log?: Log; readonly tally?: RetentionDeletions } = {},
): Promise<RetentionDeletions> {
  const log = options.log ?? silentLog;
  const tally = options.tally ?? noDeletions();
  const remove = async (key: string, what: string) => {
    await s3.send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: key }));
    tally.keys++;
    log.info('retention deleted', { what, key });
  };
  for (const manifest of plan.expired) {
    await remove(manifestKey(catalog, pool, vdiUuid, manifest.backupId), 'manifest');
    await remove(manifest.objectKey, 'object');
    tally.restorePoints++;
    if (tally.firstBackupIds.length < RETENTION_REPORTED_IDS) tally.firstBackupIds.push(manifest.backupId);
  }
  for (const key of await orphanObjects(s3, catalog, pool, vdiUuid, olderThan)) {
    await remove(key, 'object without a manifest');
    tally.orphanObjects++;
  }
  return tally;
}

/** Backup objects (`.vhd`, `.qcow2`) without a manifest, from backups before `olderThan` (never a run still in flight). */
async function orphanObjects(
  s3: S3Client,
  catalog: CatalogLocation,
  pool: string,
  vdiUuid: string,
  olderThan: string,
): Promise<string[]> {
  const prefix = seriesPrefix(catalog, pool, vdiUuid);
  const keys = new Set(await listSeriesKeys(s3, catalog, pool, vdiUuid));
  return [...keys].filter((key) => {
    const extension = OBJECT_EXTENSIONS.find((candidate) => key.endsWith(candidate));
    if (extension === undefined) return false;
    const backupId = key.slice(prefix.length, -extension.length);
    return backupId < olderThan && !keys.has(`${prefix}${backupId}.json`);
  });
}
