import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterEach, describe, expect, it } from 'vitest';
import { manifestKey } from '../../lambdas/catalog/keys.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;

let world: BackupWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** An 8 MiB VDI of this format; every point it stores is read by the outside checks. */
function smallWorld(imageFormat: 'vhd' | 'qcow2'): Promise<BackupWorld> {
  return startBackupWorld({ vdi: { virtualSize: 8 * MiB, populate: 'scattered', imageFormat } });
}

describe('qcow2 format rules of the backup workflow', () => {
  it('a VDI whose catalog is vhd and which is now qcow2-backed gets a full that says why', async () => {
    const w = (world = await smallWorld('qcow2'));
    const first = await w.backup();
    expect(first.status, first.cause).toBe('SUCCEEDED');
    // The simulator cannot move a VDI to another SR or change its image format (no VDI.pool_migrate), so the
    // catalog says what an older backup of a VHD-backed disk would: a manifest without `format` (vhd).
    const [full] = await w.manifests();
    const key = manifestKey({ bucket: w.bucket, prefix: 'backups' }, 'lab', w.vdiUuid, full!.backupId);
    const stored = await w.s3.send(new GetObjectCommand({ Bucket: w.bucket, Key: key }));
    const legacy = JSON.parse(await stored.Body!.transformToString()) as Record<string, unknown>;
    delete legacy.format;
    await w.s3.send(new PutObjectCommand({ Bucket: w.bucket, Key: key, Body: JSON.stringify(legacy) }));
    expect((await w.manifests())[0]!.format).toBeUndefined();

    const second = await w.backup();
    expect(second.status, second.cause).toBe('SUCCEEDED');
    const latest = (await w.manifests()).at(-1)!;
    expect(latest).toMatchObject({ kind: 'full', format: 'qcow2', parentBackupId: null });
    expect(latest.fullReason).toMatch(/^image format changed from vhd to qcow2/);
    expect(latest.objectKey.endsWith('.qcow2')).toBe(true);
    // The next one continues the new chain.
    const third = await w.backup();
    expect(third.status, third.cause).toBe('SUCCEEDED');
    expect((await w.manifests()).at(-1)).toMatchObject({ kind: 'delta', parentBackupId: latest.backupId });
  });

  it('a VHD VDI stays vhd', async () => {
    const w = (world = await smallWorld('vhd'));
    const run = await w.backup();
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const [manifest] = await w.manifests();
    expect(manifest).toMatchObject({ kind: 'full', format: 'vhd' });
    expect(manifest!.objectKey.endsWith('.vhd')).toBe(true);
    expect(w.sim.transfers().map((t) => t.format)).toEqual(['vhd']);
  });

  it('a pool older than xapi 25.27.0 fails a qcow2 backup by name and leaves nothing behind', async () => {
    const w = (world = await smallWorld('qcow2'));
    w.sim.setXapiVersion('25.20.1');
    const vdisBefore = await w.vdiUuids();
    const run = await w.backup();
    expect(run.status).toBe('FAILED');
    expect(run.cause).toContain('xapi 25.27.0');
    expect(run.cause).toContain('25.20.1');
    expect(run.cause).toContain(w.vdiUuid);
    expect(await w.vdiUuids()).toEqual(vdisBefore);
    expect(w.sim.snapshotsOf(w.vdiUuid)).toEqual([]);
    expect(w.sim.openTasks()).toEqual([]);
    expect(w.sim.openSessions()).toEqual([]);
    expect(w.sim.transfers()).toEqual([]);
    expect(await w.openUploads()).toEqual([]);
    expect(await w.manifests()).toEqual([]);
  });
});
