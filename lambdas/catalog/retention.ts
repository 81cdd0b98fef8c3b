import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listSeriesKeys } from './catalog.ts';
import type { CatalogLocation } from './keys.ts';
import { manifestKey, OBJECT_EXTENSIONS, seriesPrefix } from './keys.ts';
import { chainOf, formatOf, type Manifest } from './manifest.ts';
import { silentLog, type Log } from '../shared/log.ts';

/**
 * Per job: keep the newest `keep` restore points. Without `fullEvery` (the default) the series is forever
 * incremental: only the first backup is a full, and the oldest kept delta is merged in S3 into a new full
 * when its parent full expires. With `fullEvery` a full is exported from the host at least every
 * `fullEvery` backups and nothing is merged (docs/design.md § Forever incremental).
 */
export interface RetentionPolicy {
  readonly keep: number;
  readonly fullEvery?: number;
}

export function isForeverIncremental(policy: RetentionPolicy): boolean {
  return policy.fullEvery === undefined;
}

/** A chain to fold into one synthetic full: `chain` oldest first, from a full up to `target`. */
export interface MergePlan {
  readonly target: Manifest;
  readonly chain: readonly Manifest[];
  /** The deltas the oldest kept point still sits on after this merge (the per-run bound cut it short). */
  readonly deltasLeft: number;
}

export interface RetentionPlan {
  readonly retained: readonly string[];
  /** Restore points no retained point needs, newest first (children before their parents). */
  readonly expired: readonly Manifest[];
  /** Forever incremental: the merge that lets the oldest kept point's full expire. */
  readonly merge?: MergePlan;
  /** The objects of the points that stay: any other backup object in the series is an orphan. */
  readonly keptObjectKeys: readonly string[];
}

/**
 * What to delete: everything that is neither among the newest `keep` points nor needed by one of them.
 * Forever incremental, when the oldest kept point is a vhd delta, also what to merge: its chain, or its
 * first `maxMergedDeltas` deltas (the work per run is bounded; the next runs go on).
 */
export function planRetention(
  manifests: readonly Manifest[],
  policy: RetentionPolicy,
  maxMergedDeltas = MERGED_DELTAS_PER_RUN,
): RetentionPlan {
  const sorted = [...manifests].sort((a, b) => a.backupId.localeCompare(b.backupId));
  const retained = sorted.slice(-policy.keep);
  const needed = new Set(retained.flatMap((m) => chainOf(sorted, m.backupId).map((c) => c.backupId)));
  const oldest = retained[0];
  const chain = oldest ? chainOf(sorted, oldest.backupId).reverse() : [];
  const mergeable =
    isForeverIncremental(policy) &&
    chain.length > 1 &&
    chain[0]!.kind === 'full' &&
    chain.every((m) => formatOf(m) === 'vhd');
  const folded = chain.slice(0, Math.min(chain.length, maxMergedDeltas + 1));
  return {
    retained: retained.map((m) => m.backupId),
    expired: sorted.filter((m) => !needed.has(m.backupId)).reverse(),
    keptObjectKeys: sorted.filter((m) => needed.has(m.backupId)).map((m) => m.objectKey),
    ...(mergeable
      ? { merge: { target: folded.at(-1)!, chain: folded, deltasLeft: chain.length - folded.length } }
      : {}),
  };
}

/** The most deltas one run folds into a synthetic full (docs/design.md § Forever incremental). */
export const MERGED_DELTAS_PER_RUN = 16;

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
  const referenced = new Set(plan.keptObjectKeys);
  for (const key of await orphanObjects(s3, catalog, pool, vdiUuid, olderThan, referenced)) {
    await remove(key, 'object without a manifest');
    tally.orphanObjects++;
  }
  return tally;
}

/**
 * Backup objects (`.vhd`, `.qcow2`) no manifest refers to, from backups before `olderThan` (never a run
 * still in flight): an export whose manifest never came, a merged delta's own object, a synthetic full
 * whose manifest was never rewritten.
 */
async function orphanObjects(
  s3: S3Client,
  catalog: CatalogLocation,
  pool: string,
  vdiUuid: string,
  olderThan: string,
  referenced: ReadonlySet<string>,
): Promise<string[]> {
  const prefix = seriesPrefix(catalog, pool, vdiUuid);
  const keys = await listSeriesKeys(s3, catalog, pool, vdiUuid);
  return keys.filter((key) => {
    if (!OBJECT_EXTENSIONS.some((extension) => key.endsWith(extension)) || referenced.has(key)) return false;
    return key.slice(prefix.length) < olderThan;
  });
}
