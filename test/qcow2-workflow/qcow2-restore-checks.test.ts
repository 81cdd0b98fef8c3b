import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterEach, describe, expect, it } from 'vitest';
import { manifestKey } from '../../lambdas/catalog/keys.ts';
import { CLUSTER_SIZE } from '../../lambdas/qcow2/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;

let world: BackupWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** A backed-up qcow2 VDI (one full, read by the outside checks); the restores here must fail. */
async function backedUp(
  vdi: { virtualSize: number; populate: 'scattered' | 'generated' } = {
    virtualSize: 8 * MiB,
    populate: 'scattered',
  },
): Promise<BackupWorld> {
  const w = (world = await startBackupWorld({ vdi: { ...vdi, imageFormat: 'qcow2' } }));
  const run = await w.backup();
  expect(run.status, run.cause).toBe('SUCCEEDED');
  return w;
}

/** Restores that moved bytes into a VDI (a redirect probe carries none). */
const importsWithBody = (w: BackupWorld) =>
  w.sim.transfers().filter((transfer) => transfer.direction === 'import' && transfer.bytes > 0);

describe('qcow2 restores: the checks the host importer does not make', () => {
  it('an image larger than the VDI it would go into is refused before a byte is sent', async () => {
    const w = await backedUp();
    // The catalog says 4 MiB (the VDI is created that size); the stored image declares 8 MiB.
    const [full] = await w.manifests();
    const key = manifestKey({ bucket: w.bucket, prefix: 'backups' }, 'lab', w.vdiUuid, full!.backupId);
    const stored = await w.s3.send(new GetObjectCommand({ Bucket: w.bucket, Key: key }));
    const manifest = JSON.parse(await stored.Body!.transformToString()) as Record<string, unknown>;
    await w.s3.send(
      new PutObjectCommand({
        Bucket: w.bucket,
        Key: key,
        Body: JSON.stringify({ ...manifest, virtualSize: 4 * MiB }),
      }),
    );
    const vdisBefore = await w.vdiUuids();
    const srUuid = w.sim.srs.shared.uuid;
    const replay = await w.restore({ vdiUuid: w.vdiUuid, srUuid, strategy: 'replay' });
    expect(replay.status).toBe('FAILED');
    expect(replay.cause).toContain(`qcow2 image of ${8 * MiB} bytes, larger than the VDI`);
    // The merge reads the tables against the chain's size and refuses them too.
    const merge = await w.restore({ vdiUuid: w.vdiUuid, srUuid, strategy: 'merge' });
    expect(merge.status).toBe('FAILED');
    expect(merge.cause).toMatch(/size/i);
    expect(importsWithBody(w)).toEqual([]);
    expect(await w.vdiUuids()).toEqual(vdisBefore);
    expect(w.sim.openTasks()).toEqual([]);
  });

  it('a body cut in the tables fails the restore, whatever the importer reports', async () => {
    // 64 MiB of data: more than loopback's socket buffers, so the host's close comes before we sent it all.
    const w = await backedUp({ virtualSize: 64 * MiB, populate: 'generated' });
    w.sim.injectFault({ kind: 'drop-connection', on: 'import', afterBytes: 2 * CLUSTER_SIZE, mode: 'close' });
    const vdisBefore = await w.vdiUuids();
    const run = await w.restore({ vdiUuid: w.vdiUuid, srUuid: w.sim.srs.shared.uuid, strategy: 'replay' });
    expect(run.status).toBe('FAILED');
    expect(run.cause).toContain(`the host answered after`);
    // The partial VDI is gone, and so are our task and session.
    expect(await w.vdiUuids()).toEqual(vdisBefore);
    expect(w.sim.openTasks()).toEqual([]);
    expect(w.sim.openSessions()).toEqual([]);
  });
});
