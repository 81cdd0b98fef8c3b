// The outside checks every world runs after its backups and restores catch what they are there for.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { readObject } from '../world/s3.ts';

const MiB = 1024 * 1024;

describe('outside checks', () => {
  let world: BackupWorld;
  beforeEach(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'generated' } });
  });
  afterEach(async () => {
    await world.close();
  });

  it('a stored delta whose data differs from the host export is caught by libvhdi, a full by qemu-img', async () => {
    expect((await world.backup()).status).toBe('SUCCEEDED');
    world.sim.writeDisk(world.vdiUuid, 3 * MiB, randomBytes(4096));
    expect((await world.backup()).status).toBe('SUCCEEDED');
    const [full, delta] = await world.manifests();
    const exports = world.sim.transfers();

    // One data byte of each object changes; VHD has no checksum over data, so only a reader of the
    // content can tell.
    for (const manifest of [delta!, full!]) {
      const bytes = await readObject(world.s3, world.bucket, manifest.objectKey);
      bytes[bytes.length - 512 - 1000]! ^= 0x40;
      await world.s3.send(
        new PutObjectCommand({ Bucket: world.bucket, Key: manifest.objectKey, Body: bytes }),
      );
      const reader = manifest === full ? 'qemu-img' : 'libvhdi';
      await expect(world.outsideChecks.storedPoints(exports)).rejects.toThrow(
        new RegExp(`${reader} reads the stored point ${manifest.backupId} differently`),
      );
    }
  });

  it('a restore stream that does not hold the point is caught, whichever strategy sent it', async () => {
    expect((await world.backup()).status).toBe('SUCCEEDED');
    world.sim.writeDisk(world.vdiUuid, 5 * MiB, randomBytes(4096));
    expect((await world.backup()).status).toBe('SUCCEEDED');
    const [, delta] = await world.manifests();
    for (const strategy of ['replay', 'merge']) {
      const before = world.sim.transfers().length;
      const run = await world.restore({
        vdiUuid: world.vdiUuid,
        restorePoint: delta!.backupId,
        srUuid: world.sim.srs.shared.uuid,
        strategy,
      });
      expect(run.status, run.cause).toBe('SUCCEEDED');
      const received = world.sim.transfers().slice(before);
      expect(world.outsideChecks.done.at(-1)).toMatchObject({
        what: 'restore stream',
        reader: strategy === 'replay' ? 'libvhdi' : 'qemu-img',
        layers: strategy === 'replay' ? 2 : 1,
      });
      // The same streams judged against a VDI the host changed afterwards no longer match.
      world.sim.writeDisk(run.result!.vdiUuid, 0, randomBytes(512));
      await expect(world.outsideChecks.restoredStreams(run.result!, received)).rejects.toThrow(
        /reads the restore of .* differently from the host's content/,
      );
    }
  });
});
