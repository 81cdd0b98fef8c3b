import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VHD_BLOCK_SIZE } from '../../lambdas/vhd/index.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys, sha256OfObject } from '../world/s3.ts';
import { blockIndexesTouched, readStoredVhd } from '../world/vhd-objects.ts';

const MiB = 1024 * 1024;

/** Every check that a committed backup holds exactly the snapshot it names. */
async function expectBackupMatchesSnapshot(world: BackupWorld, backupId: string, expectedBlocks?: number[]) {
  const manifest = (await world.manifests()).find((m) => m.backupId === backupId)!;
  expect(manifest).toBeDefined();
  expect(await sha256OfObject(world.s3, world.bucket, manifest.objectKey)).toBe(manifest.sha256);
  const stored = await readStoredVhd(world.s3, world.bucket, manifest.objectKey);
  expect(stored.summary.bytesRead).toBe(manifest.bytes);
  expect(stored.summary.diskType).toBe(manifest.kind === 'full' ? 'dynamic' : 'differencing');
  const indexes = [...stored.blocks.keys()];
  if (manifest.kind === 'full') expect(indexes).toEqual(world.sim.allocatedBlocks(manifest.snapshotUuid));
  if (expectedBlocks) expect(indexes).toEqual(expectedBlocks);
  for (const [index, data] of stored.blocks) {
    expect(
      data.equals(world.sim.readDisk(manifest.snapshotUuid, index * VHD_BLOCK_SIZE, VHD_BLOCK_SIZE)),
    ).toBe(true);
  }
  return manifest;
}

async function expectHostClean(world: BackupWorld, keptSnapshotUuid?: string) {
  const snapshots = world.sim.snapshotsOf(world.vdiUuid).map((s) => s.uuid);
  expect(snapshots).toEqual(keptSnapshotUuid ? [keptSnapshotUuid] : []);
  expect(world.sim.openTasks()).toEqual([]);
  expect(world.sim.openSessions()).toEqual([]);
  expect(await world.openUploads()).toEqual([]);
}

describe('backup workflow (synthesized state machine, simulator, Swift)', () => {
  let world: BackupWorld;
  beforeEach(async () => {
    world = await startBackupWorld();
  });
  afterEach(async () => {
    await world.close();
  });

  it('takes a full, then deltas holding exactly the blocks written since, and leaves one snapshot', async () => {
    const first = await world.backup();
    expect(first.status, first.cause).toBe('SUCCEEDED');
    const [fullOutcome] = first.summary!.outcomes;
    expect(fullOutcome).toMatchObject({ status: 'succeeded', kind: 'full', fullReason: 'first backup' });
    const full = await expectBackupMatchesSnapshot(world, fullOutcome!.backupId!);
    await expectHostClean(world, full.snapshotUuid);

    const writes = [
      { offset: 1 * VHD_BLOCK_SIZE + 4096, length: 8192 },
      { offset: 6 * VHD_BLOCK_SIZE - 1024, length: 4096 }, // straddles blocks 5 and 6
      { offset: 20 * VHD_BLOCK_SIZE, length: 512 },
    ];
    for (const { offset, length } of writes) world.sim.writeDisk(world.vdiUuid, offset, randomBytes(length));
    const second = await world.backup();
    expect(second.status, second.cause).toBe('SUCCEEDED');
    const deltaOutcome = second.summary!.outcomes[0]!;
    expect(deltaOutcome).toMatchObject({ status: 'succeeded', kind: 'delta' });
    const touched = [...new Set(writes.flatMap((w) => blockIndexesTouched(w.offset, w.length)))].sort(
      (a, b) => a - b,
    );
    const delta = await expectBackupMatchesSnapshot(world, deltaOutcome.backupId!, touched);
    expect(delta.parentBackupId).toBe(full.backupId);
    expect(delta.bytes).toBeLessThan(full.bytes);
    await expectHostClean(world, delta.snapshotUuid);

    world.sim.writeDisk(world.vdiUuid, 30 * VHD_BLOCK_SIZE, randomBytes(MiB));
    const third = await world.backup();
    expect(third.status, third.cause).toBe('SUCCEEDED');
    const delta2 = await expectBackupMatchesSnapshot(world, third.summary!.outcomes[0]!.backupId!, [30]);
    expect(delta2.parentBackupId).toBe(delta.backupId);
    await expectHostClean(world, delta2.snapshotUuid);

    // Outside readers saw each point as the host exported it: qemu-img the full, libvhdi each chain.
    expect(world.outsideChecks.done).toEqual([
      { what: 'stored point', backupId: full.backupId, reader: 'qemu-img', layers: 1 },
      { what: 'stored point', backupId: delta.backupId, reader: 'libvhdi', layers: 2 },
      { what: 'stored point', backupId: delta2.backupId, reader: 'libvhdi', layers: 3 },
    ]);
  });

  it('takes a full, and says why, when someone deleted the base snapshot', async () => {
    expect((await world.backup()).status).toBe('SUCCEEDED');
    const [full] = await world.manifests();
    world.sim.deleteVdi(full!.snapshotUuid);
    const run = await world.backup();
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const outcome = run.summary!.outcomes[0]!;
    expect(outcome.kind).toBe('full');
    expect(outcome.fullReason).toMatch(/^base gone: snapshot .* is no longer on the host$/);
    const manifests = await world.manifests();
    expect(manifests.at(-1)!.fullReason).toBe(outcome.fullReason);
    await expectHostClean(world, manifests.at(-1)!.snapshotUuid);
  });

  it('takes a full when asked, removes stale snapshots of ours and never touches people’s snapshots', async () => {
    expect((await world.backup()).status).toBe('SUCCEEDED');
    const personal = world.sim.snapshotVdi(world.vdiUuid);
    // A crashed run's snapshot: tagged with our series.
    const stale = world.sim.snapshotVdi(world.vdiUuid);
    const tagging = await import('../../lambdas/backup/snapshot-tags.ts');
    world.sim.vdiRecord(stale.uuid)!; // exists
    await tagSnapshot(world, stale.uuid, tagging.SERIES_TAG, `lab/${world.vdiUuid}`);
    const run = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    expect(run.summary!.outcomes[0]).toMatchObject({ kind: 'full', fullReason: 'mode full' });
    const latest = (await world.manifests()).at(-1)!;
    expect(
      world.sim
        .snapshotsOf(world.vdiUuid)
        .map((s) => s.uuid)
        .sort(),
    ).toEqual([personal.uuid, latest.snapshotUuid].sort());
  });

  it('backs up several VDIs; one failing does not stop the others and the execution names it', async () => {
    const other = world.sim.addVdi({ virtualSize: 8 * MiB, populate: 'scattered' });
    const missing = '00000000-0000-4000-8000-000000000000';
    const run = await world.backup({ vdiUuids: [world.vdiUuid, missing, other.uuid] });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('XapiError');
    expect(run.cause).toContain(`VDI ${missing}: `);
    expect(run.cause).toContain('UUID_INVALID');
    expect(await world.manifests()).toHaveLength(1);
    expect(await world.manifests(other.uuid)).toHaveLength(1);
    expect(world.sim.openSessions()).toEqual([]);
    expect(world.sim.openTasks()).toEqual([]);
  });

  it('follows the redirect to the member host that sees a local SR', async () => {
    const onMember = world.sim.addVdi({ virtualSize: 8 * MiB, populate: 'scattered', onMember: true });
    const run = await world.backup({ vdiUuids: [onMember.uuid] });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const [manifest] = await world.manifests(onMember.uuid);
    expect(manifest!.host).toBe(new URL(world.sim.memberUrl).host);
  });

  it('fails a backup whose export lost a sector-bitmap bit with its own error, full and delta alike, leaving nothing', async () => {
    // The host writes full bitmaps; the first block's bitmap follows the footer copy, header, locator
    // sector and the one-sector BAT of a 64 MiB disk (2560 = 512 + 1024 + 512 + 512).
    const firstBitmap = 2560;
    const flipBitmapBit = () =>
      world.sim.injectFault({
        kind: 'corrupt-byte',
        on: 'export',
        offset: firstBitmap + 100,
        xor: 0x01,
        times: 1,
      });

    flipBitmapBit();
    const full = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(full.status).toBe('FAILED');
    expect(full.cause).toMatch(/the sector bitmap of block 0 is not full \(byte 0xfe\) \(at byte 2660\)/);
    expect(await world.manifests()).toEqual([]);
    expect(await listKeys(world.s3, world.bucket)).toEqual([]);
    await expectHostClean(world);

    const good = await world.backup();
    expect(good.status, good.cause).toBe('SUCCEEDED');
    const [base] = await world.manifests();
    world.sim.writeDisk(world.vdiUuid, 9 * VHD_BLOCK_SIZE + 4096, randomBytes(512));
    flipBitmapBit();
    const delta = await world.backup();
    expect(delta.status).toBe('FAILED');
    expect(delta.cause).toMatch(/the sector bitmap of block 9 is not full \(byte 0xfe\) \(at byte 2660\)/);
    // The full stays the only point, its snapshot the base; no upload, task or session is left.
    expect(await world.manifests()).toEqual([base]);
    await expectHostClean(world, base!.snapshotUuid);
  });

  it('refuses bad input naming the field, touching nothing', async () => {
    const run = await world.backup({ vdiUuids: ['not-a-uuid'] });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('InputValidationError');
    expect(run.cause).toMatch(/^vdiUuids\[0\]: "not-a-uuid" is not a VDI uuid/);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await listKeys(world.s3, world.bucket)).toEqual([]);
  });
});

describe('backup over HTTPS', () => {
  it('verifies the pool against its CA and backs up', async () => {
    const world = await startBackupWorld({ tls: true, vdi: { virtualSize: 8 * MiB } });
    try {
      const run = await world.backup();
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect((run.output as BackupSummary).succeeded).toBe(1);
    } finally {
      await world.close();
    }
  });
});

async function tagSnapshot(world: BackupWorld, uuid: string, key: string, value: string) {
  const { XapiSession } = await import('../../lambdas/xapi/index.ts');
  const session = await XapiSession.login(
    { url: world.sim.url },
    { username: world.sim.username, password: world.sim.password },
  );
  try {
    await session.addToVdiOtherConfig(await session.getVdiByUuid(uuid), key, value);
  } finally {
    await session.logout();
  }
}
