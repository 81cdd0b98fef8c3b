import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listSeriesKeys } from './catalog.ts';
import type { CatalogLocation } from './keys.ts';
import { manifestKey, seriesPrefix } from './keys.ts';
import { chainOf, type Manifest } from './manifest.ts';

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
 * Deletes expired restore points: each one's manifest first (so no manifest ever points at a missing
 * object), then its object; children before parents, so an interruption at any step leaves every
 * remaining manifest with its whole chain. Objects whose manifest is gone (an earlier interrupted run)
 * and older than `olderThan` go too. Returns what was done, in order.
 */
export async function applyRetention(
  s3: S3Client,
  catalog: CatalogLocation,
  pool: string,
  vdiUuid: string,
  plan: RetentionPlan,
  olderThan: string,
): Promise<string[]> {
  const actions: string[] = [];
  const remove = async (key: string) => {
    await s3.send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: key }));
    actions.push(`deleted ${key}`);
  };
  for (const manifest of plan.expired) {
    await remove(manifestKey(catalog, pool, vdiUuid, manifest.backupId));
    await remove(manifest.objectKey);
  }
  for (const key of await orphanObjects(s3, catalog, pool, vdiUuid, olderThan)) await remove(key);
  return actions;
}

/** `.vhd` objects without a manifest, from backups before `olderThan` (never a run still in flight). */
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
    if (!key.endsWith('.vhd')) return false;
    const backupId = key.slice(prefix.length, -'.vhd'.length);
    return backupId < olderThan && !keys.has(`${prefix}${backupId}.json`);
  });
}
