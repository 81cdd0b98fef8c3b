import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { CatalogLocation } from '../catalog/keys.ts';
import { manifestKey, newBackupId, seriesName, WORK_AREAS, workAreaPrefix } from '../catalog/keys.ts';
import { listSeriesKeys } from '../catalog/catalog.ts';
import {
  listVmManifests,
  VM_MANIFEST_FORMAT_VERSION,
  vmManifestKey,
  type VmManifest,
  type VmManifestDisk,
} from '../catalog/vm-manifest.ts';
import { SERIES_TAG } from '../backup/snapshot-tags.ts';
import type { BackupItem, BackupOutcome, BackupSelection, VmInProgress, VmOutcome } from '../backup/state.ts';
import type { Log } from '../shared/log.ts';
import type { Ref, XapiSession } from '../xapi/index.ts';
import { describeSnapshotVm, excludedDisks, type VmDescription } from './describe.ts';
import { selectVms } from './select.ts';

/** On our snapshot VMs (`other_config`): the execution that took it, so a later run can remove one a crash left. */
export const VM_SNAPSHOT_TAG = 'vdi-vault-vm-snapshot';

/** Disks one execution backs up at most, VMs' and VDIs' together: the Map's state stays small. */
export const MAX_DISKS_PER_EXECUTION = 100;

/** `<prefix>/.vm-pending/<execution>/<vm-uuid>.json`: a VM's description between its snapshot and its point. */
export function pendingVmKey(location: CatalogLocation, executionId: string, vmUuid: string): string {
  return `${workAreaPrefix(location, WORK_AREAS.vmPending)}${executionId}/${vmUuid}.json`;
}

interface PendingVm {
  readonly vmUuid: string;
  readonly startedAt: string;
  readonly description: VmDescription;
}

export interface VmBackupContext {
  readonly session: XapiSession;
  readonly s3: S3Client;
  readonly catalog: CatalogLocation;
  readonly pool: string;
  readonly executionId: string;
  readonly log: Log;
  readonly now: () => Date;
}

/**
 * The disks a run backs up: each of `vdiUuids`, then every disk of each selected VM (by uuid, by tag),
 * snapshotted together by `VM.snapshot` so the VM's disks are consistent with each other. Disks carrying
 * the exclude tag stay out (`ignore_vdis`). Each VDI snapshot gets our series tag at once, so a crashed
 * run's are removed by the next Plan; each VM's description waits in S3 for CommitVms. On any failure,
 * every snapshot and description this made is removed before the error goes on.
 */
export async function snapshotVms(
  context: VmBackupContext,
  selection: {
    readonly vdiUuids: readonly string[];
    readonly vmUuids: readonly string[];
    readonly tags: readonly string[];
  },
): Promise<BackupSelection> {
  const plain = diskItems(selection.vdiUuids);
  const { session, s3, catalog, log } = context;
  const vms = await selectVms(session, selection, context.pool);
  const made: { snapshotRef: Ref; vdiRefs: Ref[]; pendingKey?: string }[] = [];
  const items: BackupItem[] = [];
  const inProgress: VmInProgress[] = [];
  try {
    for (const vm of vms) {
      const record = await session.getVmRecord(vm.ref);
      await removeStaleSnapshotVms(session, record.snapshots, log);
      const excluded = await excludedDisks(session, record);
      const startedAt = context.now().toISOString();
      const snapshotRef = await session.snapshotVm(
        vm.ref,
        `vdi-vault ${context.executionId}`,
        excluded.map((disk) => disk.ref),
      );
      const entry: { snapshotRef: Ref; vdiRefs: Ref[]; pendingKey?: string } = { snapshotRef, vdiRefs: [] };
      made.push(entry);
      await session.addToVmOtherConfig(snapshotRef, VM_SNAPSHOT_TAG, context.executionId);
      const description = await describeSnapshotVm(
        session,
        record,
        snapshotRef,
        excluded.map(({ userdevice, vdiUuid }) => ({ userdevice, vdiUuid })),
      );
      for (const disk of description.disks) {
        entry.vdiRefs.push(disk.vdiRef);
        await session.addToVdiOtherConfig(
          disk.vdiRef,
          SERIES_TAG,
          seriesName(context.pool, disk.sourceVdiUuid),
        );
      }
      if (description.disks.length === 0) {
        throw new Error(
          `VM ${vm.uuid} (${vm.nameLabel}) has no disk to back up` +
            (excluded.length ? ` (${excluded.length} excluded by tag)` : ''),
        );
      }
      const pendingKey = pendingVmKey(catalog, context.executionId, vm.uuid);
      const pending: PendingVm = { vmUuid: vm.uuid, startedAt, description };
      await s3.send(
        new PutObjectCommand({
          Bucket: catalog.bucket,
          Key: pendingKey,
          Body: JSON.stringify(pending),
          ContentType: 'application/json',
        }),
      );
      entry.pendingKey = pendingKey;
      for (const disk of description.disks) {
        items.push({
          vdiUuid: disk.sourceVdiUuid,
          vmUuid: vm.uuid,
          presetSnapshot: { ref: disk.vdiRef, uuid: disk.vdiUuid },
        });
      }
      inProgress.push({
        vmUuid: vm.uuid,
        nameLabel: vm.nameLabel,
        snapshotRef,
        pendingKey,
        disks: description.disks.length,
        startedAt,
      });
      log.info('VM snapshotted', {
        vmUuid: vm.uuid,
        selectedBy: vm.selectedBy,
        disks: description.disks.length,
        excluded: excluded.length,
      });
    }
    const taken = new Set(items.map((item) => item.vdiUuid));
    const twice = plain.filter((item) => taken.has(item.vdiUuid)).map((item) => item.vdiUuid);
    if (twice.length) {
      throw new Error(
        `vdiUuids: ${twice.join(', ')} ${twice.length === 1 ? 'is a disk' : 'are disks'} of a VM this run ` +
          'backs up too. Leave the disk out of vdiUuids: its VM point includes it.',
      );
    }
    const all = [...plain, ...items];
    if (all.length > MAX_DISKS_PER_EXECUTION) {
      throw new Error(
        `the selection holds ${all.length} disks, more than the ${MAX_DISKS_PER_EXECUTION} one execution backs up: ` +
          'split it (fewer VMs or tags per job)',
      );
    }
    return { items: all, vms: inProgress };
  } catch (error) {
    for (const entry of made) {
      for (const ref of entry.vdiRefs) await session.destroyVdi(ref).catch(() => undefined);
      await session.destroyVm(entry.snapshotRef).catch(() => undefined);
      if (entry.pendingKey) {
        await s3
          .send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: entry.pendingKey }))
          .catch(() => undefined);
      }
    }
    throw error;
  }
}

/** Disks chosen by uuid: each snapshotted by its own Snapshot step. */
export function diskItems(vdiUuids: readonly string[]): BackupItem[] {
  return vdiUuids.map((vdiUuid) => ({ vdiUuid, vmUuid: null, presetSnapshot: null }));
}

/** Our snapshot VMs a crashed run left (their VDI snapshots are Plan's to remove). */
async function removeStaleSnapshotVms(session: XapiSession, snapshots: readonly Ref[], log: Log) {
  for (const ref of snapshots) {
    const snapshot = await session.getVmRecord(ref).catch(() => undefined);
    if (!snapshot?.other_config[VM_SNAPSHOT_TAG]) continue;
    await session.destroyVm(ref);
    log.info('removed a snapshot VM left by an earlier run', { snapshot: snapshot.uuid });
  }
}

/**
 * A VM's restore point, once its disks are done: written only when every disk committed (the manifest
 * last, naming each disk's restore point), else a failure naming the disks that did not. The pending
 * description is deleted either way. S3 only: the snapshot VM is the caller's to remove, in a session
 * that may log in again (a call that failed on an expired session must not pass for done).
 */
/**
 * Deletes the VM's points that name a disk point no longer in its series: retention keeps each disk's
 * series on its own, so after it ran (each disk's Cleanup, before CommitVms) an old VM point may lack a
 * disk and could not be restored. Returns how many it deleted.
 */
export async function removeUnrestorableVmPoints(
  context: Pick<VmBackupContext, 's3' | 'catalog' | 'pool' | 'log'>,
  vmUuid: string,
): Promise<number> {
  const { s3, catalog, pool } = context;
  const points = await listVmManifests(s3, catalog, pool, vmUuid);
  const series = new Map<string, Set<string>>();
  for (const vdiUuid of new Set(points.flatMap((point) => point.disks.map((disk) => disk.vdiUuid)))) {
    series.set(vdiUuid, new Set(await listSeriesKeys(s3, catalog, pool, vdiUuid)));
  }
  let removed = 0;
  for (const point of points) {
    const lost = point.disks.filter(
      (disk) => !series.get(disk.vdiUuid)?.has(manifestKey(catalog, pool, disk.vdiUuid, disk.backupId)),
    );
    if (lost.length === 0) continue;
    await s3.send(
      new DeleteObjectCommand({
        Bucket: catalog.bucket,
        Key: vmManifestKey(catalog, pool, vmUuid, point.vmBackupId),
      }),
    );
    context.log.info('removed a VM restore point whose disk points are gone', {
      vmUuid,
      vmBackupId: point.vmBackupId,
      lost: lost.map((disk) => `${disk.userdevice}:${disk.backupId}`),
    });
    removed += 1;
  }
  return removed;
}

export async function writeVmPoint(
  context: Omit<VmBackupContext, 'session'>,
  vm: VmInProgress,
  outcomes: readonly BackupOutcome[],
): Promise<VmOutcome> {
  const { s3, catalog } = context;
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: catalog.bucket, Key: vm.pendingKey }));
    const pending = JSON.parse(await object.Body!.transformToString()) as PendingVm;
    const disks: VmManifestDisk[] = [];
    const failed: string[] = [];
    for (const disk of pending.description.disks) {
      const outcome = outcomes.find(
        (candidate) => candidate.vmUuid === vm.vmUuid && candidate.vdiUuid === disk.sourceVdiUuid,
      );
      if (outcome?.status !== 'succeeded' || !outcome.backupId) {
        failed.push(
          `disk ${disk.userdevice} (VDI ${disk.sourceVdiUuid}): ${outcome?.cause ?? outcome?.error ?? 'not backed up'}`,
        );
        continue;
      }
      disks.push({
        userdevice: disk.userdevice,
        bootable: disk.bootable,
        mode: disk.mode,
        vdiUuid: disk.sourceVdiUuid,
        nameLabel: disk.nameLabel,
        virtualSize: disk.virtualSize,
        backupId: outcome.backupId,
      });
    }
    if (failed.length) {
      return {
        vmUuid: vm.vmUuid,
        status: 'failed',
        disks: vm.disks,
        error: 'VmBackupIncomplete',
        cause:
          `VM ${vm.vmUuid} (${vm.nameLabel}): no VM restore point, ${failed.length} of ${vm.disks} disks failed: ` +
          `${failed.join('; ')}. The disks that committed are restore points of their own.`,
      };
    }
    const vmBackupId = newBackupId(new Date(pending.startedAt), 'vm');
    const { disks: _described, ...described } = pending.description;
    const manifest: VmManifest = {
      formatVersion: VM_MANIFEST_FORMAT_VERSION,
      vmBackupId,
      pool: context.pool,
      vmUuid: vm.vmUuid,
      startedAt: pending.startedAt,
      endedAt: context.now().toISOString(),
      ...described,
      disks,
    };
    await s3.send(
      new PutObjectCommand({
        Bucket: catalog.bucket,
        Key: vmManifestKey(catalog, context.pool, vm.vmUuid, vmBackupId),
        Body: JSON.stringify(manifest, null, 2),
        ContentType: 'application/json',
      }),
    );
    context.log.info('VM restore point committed', { vmUuid: vm.vmUuid, vmBackupId, disks: disks.length });
    const removed = await removeUnrestorableVmPoints(context, vm.vmUuid);
    return {
      vmUuid: vm.vmUuid,
      status: 'succeeded',
      vmBackupId,
      disks: disks.length,
      ...(removed ? { vmPointsRemoved: removed } : {}),
    };
  } finally {
    await s3
      .send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: vm.pendingKey }))
      .catch(() => undefined);
  }
}
