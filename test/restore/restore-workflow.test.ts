import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_RESTORE_STRATEGY } from '../../lambdas/restore/input.ts';
import { VHD_BLOCK_SIZE } from '../../lambdas/vhd/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;

/** Backs up, recording the content hash of each restore point while its snapshot still exists. */
async function backupRecording(world: BackupWorld, hashes: Map<string, string>) {
  const run = await world.backup();
  expect(run.status, run.cause).toBe('SUCCEEDED');
  const manifest = (await world.manifests()).at(-1)!;
  hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));
  return manifest;
}

describe('restore workflow (synthesized state machine, simulator, Swift)', () => {
  let world: BackupWorld;
  const hashes = new Map<string, string>();
  beforeEach(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 48 * MiB, populate: 'scattered' } });
    hashes.clear();
  });
  afterEach(async () => {
    await world.close();
  });

  it('restores the latest point and earlier ones, bit-exact, with each strategy', async () => {
    const full = await backupRecording(world, hashes);
    world.sim.writeDisk(world.vdiUuid, 3 * VHD_BLOCK_SIZE + 100, randomBytes(3 * MiB));
    const delta1 = await backupRecording(world, hashes);
    world.sim.writeDisk(world.vdiUuid, 4 * VHD_BLOCK_SIZE, randomBytes(MiB)); // overlaps delta1's blocks
    world.sim.writeDisk(world.vdiUuid, 20 * VHD_BLOCK_SIZE, randomBytes(512));
    const delta2 = await backupRecording(world, hashes);
    const srUuid = world.sim.srs.shared.uuid;

    for (const strategy of ['replay', 'merge'] as const) {
      for (const [restorePoint, backupId, layers] of [
        ['latest', delta2.backupId, 3],
        [delta1.backupId, delta1.backupId, 2],
        [full.backupId, full.backupId, 1],
      ] as const) {
        const run = await world.restore({ vdiUuid: world.vdiUuid, restorePoint, srUuid, strategy });
        expect(run.status, run.cause).toBe('SUCCEEDED');
        const result = run.result!;
        expect(result).toMatchObject({ restorePoint: backupId, strategy, sourceVdiUuid: world.vdiUuid });
        expect(result.layersApplied).toHaveLength(layers);
        expect(world.sim.diskSha256(result.vdiUuid)).toBe(hashes.get(backupId));
        const record = world.sim.vdiRecord(result.vdiUuid)!;
        expect(record.name_label).toBe(`web-01 root (restored ${backupId})`);
        expect(record.other_config).toMatchObject({
          'vdi-vault-restored-from': `lab/${world.vdiUuid}/${backupId}`,
          'vdi-vault-restore': 'complete',
        });
        expect(record.virtual_size).toBe(48 * MiB);
      }
    }
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
  });

  it('merge moves each block once: fewer bytes than replay on overlapping chains', async () => {
    await backupRecording(world, hashes);
    for (let i = 0; i < 3; i++) {
      world.sim.writeDisk(world.vdiUuid, 2 * VHD_BLOCK_SIZE, randomBytes(VHD_BLOCK_SIZE * 2));
      await backupRecording(world, hashes);
    }
    const srUuid = world.sim.srs.shared.uuid;
    const replay = await world.restore({ vdiUuid: world.vdiUuid, srUuid, strategy: 'replay' });
    const merge = await world.restore({ vdiUuid: world.vdiUuid, srUuid, strategy: 'merge' });
    expect(merge.result!.bytesMoved).toBeLessThan(replay.result!.bytesMoved);
    expect(world.sim.diskSha256(merge.result!.vdiUuid)).toBe(world.sim.diskSha256(replay.result!.vdiUuid));
  });

  it('restores an ISO time to the newest point at or before it', async () => {
    const full = await backupRecording(world, hashes);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const between = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 20));
    world.sim.writeDisk(world.vdiUuid, 0, randomBytes(4096));
    await backupRecording(world, hashes);
    const run = await world.restore({
      vdiUuid: world.vdiUuid,
      restorePoint: between,
      srUuid: world.sim.srs.shared.uuid,
    });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    expect(run.result!.restorePoint).toBe(full.backupId);
    expect(run.result!.strategy).toBe(DEFAULT_RESTORE_STRATEGY);
    expect(world.sim.diskSha256(run.result!.vdiUuid)).toBe(hashes.get(full.backupId));
  });

  it('imports through the redirect to the member host when the target SR is local to it', async () => {
    await backupRecording(world, hashes);
    for (const strategy of ['replay', 'merge']) {
      const run = await world.restore({
        vdiUuid: world.vdiUuid,
        srUuid: world.sim.srs.memberLocal.uuid,
        strategy,
      });
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect(world.sim.diskSha256(run.result!.vdiUuid)).toBe([...hashes.values()][0]);
    }
  });
});
