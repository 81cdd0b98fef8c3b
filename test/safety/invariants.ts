import { expect } from 'vitest';
import type { BackupWorld } from '../world/backup-world.ts';
import { sha256OfObject } from '../world/s3.ts';

/** Content hash of each committed restore point, recorded right after its backup while its snapshot exists. */
export type RestorePointHashes = Map<string, string>;

/** Runs a backup that must succeed and records its restore point's content hash. */
export async function backupAndRecord(world: BackupWorld, hashes: RestorePointHashes, input?: unknown) {
  const run = await world.backup(input);
  expect(run.status, run.cause).toBe('SUCCEEDED');
  const manifest = (await world.manifests()).at(-1)!;
  hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));
  return manifest;
}

/**
 * What every fault scenario must leave: no snapshot but the newest base, no task, session or multipart
 * upload; a catalog whose manifests point only at complete objects with their recorded sha256; and every
 * earlier restore point still restoring bit-exact.
 */
export async function expectInvariants(world: BackupWorld, hashes: RestorePointHashes): Promise<void> {
  expect(world.sim.openTasks()).toEqual([]);
  expect(world.sim.openSessions()).toEqual([]);
  expect(await world.openUploads()).toEqual([]);
  const manifests = await world.manifests();
  const snapshots = world.sim.snapshotsOf(world.vdiUuid).map((snapshot) => snapshot.uuid);
  expect(snapshots).toEqual(manifests.length ? [manifests.at(-1)!.snapshotUuid] : []);
  for (const manifest of manifests) {
    expect(await sha256OfObject(world.s3, world.bucket, manifest.objectKey)).toBe(manifest.sha256);
  }
  for (const [backupId, hash] of hashes) {
    if (!manifests.some((m) => m.backupId === backupId)) continue;
    const run = await world.restore({
      vdiUuid: world.vdiUuid,
      restorePoint: backupId,
      srUuid: world.sim.srs.shared.uuid,
      strategy: 'merge',
    });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    expect(world.sim.diskSha256(run.result!.vdiUuid), `restore point ${backupId}`).toBe(hash);
    world.sim.deleteVdi(run.result!.vdiUuid);
  }
  expect(world.sim.openTasks()).toEqual([]);
  expect(world.sim.openSessions()).toEqual([]);
}
