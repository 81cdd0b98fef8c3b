import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
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

/**
 * Runs a restore that must succeed and counts what it moved where the bytes flow: the S3 GetObject body
 * bytes of `.vhd` objects at the deployment's gateway, and the import body bytes at the simulator.
 */
async function restoreCounted(world: BackupWorld, input: Record<string, unknown>) {
  const { gateway } = await world.deployment();
  const callsBefore = gateway.calls.length;
  const transfersBefore = world.sim.transfers().length;
  const run = await world.restore(input);
  expect(run.status, run.cause).toBe('SUCCEEDED');
  const reads = gateway.calls
    .slice(callsBefore)
    .filter((call) => call.action === 's3:GetObject' && call.allowed && call.resource.endsWith('.vhd'));
  // The imports that carried a layer (a redirect probe is a transfer too, with no body).
  const imports = world.sim
    .transfers()
    .slice(transfersBefore)
    .filter((transfer) => transfer.direction === 'import' && transfer.outcome === 'success');
  return {
    run,
    s3Bytes: reads.reduce((sum, call) => sum + (call.bytesOut ?? 0), 0),
    s3Requests: reads.length,
    objectsRead: [
      ...new Set(reads.map((call) => call.resource.split(':::')[1]!.split('/').slice(1).join('/'))),
    ].sort(),
    importBytes: imports.reduce((sum, transfer) => sum + transfer.bytes, 0),
  };
}

describe('restore workflow (synthesized state machine, simulator, Swift)', () => {
  // One world (its functions warm); each test gets a fresh VDI of its own, so its own empty series.
  let shared: BackupWorld;
  let world: BackupWorld;
  const hashes = new Map<string, string>();
  beforeAll(async () => {
    shared = await startBackupWorld({ vdi: { virtualSize: 48 * MiB, populate: 'scattered' } });
  });
  beforeEach(() => {
    world = shared.withNewVdi();
    hashes.clear();
  });
  afterAll(async () => {
    await shared?.close();
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
    const chain = await world.manifests();
    expect(chain.map((m) => m.kind)).toEqual(['full', 'delta', 'delta', 'delta']);
    // The blocks the chain holds, as the host has them: the newest snapshot's allocated blocks (every delta
    // rewrote blocks 2 and 3, which the full already held).
    const blocks = world.sim.allocatedBlocks(chain.at(-1)!.snapshotUuid).length;
    const stored = chain.reduce((sum, m) => sum + m.bytes, 0);
    const srUuid = world.sim.srs.shared.uuid;
    const replay = await restoreCounted(world, { vdiUuid: world.vdiUuid, srUuid, strategy: 'replay' });
    const merge = await restoreCounted(world, { vdiUuid: world.vdiUuid, srUuid, strategy: 'merge' });
    // Replay reads each object once, whole, and imports each layer as stored.
    expect(replay.objectsRead).toEqual(chain.map((m) => m.objectKey).sort());
    expect(replay.s3Bytes).toBe(stored);
    expect(replay.importBytes).toBe(stored);
    // Merge reads and imports each block the chain holds once (2 MiB of data and its 512-byte bitmap), plus
    // each layer's metadata: less than one block more than that, so no block moves twice.
    const once = blocks * (VHD_BLOCK_SIZE + 512);
    for (const bytes of [merge.s3Bytes, merge.importBytes]) {
      expect(bytes).toBeGreaterThanOrEqual(blocks * VHD_BLOCK_SIZE);
      expect(bytes).toBeLessThan(once + VHD_BLOCK_SIZE);
    }
    // Replay moved every block of every layer: the blocks the deltas rewrote again, each time.
    const rewrites = chain.reduce((sum, m) => sum + m.presentBlocks, 0) - blocks;
    expect(rewrites).toBeGreaterThanOrEqual(5);
    expect(replay.importBytes - merge.importBytes).toBeGreaterThanOrEqual(rewrites * VHD_BLOCK_SIZE);
    expect(merge.run.result!.bytesMoved).toBeLessThan(replay.run.result!.bytesMoved);
    expect(world.sim.diskSha256(merge.run.result!.vdiUuid)).toBe(hashes.get(chain.at(-1)!.backupId));
    expect(world.sim.diskSha256(replay.run.result!.vdiUuid)).toBe(hashes.get(chain.at(-1)!.backupId));
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
      // On the member's local SR: only the member serves its import (the master answers with a redirect).
      expect(world.sim.vdiRecord(run.result!.vdiUuid)!.SR).toBe(world.sim.srs.memberLocal.ref);
      expect(world.sim.diskSha256(run.result!.vdiUuid)).toBe([...hashes.values()][0]);
    }
  });
});
