import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { abortUploads, commitManifest, readManifest } from '../catalog/catalog.ts';
import { manifestKey, syntheticObjectKey, type CatalogLocation } from '../catalog/keys.ts';
import type { Manifest } from '../catalog/manifest.ts';
import type { MergePlan } from '../catalog/retention.ts';
import { silentLog, type Log } from '../shared/log.ts';
import type { PartPlanLimits } from './part-plan.ts';
import { buildSyntheticFull, type SyntheticFullReport } from './synthetic-full.ts';

/** What one merge did: which point became a full, from which, and what it cost. */
export interface MergeReport extends Omit<SyntheticFullReport, 'sha256' | 'virtualSize' | 'presentBlocks'> {
  readonly backupId: string;
  /** The points folded in, oldest (the old full) first; the last is `backupId` itself. */
  readonly mergedFrom: readonly string[];
  /** Deltas still under the oldest kept point (the per-run bound), merged by the next runs. */
  readonly deltasLeft: number;
}

/**
 * Folds a chain into one synthetic full, in the order that never loses a restore point (docs/design.md
 * § Forever incremental): the new object is complete and read back; then the target's manifest is
 * rewritten as a full (same backup id, `synthetic`, `mergedFrom`); the old full and the merged deltas
 * then expire by the ordinary retention that follows, and the target's own delta object, which nothing
 * refers to any more, goes with the orphans. A failure before the manifest is rewritten leaves the chain as
 * it was and no new object (or one the next retention removes as an orphan); a rewrite whose answer was
 * lost but that took effect counts as done, so the object it names is never deleted.
 */
export async function mergeChain(
  s3: S3Client,
  catalog: CatalogLocation,
  merge: MergePlan,
  options: {
    readonly checksumAlgorithm?: 'CRC32' | 'SHA256';
    readonly limits?: PartPlanLimits;
    readonly log?: Log;
    readonly now?: () => Date;
    readonly onProgress?: (bytes: number, total: number) => void;
  } = {},
): Promise<MergeReport> {
  const log = options.log ?? silentLog;
  const { target } = merge;
  const key = syntheticObjectKey(catalog, target.pool, target.vdiUuid, target.backupId);
  // Under the series lock no other run writes this key: an open upload is a killed attempt's (a Merge
  // Lambda out of time, retried on Fargate).
  const aborted = await abortUploads(s3, catalog.bucket, key);
  if (aborted) log.info('aborted the upload a killed merge left', { key, aborted });
  const built = await buildSyntheticFull({
    s3,
    bucket: catalog.bucket,
    layers: merge.chain.map((m) => ({ backupId: m.backupId, objectKey: m.objectKey, bytes: m.bytes })),
    key,
    ...(options.checksumAlgorithm ? { checksumAlgorithm: options.checksumAlgorithm } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    log,
  });
  const mergedFrom = merge.chain.map((m) => m.backupId);
  const { fullReason: _deltaHadNone, parentBackupId: _parent, ...kept } = target;
  const manifest: Manifest = {
    ...kept,
    kind: 'full',
    parentBackupId: null,
    objectKey: key,
    bytes: built.bytes,
    sha256: built.sha256,
    presentBlocks: built.presentBlocks,
    synthetic: true,
    mergedFrom,
    mergedAt: (options.now?.() ?? new Date()).toISOString(),
  };
  try {
    await commitManifest(s3, catalog, manifest);
  } catch (error) {
    // A PUT replaces a key whole or not at all, but its answer can be lost after it took effect: delete the
    // new object only once the manifest is seen still naming the old one. When that can't be read, the
    // object stays: referenced, it is the point's; unreferenced, the next retention removes it as an orphan.
    const manifestKeyOfTarget = manifestKey(catalog, target.pool, target.vdiUuid, target.backupId);
    const standing = await readManifest(s3, catalog.bucket, manifestKeyOfTarget).catch(() => undefined);
    if (standing?.objectKey === key) {
      log.warn('the manifest rewrite reported a failure but took effect', { key, error: String(error) });
    } else {
      if (standing) {
        await s3
          .send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: key }))
          .catch(() =>
            log.warn('could not delete the unreferenced synthetic full; the next retention does', { key }),
          );
      }
      throw error;
    }
  }
  const { sha256: _sha, virtualSize: _size, presentBlocks: _blocks, ...counts } = built;
  const report: MergeReport = {
    ...counts,
    backupId: target.backupId,
    mergedFrom,
    deltasLeft: merge.deltasLeft,
  };
  log.info('merged into a synthetic full', { ...report });
  return report;
}
