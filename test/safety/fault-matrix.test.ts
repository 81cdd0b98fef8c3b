/**
 * Faults during backups and restores, each triggered from the world's side where the bytes flow (the
 * simulator's body counters, the TCP proxy's), never from a callback inside the code under test: that code
 * runs as Lambda handlers in worker threads and as a container child process.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { acquireBackupLock } from '../../lambdas/backup/backup-lock.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys, readObject, s3World } from '../world/s3.ts';
import { startTcpProxy, type TcpProxy } from '../world/tcp-proxy.ts';
import { backupAndRecord, expectInvariants, type RestorePointHashes } from './invariants.ts';

const MiB = 1024 * 1024;
const disk = { virtualSize: 40 * MiB, populate: 'generated' as const };

/**
 * Arms a session expiry after `afterBytes` body bytes of the next `on` transfer, once no session is left
 * open (so none an earlier run leaked can hide in the expiry). `check()` then proves it fired, hit only
 * sessions made after it was armed, that the steps logged in again at least `reLogins` times after it,
 * and, by ref, that every session made since it was armed ended: by the expiry, or logged out (an expiry
 * clears the live table, so only the sessions made after it can show a leak there).
 */
function armSessionExpiry(world: BackupWorld, on: 'export' | 'import', afterBytes: number) {
  expect(world.sim.openSessions()).toEqual([]);
  const armedAt = Date.now();
  const { logins, expired: expiredBefore } = world.sim.sessionCounts();
  const fault = world.sim.injectFault({ kind: 'expire-sessions', on, afterBytes, times: 1 });
  return {
    check(reLogins: number) {
      expect(fault.fired, `the ${on} session expiry fired`).toBe(1);
      const expired = world.sim.expiredSessions().filter((session) => session.expiredAt.getTime() >= armedAt);
      expect(expired.length).toBeGreaterThan(0);
      expect(world.sim.sessionCounts().expired - expiredBefore).toBe(expired.length);
      for (const session of expired) expect(session.created.getTime()).toBeGreaterThanOrEqual(armedAt);
      // The run's own Login (one per execution) and the re-logins of the steps the expiry hit.
      expect(world.sim.sessionCounts().logins - logins).toBeGreaterThanOrEqual(1 + reLogins);
      const expiredAt = Math.min(...expired.map((session) => session.expiredAt.getTime()));
      const since = world.sim.sessionHistory().filter((session) => session.created.getTime() >= armedAt);
      const expiredRefs = new Set(expired.map((session) => session.ref));
      for (const session of since) {
        const ended = expiredRefs.has(session.ref) ? 'expired' : 'logout';
        expect(session.ended?.how, `session ${session.ref} (${session.originator})`).toBe(ended);
      }
      const after = since.filter((session) => session.created.getTime() >= expiredAt);
      expect(after.length, 'sessions logged in after the expiry').toBeGreaterThanOrEqual(reLogins);
    },
  };
}

describe('fault matrix', () => {
  let world: BackupWorld;
  let proxy: TcpProxy | undefined;
  const hashes: RestorePointHashes = new Map();
  // Scenarios that need no world options of their own share one (its functions warm), each on a fresh
  // VDI; closing the view (afterEach) closes nothing.
  let shared: Promise<BackupWorld> | undefined;
  const sharedWorld = async (vdi: Partial<typeof disk> & { onMember?: boolean } = {}) =>
    (await (shared ??= startBackupWorld({ vdi: disk }))).withNewVdi(vdi);
  afterEach(async () => {
    hashes.clear();
    await world?.close();
    await proxy?.close();
    proxy = undefined;
  });
  afterAll(async () => {
    await (await shared)?.close();
  });

  it('a session that expires mid-export: the steps log in again and the backup completes', async () => {
    world = await sharedWorld();
    await backupAndRecord(world, hashes);
    const expiry = armSessionExpiry(world, 'export', 10 * MiB);
    world.sim.writeDisk(world.vdiUuid, 0, Buffer.alloc(MiB, 1));
    await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid], mode: 'full' });
    expiry.check(1);
    await expectInvariants(world, hashes);
  });

  it('a session that expires and then a failure: clean-up logs in again and leaves nothing', async () => {
    world = await sharedWorld();
    await backupAndRecord(world, hashes);
    const exportExpiry = armSessionExpiry(world, 'export', 4 * MiB);
    world.sim.injectFault({ kind: 'fail-task-after-body', on: 'export', code: 'VDI_IO_ERROR', times: 1 });
    const backup = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(backup.status).toBe('FAILED');
    expect(backup.cause).toMatch(/VDI_IO_ERROR/);
    // The export step and the failure clean-up each found the session expired.
    exportExpiry.check(2);
    const before = await world.vdiUuids();
    const importExpiry = armSessionExpiry(world, 'import', 4 * MiB);
    world.sim.injectFault({ kind: 'fail-task-after-body', on: 'import', code: 'VDI_IO_ERROR' });
    const restore = await world.restore({
      vdiUuid: world.vdiUuid,
      srUuid: world.sim.srs.shared.uuid,
      strategy: 'replay',
    });
    world.sim.clearFaults();
    expect(restore.status).toBe('FAILED');
    importExpiry.check(1);
    expect(await world.vdiUuids()).toEqual(before);
    await expectInvariants(world, hashes);
  });

  it('a redirect to a host that is down fails the backup cleanly', async () => {
    world = await sharedWorld({ onMember: true });
    await backupAndRecord(world, hashes);
    world.sim.setHostDown('member', true);
    const run = await world.backup();
    world.sim.setHostDown('member', false);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('XapiNetworkError');
    expect(run.cause).toMatch(/export from 127\.0\.0\.1:\d+: .*(ECONNRESET|socket|closed)/i);
    await expectInvariants(world, hashes);
  });

  it('a host that stalls past our timeout fails the backup cleanly', async () => {
    world = await startBackupWorld({ vdi: disk, target: { stallTimeoutMs: 400 } });
    await backupAndRecord(world, hashes);
    world.sim.injectFault({ kind: 'stall', on: 'export', ms: 3_000, afterBytes: 4 * MiB, times: 1 });
    const run = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(/timed out|timeout/i);
    await expectInvariants(world, hashes);
  });

  it('S3 stopped mid-upload: the backup fails; the next run aborts the upload it left', async () => {
    proxy = await startTcpProxy(s3World().endpoint);
    const through = proxy;
    world = await startBackupWorld({
      vdi: disk,
      target: { s3: { ...s3World().target, endpoint: through.url } },
    });
    await backupAndRecord(world, hashes);
    // Counted at the proxy: 20 MiB more bytes towards S3 (the export's parts) and it stops until the run
    // has failed, so its clean-up cannot abort the upload either.
    const stop = through.stopAfterBytes(20 * MiB);
    const failed = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(failed.status).toBe('FAILED');
    expect(failed.cause).toMatch(/ECONNRESET|socket|network|closed|ECONNREFUSED/i);
    expect(stop.fired, 'the proxy stopped').toBe(true);
    expect(through.stops).toBe(1);
    through.start();
    // The failed run could not abort its upload while S3 was away: it is still open.
    const left = await world.openUploads();
    expect(left, 'the upload the failed run left').toHaveLength(1);
    await backupAndRecord(world, hashes);
    expect(await world.openUploads(), 'uploads once the next run is done').toEqual([]);
    await expectInvariants(world, hashes);
  });

  it('S3 stopped mid-restore: the restore fails and its VDI is destroyed', async () => {
    proxy = await startTcpProxy(s3World().endpoint);
    world = await startBackupWorld({
      vdi: disk,
      target: { s3: { ...s3World().target, endpoint: proxy.url } },
    });
    await backupAndRecord(world, hashes);
    const before = await world.vdiUuids();
    const through = proxy;
    world.sim.injectFault({ kind: 'throttle', on: 'import', bytesPerSecond: 20 * MiB });
    // Counted at the proxy: once 8 MiB more have come from S3 (the layer being imported), it stops.
    const stop = through.stopAfterBytes(8 * MiB, { direction: 'toClient' });
    const run = await world.restore({
      vdiUuid: world.vdiUuid,
      srUuid: world.sim.srs.shared.uuid,
      strategy: 'replay',
    });
    through.start();
    world.sim.clearFaults();
    expect(run.status).toBe('FAILED');
    expect(stop.fired, 'the proxy stopped').toBe(true);
    // The S3 stream broke under the import: the host saw a layer's body end short and failed the import,
    // and that is the cause the execution reports. (It names the host's error only, not the S3 read that
    // broke it: reported as a product gap in issue 13.)
    expect(run.error).toBe('XapiError');
    expect(run.cause).toMatch(/^import failed: VDI_IO_ERROR \[Device I\/O errors\]/);
    const layer = (await world.manifests()).at(-1)!;
    const imports = world.sim.transfers().filter((t) => t.direction === 'import' && t.bytes > 0);
    expect(imports.at(-1)).toMatchObject({ outcome: 'failure' });
    expect(imports.at(-1)!.bytes).toBeLessThan(layer.bytes);
    expect(await world.vdiUuids()).toEqual(before);
    await expectInvariants(world, hashes);
  });

  it('two runs racing for one VDI: one backs up, the other fails fast and touches nothing', async () => {
    world = await sharedWorld();
    await backupAndRecord(world, hashes);
    world.sim.injectFault({ kind: 'throttle', on: 'export', bytesPerSecond: 30 * MiB });
    const runs = await Promise.all([
      world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' }),
      world.backup(),
    ]);
    world.sim.clearFaults();
    const failed = runs.filter((run) => run.status === 'FAILED');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.error).toBe('BackupAlreadyRunning');
    expect(failed[0]!.cause).toMatch(/already running .* this run touched nothing/);
    const winner = runs.find((run) => run.status === 'SUCCEEDED')!;
    const manifest = (await world.manifests()).at(-1)!;
    expect(winner.summary!.outcomes[0]!.backupId).toBe(manifest.backupId);
    hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));
    await expectInvariants(world, hashes);
  });

  it('a lock left by a crashed run blocks until it expires, then the next run takes it over', async () => {
    world = await startBackupWorld({ vdi: disk, lockTtlSeconds: 1 });
    await backupAndRecord(world, hashes);
    // The crashed run's lock, written straight into the deployment's table, expires after 8 s: long enough
    // that it still holds when the next run's Plan reads it, however slow the machine.
    const lockTable = world.target.lockTable!;
    const client = new DynamoDBClient({
      endpoint: lockTable.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const crashedAt = Date.now();
    await acquireBackupLock(
      { client, tableName: lockTable.tableName, ttlSeconds: 8 },
      `lab/${world.vdiUuid}`,
      'crashed-run',
      new Date(crashedAt),
    );
    client.destroy();
    const blocked = await world.backup();
    expect(blocked.status).toBe('FAILED');
    expect(blocked.cause).toMatch(/already running \(crashed-run, since .*; its lock expires at/);
    // The lock counts whole seconds: it expires at floor(crashedAt) + 8 s and is free once that is past.
    const freeAt = (Math.floor(crashedAt / 1000) + 9) * 1000 + 100;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, freeAt - Date.now())));
    await backupAndRecord(world, hashes);
    await expectInvariants(world, hashes);
  });

  it('a manifest whose object was deleted: its points leave the catalog and the next backup is a full', async () => {
    world = await sharedWorld();
    const full = await backupAndRecord(world, hashes);
    world.sim.writeDisk(world.vdiUuid, 0, Buffer.alloc(MiB, 2));
    const delta = await backupAndRecord(world, hashes);
    await world.s3.send(new DeleteObjectCommand({ Bucket: world.bucket, Key: delta.objectKey }));
    hashes.delete(delta.backupId);
    const next = await world.backup();
    expect(next.status, next.cause).toBe('SUCCEEDED');
    expect(next.summary!.outcomes[0]!.fullReason).toMatch(
      new RegExp(`^chain broken: object .*${delta.backupId}\\.vhd of backup ${delta.backupId} is missing`),
    );
    const ids = (await world.manifests()).map((m) => m.backupId);
    expect(ids).toContain(full.backupId);
    expect(ids).not.toContain(delta.backupId);
    expect(await listKeys(world.s3, world.bucket)).toContain(
      `backups/lab/${world.vdiUuid}/${delta.backupId}.json.broken`,
    );
    const latest = (await world.manifests()).at(-1)!;
    hashes.set(latest.backupId, world.sim.diskSha256(latest.snapshotUuid));
    await expectInvariants(world, hashes);
  });

  it('an object altered in S3: a replay restore refuses it by sha256 and leaves nothing behind', async () => {
    world = await sharedWorld();
    const full = await backupAndRecord(world, hashes);
    const original = await readObject(world.s3, world.bucket, full.objectKey);
    const altered = Buffer.from(original);
    altered[altered.length - 1024]! ^= 0x01;
    await world.s3.send(new PutObjectCommand({ Bucket: world.bucket, Key: full.objectKey, Body: altered }));
    const before = await world.vdiUuids();
    const run = await world.restore({
      vdiUuid: world.vdiUuid,
      srUuid: world.sim.srs.shared.uuid,
      strategy: 'replay',
    });
    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(/changed since its backup: sha256/);
    expect(await world.vdiUuids()).toEqual(before);
    await world.s3.send(new PutObjectCommand({ Bucket: world.bucket, Key: full.objectKey, Body: original }));
    await expectInvariants(world, hashes);
  });
});
