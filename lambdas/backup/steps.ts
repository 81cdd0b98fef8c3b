import { DEFAULT_BACKUP_CONCURRENCY, DEFAULT_PARTS_IN_FLIGHT } from '../runtime/defaults.ts';
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  abortUploads,
  commitManifest,
  listManifests,
  listSeries,
  quarantineBrokenChain,
} from '../catalog/catalog.ts';
import { newBackupId, objectKey, seriesName, seriesPrefix, type CatalogLocation } from '../catalog/keys.ts';
import {
  applyRetention,
  isForeverIncremental,
  noDeletions,
  planRetention,
  type RetentionPlan,
  type RetentionPolicy,
} from '../catalog/retention.ts';
import { randomUUID } from 'node:crypto';
import { acquireBackupLock, releaseBackupLock, type BackupLockTable } from './backup-lock.ts';
import { withPoolSession, type SessionState } from '../shared/pool-session.ts';
import { chainOf, formatOf, MANIFEST_FORMAT_VERSION, type Manifest } from '../catalog/manifest.ts';
import { exportToS3, type ExportToS3Result } from '../export/export-to-s3.ts';
import { exportUpperBound, partSizeFor } from '../export/part-size.ts';
import { checkQcow2Support, imageFormatOf } from './image-format.ts';
import { expectedDeltaBytes, routeFor, sizeExport, type TransferRouting } from '../transfer/routing.ts';
import { mergeChain } from '../merge/merge-points.ts';
import { VHD_BLOCK_SIZE, vhdByteLength } from '../vhd/index.ts';
import { collectTransferResult, transferResultKey } from '../transfer/transfer-task.ts';
import { silentLog, type Log } from '../shared/log.ts';
import type { PoolDirectory } from '../shared/pools.ts';
import { failureMessage } from '../shared/failure.ts';
import { CleanupLog, required } from '../shared/cleanup-log.ts';
import { trackTransfer, type ProgressStore } from '../shared/transfer-progress.ts';
import { isXapiError, XapiError, XapiSession, type XapiSessionHandle } from '../xapi/index.ts';
import { parseBackupInput } from './input.ts';
import { BACKUP_ID_TAG, isOurSnapshot, SERIES_TAG } from './snapshot-tags.ts';
import type {
  BackupItemState,
  BackupOutcome,
  BackupPlan,
  BackupSelection,
  BackupSummary,
  MergeOutcome,
  RetentionReport,
  VmInProgress,
  VmOutcome,
} from './state.ts';
import { diskItems, snapshotVms, writeVmPoint, type VmBackupContext } from '../vm/backup-vms.ts';

/** Everything the backup steps use, passed in so Lambda, Fargate, the local runner and tests share them. */
export interface BackupDeps {
  readonly s3: S3Client;
  readonly catalog: CatalogLocation;
  readonly pools: PoolDirectory;
  readonly log?: Log;
  readonly clock?: () => Date;
  /** Tuning for the export stream; defaults come from `exportToS3`. */
  readonly exportTuning?: {
    readonly partsInFlight?: number;
    readonly stallTimeoutMs?: number;
    readonly checksumAlgorithm?: 'CRC32' | 'SHA256';
  };
  /** One backup per VDI at a time. Without it, runs are not serialised (local experiments only). */
  readonly lock?: BackupLockTable;
  /** Where exports and merges record their progress. Without it, none is recorded. */
  readonly progress?: ProgressStore;
  /** Which exports go to Fargate. Default: all run where the workflow first sends them (Lambda). */
  readonly routing?: TransferRouting;
  /** VDIs of one execution backed up at once when the input sets none. Default DEFAULT_BACKUP_CONCURRENCY. */
  readonly defaultConcurrency?: number;
}

export interface LoginOutput {
  readonly pool: string;
  readonly mode: 'auto' | 'full';
  readonly retention: RetentionPolicy | null;
  /** The Map's MaxConcurrencyPath. */
  readonly concurrency: number;
  readonly vdiUuids: readonly string[];
  readonly vmUuids: readonly string[];
  readonly tags: readonly string[];
  /** The scheduled job that started the run, or null (docs/design.md § Dashboard and metric names). */
  readonly job: string | null;
  readonly session: XapiSessionHandle;
}

export function createBackupSteps(deps: BackupDeps) {
  const log = deps.log ?? silentLog;
  const now = deps.clock ?? (() => new Date());

  const withSession = <T>(state: SessionState, work: (session: XapiSession) => Promise<T>) =>
    withPoolSession(deps.pools, log, state, work);
  const vmContext = (state: { pool: string; executionId: string }): Omit<VmBackupContext, 'session'> => ({
    s3: deps.s3,
    catalog: deps.catalog,
    pool: state.pool,
    executionId: state.executionId,
    log,
    now,
  });

  /** Full or delta (and why), after removing what crashed runs left. Runs under the series lock. */
  async function planUnderLock(state: BackupItemState): Promise<BackupPlan> {
    const series = seriesName(state.pool, state.vdiUuid);
    const { manifests, sizes } = await listSeries(deps.s3, deps.catalog, state.pool, state.vdiUuid);
    const last = manifests.at(-1);
    // Under the lock no other run of this VDI is uploading: any open upload is a killed run's.
    const staleUploadsAborted = deps.lock
      ? await abortUploads(
          deps.s3,
          deps.catalog.bucket,
          seriesPrefix(deps.catalog, state.pool, state.vdiUuid),
        )
      : 0;
    const chain = last ? chainOf(manifests, last.backupId) : [];
    const chainProblem = last
      ? await quarantineBrokenChain(deps.s3, deps.catalog, state.pool, state.vdiUuid, chain, sizes)
      : undefined;
    return withSession(state, async (session) => {
      const vdiRef = await session.getVdiByUuid(state.vdiUuid).catch((error: unknown) => {
        if (isXapiError(error, 'UUID_INVALID')) {
          throw new XapiError('VDI.get_by_uuid', 'UUID_INVALID', [
            'VDI',
            state.vdiUuid,
            `no such VDI in pool ${state.pool}`,
          ]);
        }
        throw error;
      });
      const vdi = await session.getVdiRecord(vdiRef);
      if (vdi.is_a_snapshot) {
        throw new XapiError('plan', 'VDI_IS_A_SNAPSHOT', [
          state.vdiUuid,
          'back up the VDI itself, not a snapshot',
        ]);
      }
      const { format, reason: formatReason } = imageFormatOf(vdi);
      // Before anything changes on the host: an old pool can't send this VDI at all.
      if (format === 'qcow2')
        checkQcow2Support(await session.getMasterXapiVersion(), state.vdiUuid, formatReason);

      let staleSnapshotsRemoved = 0;
      let base: { ref: string; uuid: string } | undefined;
      for (const ref of vdi.snapshots) {
        const snapshot = await session.getVdiRecord(ref).catch(() => undefined);
        if (!snapshot || !isOurSnapshot(snapshot, series)) continue;
        // This run's own, taken with the disk's VM: the snapshot this backup exports.
        if (snapshot.uuid === state.presetSnapshot?.uuid) continue;
        if (last && snapshot.uuid === last.snapshotUuid) {
          base = { ref, uuid: snapshot.uuid };
          continue;
        }
        await session.destroyVdi(ref);
        staleSnapshotsRemoved++;
        log.info('removed a stale snapshot left by an earlier run', { snapshot: snapshot.uuid });
      }

      let fullReason: string | undefined;
      if (state.mode === 'full') fullReason = 'mode full';
      else if (!last) fullReason = 'first backup';
      else if (chainProblem) fullReason = `chain broken: ${chainProblem}`;
      else if (formatOf(last) !== format)
        fullReason = `image format changed from ${formatOf(last)} to ${format} (${formatReason})`;
      else if (!base)
        fullReason = `base gone: snapshot ${last.snapshotUuid} of backup ${last.backupId} is no longer on the host`;
      else if (last.virtualSize !== vdi.virtual_size)
        fullReason = `disk resized from ${last.virtualSize} to ${vdi.virtual_size} bytes`;
      else if (state.retention?.fullEvery !== undefined && chain.length >= state.retention.fullEvery) {
        fullReason = `full every ${state.retention.fullEvery} backups`;
      } else if (state.retention && format === 'qcow2' && chain.length >= state.retention.keep) {
        // Forever incremental merges vhd layers only: a qcow2 chain is bounded by a fresh full instead.
        fullReason = `qcow2 chains are not merged in S3: a full every ${state.retention.keep} backups (keep)`;
      }
      const kind = fullReason === undefined ? 'delta' : 'full';
      const startedAt = now();
      const backupId = newBackupId(startedAt, kind);
      const recentDeltas = manifests
        .filter((m) => m.kind === 'delta')
        .slice(-5)
        .map((m) => m.bytes);
      const expectedBytes = kind === 'full' ? vdi.physical_utilisation : expectedDeltaBytes(recentDeltas);
      const sizing = sizeExport(deps.routing, {
        kind,
        upperBoundBytes: exportUpperBound(format, vdi.virtual_size),
        expectedBytes,
        partsInFlight: deps.exportTuning?.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT,
      });
      log.info('export planned', {
        vdiUuid: state.vdiUuid,
        backupId,
        kind,
        format,
        route: sizing.route,
        reason: sizing.routeReason,
        partSize: sizing.partSize,
        expectedBytes,
      });
      return {
        backupId,
        kind,
        format,
        ...(fullReason !== undefined ? { fullReason } : {}),
        vdiRef,
        // A label is free text of any length: the plan (which a Fargate task's overrides carry) keeps 512.
        vdiNameLabel: vdi.name_label.slice(0, 512),
        virtualSize: vdi.virtual_size,
        objectKey: objectKey(deps.catalog, state.pool, state.vdiUuid, backupId, format),
        ...(kind === 'delta' && last && base
          ? { parentBackupId: last.backupId, baseSnapshotRef: base.ref, baseSnapshotUuid: base.uuid }
          : {}),
        ...(base ? { retiredSnapshotRef: base.ref } : {}),
        staleSnapshotsRemoved,
        staleUploadsAborted,
        route: sizing.route,
        routeReason: sizing.routeReason,
        expectedBytes,
        partSize: sizing.partSize,
        transferResultKey: transferResultKey(deps.catalog, `${state.pool}/${state.vdiUuid}/${backupId}`),
        startedAt: startedAt.toISOString(),
      };
    });
  }

  /**
   * Retention after a committed backup. Its failure is reported, never fatal: the backup is committed.
   * The output carries counts only; each deleted key is logged by applyRetention.
   */
  async function retain(
    state: BackupItemState,
    policy: RetentionPolicy,
    newestBackupId: string,
  ): Promise<RetentionReport> {
    const tally = noDeletions();
    let plan: RetentionPlan | undefined;
    const report = (error?: unknown): RetentionReport => ({
      kept: plan?.retained.length ?? 0,
      deleted: tally.restorePoints,
      orphansDeleted: tally.orphanObjects,
      keysDeleted: tally.keys,
      deletedIds: [...tally.firstBackupIds],
      ...(error !== undefined
        ? { error: bounded(error instanceof Error ? error.message : String(error)) }
        : {}),
    });
    try {
      const manifests = await listManifests(deps.s3, deps.catalog, state.pool, state.vdiUuid);
      plan = planRetention(manifests, policy);
      await applyRetention(deps.s3, deps.catalog, state.pool, state.vdiUuid, plan, newestBackupId, {
        log,
        tally,
      });
      log.info('retention applied', { vdiUuid: state.vdiUuid, ...report() });
      return report();
    } catch (error) {
      log.error('retention failed', { vdiUuid: state.vdiUuid, ...report(), error: String(error) });
      return report(error);
    }
  }

  async function releaseLock(state: BackupItemState): Promise<void> {
    if (!deps.lock || !state.plan?.lockOwner) return;
    await releaseBackupLock(deps.lock, {
      series: seriesName(state.pool, state.vdiUuid),
      owner: state.plan.lockOwner,
    });
  }

  return {
    /** Validates the input and logs in to the pool's master. */
    async login(raw: unknown): Promise<LoginOutput> {
      const input = parseBackupInput(raw);
      const pool = input.pool ?? deps.pools.defaultPool;
      const access = deps.pools.get(pool);
      const session = await XapiSession.login({ ...access.connection, log }, await access.credentials());
      await session.close();
      return {
        pool,
        mode: input.mode,
        retention: input.retention ?? null,
        concurrency: input.concurrency ?? deps.defaultConcurrency ?? DEFAULT_BACKUP_CONCURRENCY,
        vdiUuids: input.vdiUuids,
        vmUuids: input.vmUuids,
        tags: input.tags,
        // Rides along to each disk so its metrics can name the job (null: Step Functions paths need it).
        job: input.job ?? null,
        session: session.handle,
      };
    },

    /** Full or delta, and what a crashed run left behind. */
    async plan(state: BackupItemState): Promise<BackupPlan> {
      const series = seriesName(state.pool, state.vdiUuid);
      const lock = deps.lock ? await acquireBackupLock(deps.lock, series, randomUUID(), now()) : undefined;
      try {
        return { ...(await planUnderLock(state)), ...(lock ? { lockOwner: lock.owner } : {}) };
      } catch (error) {
        if (lock && deps.lock) await releaseBackupLock(deps.lock, lock);
        throw error;
      }
    },

    /**
     * Snapshots the VDI and tags the snapshot with our series and backup id. A disk of a VM already has its
     * snapshot, taken with the VM's other disks (SnapshotVms): it is tagged with the backup id and used.
     */
    async snapshot(state: BackupItemState): Promise<{ ref: string; uuid: string }> {
      const plan = required(state.plan, 'plan');
      const preset = state.presetSnapshot;
      if (preset) {
        await withSession(state, (session) =>
          session.addToVdiOtherConfig(preset.ref, BACKUP_ID_TAG, plan.backupId),
        );
        return { ref: preset.ref, uuid: preset.uuid };
      }
      return withSession(state, async (session) => {
        const ref = await session.snapshotVdi(plan.vdiRef);
        try {
          await session.addToVdiOtherConfig(ref, SERIES_TAG, seriesName(state.pool, state.vdiUuid));
          await session.addToVdiOtherConfig(ref, BACKUP_ID_TAG, plan.backupId);
          const record = await session.getVdiRecord(ref);
          return { ref, uuid: record.uuid };
        } catch (error) {
          await session.destroyVdi(ref).catch(() => undefined);
          throw error;
        }
      });
    },

    async createTask(state: BackupItemState): Promise<{ ref: string }> {
      const plan = required(state.plan, 'plan');
      return withSession(state, async (session) => ({
        ref: await session.createTask(
          `vdi-vault export ${plan.backupId}`,
          `${plan.kind} backup of VDI ${state.vdiUuid}`,
        ),
      }));
    },

    /** Streams the snapshot's VHD export into S3; completes the upload only on a valid body and a successful task. */
    async export(state: BackupItemState) {
      const plan = required(state.plan, 'plan');
      const snapshot = required(state.snapshot, 'snapshot');
      const task = required(state.task, 'task');
      // Plan's estimate: the bar is a guide, the result carries the bytes.
      const progress = trackTransfer(deps.progress, state.executionId, `export ${state.vdiUuid}`, {
        total: plan.expectedBytes,
        log,
      });
      return withSession(state, (session) =>
        exportToS3({
          session,
          s3: deps.s3,
          bucket: deps.catalog.bucket,
          key: plan.objectKey,
          vdiRef: snapshot.ref,
          ...(plan.baseSnapshotRef ? { baseRef: plan.baseSnapshotRef } : {}),
          taskRef: task.ref,
          virtualSize: plan.virtualSize,
          format: plan.format,
          // The Fargate retry's task brings parts sized for the whole disk; otherwise Plan's size.
          partSize: task.partSize ?? plan.partSize,
          ...deps.exportTuning,
          log,
          onProgress: (bytes) => progress.update(bytes),
        }),
      ).finally(() => progress.end());
    },

    /** Reads what a Fargate export wrote; its failure is raised again under its own name. */
    async collectExport(state: BackupItemState) {
      const plan = required(state.plan, 'plan');
      return (await collectTransferResult(deps.s3, deps.catalog, plan.transferResultKey)) as ExportToS3Result;
    },

    /**
     * A Lambda export that timed out was killed mid-stream: abort the upload it left, destroy its task,
     * and hand the retry on Fargate a fresh task, with parts sized for the whole disk (Plan may have
     * sized a delta's parts for the Lambda's memory; the task has more, and runs for as long as it takes).
     */
    async prepareFargateRetry(state: BackupItemState): Promise<{ ref: string; partSize: number }> {
      const plan = required(state.plan, 'plan');
      await abortUploads(deps.s3, deps.catalog.bucket, plan.objectKey);
      return withSession(state, async (session) => {
        if (state.task) await session.destroyTask(state.task.ref);
        return {
          ref: await session.createTask(
            `vdi-vault export ${plan.backupId} (Fargate)`,
            `retry of a timed-out export`,
          ),
          partSize: partSizeFor(exportUpperBound(plan.format, plan.virtualSize)),
        };
      });
    },

    /** Writes the manifest, last: its presence commits the backup. */
    async commit(state: BackupItemState): Promise<{ manifestKey: string }> {
      const plan = required(state.plan, 'plan');
      const snapshot = required(state.snapshot, 'snapshot');
      const exported = required(state.export, 'export');
      if (exported.format !== plan.format) {
        throw new XapiError('export', 'UNEXPECTED_IMAGE_FORMAT', [
          exported.format,
          `expected ${plan.format}`,
        ]);
      }
      // A vhd says whether it is a full or a delta; a qcow2 export is a standalone image either way.
      const expectedType = plan.kind === 'full' ? 'dynamic' : 'differencing';
      if (exported.format === 'vhd' && exported.diskType !== expectedType) {
        throw new XapiError('export', 'UNEXPECTED_DISK_TYPE', [
          String(exported.diskType),
          `expected ${expectedType}`,
        ]);
      }
      const manifest: Manifest = {
        formatVersion: MANIFEST_FORMAT_VERSION,
        backupId: plan.backupId,
        kind: plan.kind,
        parentBackupId: plan.parentBackupId ?? null,
        pool: state.pool,
        vdiUuid: state.vdiUuid,
        vdiNameLabel: plan.vdiNameLabel,
        snapshotUuid: snapshot.uuid,
        virtualSize: plan.virtualSize,
        objectKey: plan.objectKey,
        bytes: exported.bytes,
        sha256: exported.sha256,
        presentBlocks: exported.presentBlocks,
        format: plan.format,
        startedAt: plan.startedAt,
        endedAt: exported.endedAt,
        host: exported.host,
        ...(plan.fullReason !== undefined ? { fullReason: plan.fullReason } : {}),
      };
      return { manifestKey: await commitManifest(deps.s3, deps.catalog, manifest) };
    },

    /**
     * Forever incremental, after the commit: when the oldest kept point is a delta whose full expires, folds
     * its chain into a synthetic full inside S3 (docs/design.md § Forever incremental). On Lambda a merge
     * whose read-back would be large is routed to Fargate by the transfers' routing, where this step runs
     * again. Never fails the backup: a failure is reported and the chain stays as it was.
     */
    async merge(state: BackupItemState): Promise<MergeOutcome> {
      const policy = state.retention;
      if (!policy || !isForeverIncremental(policy)) return { status: 'none' };
      let backupId: string | undefined;
      try {
        const manifests = await listManifests(deps.s3, deps.catalog, state.pool, state.vdiUuid);
        const merge = planRetention(manifests, policy).merge;
        if (!merge) return { status: 'none' };
        backupId = merge.target.backupId;
        if (state.merge?.status !== 'routed') {
          // What the read-back streams: at most every block any layer holds.
          const blocks = Math.min(
            merge.chain.reduce((sum, m) => sum + m.presentBlocks, 0),
            Math.ceil(merge.target.virtualSize / VHD_BLOCK_SIZE),
          );
          const expectedBytes = vhdByteLength(merge.target.virtualSize, blocks);
          if (routeFor(deps.routing, expectedBytes) === 'fargate') {
            const routeReason = `synthetic full of up to ${expectedBytes} bytes to read back, at or above the Fargate threshold`;
            log.info('merge routed to Fargate', { vdiUuid: state.vdiUuid, backupId, routeReason });
            return { status: 'routed', backupId, routeReason };
          }
        }
        const progress = trackTransfer(deps.progress, state.executionId, `merge ${state.vdiUuid}`, { log });
        const report = await mergeChain(deps.s3, deps.catalog, merge, {
          ...(deps.exportTuning?.checksumAlgorithm
            ? { checksumAlgorithm: deps.exportTuning.checksumAlgorithm }
            : {}),
          log,
          onProgress: (bytes, total) => progress.update(bytes, total),
        }).finally(() => progress.end());
        return { status: 'merged', ...report };
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log.error('merge failed; every kept point still restores, the next run merges again', {
          vdiUuid: state.vdiUuid,
          backupId,
          error: message,
        });
        return { status: 'failed', ...(backupId ? { backupId } : {}), error: bounded(message) };
      }
    },

    /** Reads what a Fargate merge wrote. */
    async collectMerge(state: BackupItemState): Promise<MergeOutcome> {
      const plan = required(state.plan, 'plan');
      return (await collectTransferResult(deps.s3, deps.catalog, plan.transferResultKey)) as MergeOutcome;
    },

    /**
     * Destroys our task and the previous base (the new snapshot stays as the next base), applies the job's
     * retention, and releases the series lock.
     */
    async cleanup(state: BackupItemState): Promise<BackupOutcome> {
      const plan = required(state.plan, 'plan');
      const exported = required(state.export, 'export');
      await withSession(state, async (session) => {
        if (state.task) await session.destroyTask(state.task.ref);
        if (plan.retiredSnapshotRef) await session.destroyVdi(plan.retiredSnapshotRef);
      });
      const retention = state.retention ? await retain(state, state.retention, plan.backupId) : undefined;
      await releaseLock(state);
      return {
        vdiUuid: state.vdiUuid,
        ...(state.vmUuid ? { vmUuid: state.vmUuid } : {}),
        status: 'succeeded',
        backupId: plan.backupId,
        kind: plan.kind,
        format: plan.format,
        ...(plan.fullReason !== undefined ? { fullReason: plan.fullReason } : {}),
        bytes: exported.bytes,
        sha256: exported.sha256,
        presentBlocks: exported.presentBlocks,
        durationMs: Date.parse(exported.endedAt) - Date.parse(plan.startedAt),
        ...(retention ? { retention } : {}),
        ...mergeOutcomeOf(state),
      };
    },

    /**
     * After any failure: destroy our task and new snapshot, abort the upload, remove an object that never
     * got its manifest. Each action is tried on its own, so one failing does not skip the others.
     */
    async failureCleanup(state: BackupItemState): Promise<BackupOutcome> {
      const cleanup = new CleanupLog(log);
      const committed = state.commit !== undefined;
      // Each XAPI action in its own withSession: an expired session is logged in again, not swallowed.
      const task = state.task;
      if (task) {
        await cleanup.attempt('destroyed task', () =>
          withSession(state, (session) => session.destroyTask(task.ref)),
        );
      }
      // A disk of a VM brought its snapshot with it: it is this backup's new snapshot from the start.
      const snapshot = state.snapshot ?? state.presetSnapshot ?? undefined;
      if (snapshot && !committed) {
        await cleanup.attempt('destroyed new snapshot', () =>
          withSession(state, (session) => session.destroyVdi(snapshot.ref)),
        );
      }
      if (state.plan && !committed) {
        const key = state.plan.objectKey;
        await cleanup.attempt('aborted open uploads', () => abortUploads(deps.s3, deps.catalog.bucket, key));
        if (state.export) {
          await cleanup.attempt('deleted uncommitted object', () =>
            deps.s3.send(new DeleteObjectCommand({ Bucket: deps.catalog.bucket, Key: key })),
          );
        }
      }
      if (state.plan?.lockOwner) await cleanup.attempt('released the lock', () => releaseLock(state));
      const { error, cause } = failureMessage(state.failure);
      log.error('backup of a VDI failed', { vdiUuid: state.vdiUuid, error, cause, cleanup: cleanup.actions });
      return {
        vdiUuid: state.vdiUuid,
        ...(state.vmUuid ? { vmUuid: state.vmUuid } : {}),
        status: 'failed',
        ...(state.plan ? { backupId: state.plan.backupId, kind: state.plan.kind } : {}),
        error: bounded(error),
        cause: bounded(cause),
        cleanup: cleanup.actions.map((action) => bounded(action)),
      };
    },

    /**
     * The disks of the run: `vdiUuids` as they are, and each selected VM's disks snapshotted together
     * (docs/design.md § VM backups). Without VMs or tags it only lists the VDIs.
     */
    async snapshotVms(state: LoginOutput & { executionId: string }): Promise<BackupSelection> {
      if (state.vmUuids.length === 0 && state.tags.length === 0) {
        return { items: diskItems(state.vdiUuids), vms: [] };
      }
      return withSession(state, (session) => snapshotVms({ ...vmContext(state), session }, state));
    },

    /**
     * Writes each VM's restore point whose disks all committed, and removes its snapshot VM (its VDIs
     * stay: the committed ones are the next bases). One VM's trouble is its outcome, not the run's.
     */
    async commitVms(state: {
      pool: string;
      session: XapiSessionHandle;
      executionId: string;
      vms: readonly VmInProgress[];
      outcomes: readonly BackupOutcome[];
    }): Promise<VmOutcome[]> {
      const context = vmContext(state);
      const results: VmOutcome[] = [];
      for (const vm of state.vms) {
        results.push(
          await writeVmPoint(context, vm, state.outcomes).catch((error: unknown): VmOutcome => ({
            vmUuid: vm.vmUuid,
            status: 'failed',
            disks: vm.disks,
            error: error instanceof Error ? error.name : 'Error',
            cause: bounded(`VM ${vm.vmUuid}: ${error instanceof Error ? error.message : String(error)}`),
          })),
        );
        // In a session that logs in again if this one expired; a snapshot VM left anyway is removed by the
        // VM's next backup (it carries our tag).
        await withSession(state, (session) => session.destroyVm(vm.snapshotRef)).catch((error: unknown) =>
          log.warn('could not destroy the snapshot VM; the next backup of the VM removes it', {
            vmUuid: vm.vmUuid,
            error: String(error),
          }),
        );
      }
      return results;
    },

    /**
     * Logs out and sums up every VDI's and VM's outcome. `failure` is a failure before any disk was backed
     * up (the VMs' snapshots): the run fails with it.
     */
    async logout(state: {
      pool: string;
      session: XapiSessionHandle;
      outcomes?: readonly BackupOutcome[];
      vmOutcomes?: readonly VmOutcome[];
      failure?: { readonly Error?: string; readonly Cause?: string };
    }): Promise<BackupSummary> {
      const session = XapiSession.resume({ ...deps.pools.get(state.pool).connection, log }, state.session);
      await session.logout();
      const outcomes = state.outcomes ?? [];
      const vmOutcomes = state.vmOutcomes ?? [];
      const failed = outcomes.filter((outcome) => outcome.status === 'failed');
      const failedVms = vmOutcomes.filter((outcome) => outcome.status === 'failed');
      const base = {
        pool: state.pool,
        outcomes,
        ...(vmOutcomes.length ? { vmOutcomes } : {}),
        succeeded: outcomes.length - failed.length,
        failed: failed.length + failedVms.length,
      };
      if (state.failure) {
        const { error, cause } = failureMessage(state.failure);
        return { ...base, failed: base.failed + 1, error: bounded(error), cause: bounded(cause) };
      }
      if (failed.length + failedVms.length === 0) return base;
      const causes = [
        ...failedVms.map((vm) => vm.cause ?? `VM ${vm.vmUuid} failed`),
        ...(failed.length ? [summaryCause(failed)] : []),
      ];
      const only = failed.length + failedVms.length === 1;
      return {
        ...base,
        error: only ? ((failedVms[0] ?? failed[0])!.error ?? 'BackupFailed') : 'BackupFailed',
        cause: bounded(causes.join('; '), 4 * MAX_TEXT),
      };
    },
  };
}

export type BackupSteps = ReturnType<typeof createBackupSteps>;

/**
 * Longest text one outcome carries per field. Outputs grow with the VDIs of a run, never with a message's
 * length: Step Functions passes at most 256 KiB between states (and a Fail state's cause at most 32 KiB).
 */
const MAX_TEXT = 1_000;
/** VDIs the execution's failure cause names one by one; the outcomes list every one. */
const MAX_CAUSES = 5;

function bounded(text: string, max = MAX_TEXT): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The merge's outcome for the backup's: nothing when there was nothing to merge. */
function mergeOutcomeOf(state: BackupItemState): { merge?: MergeOutcome } {
  if (state.mergeFailure) {
    const { error, cause } = failureMessage(state.mergeFailure);
    return { merge: { status: 'failed', error: bounded(`${error}: ${cause}`) } };
  }
  return state.merge && state.merge.status !== 'none' ? { merge: state.merge } : {};
}

function summaryCause(failed: readonly BackupOutcome[]): string {
  const named = failed
    .slice(0, MAX_CAUSES)
    .map((outcome) => `VDI ${outcome.vdiUuid}: ${outcome.cause ?? outcome.error}`);
  const more = failed.length - named.length;
  return named.join('; ') + (more > 0 ? `; and ${more} more VDI(s) failed (see the outcomes)` : '');
}
