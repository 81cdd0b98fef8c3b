import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CLUSTER_SIZE } from '../../lambdas/qcow2/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;
const TiB = 1024 ** 4;

let world: BackupWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

async function backupOk(w: BackupWorld) {
  const run = await w.backup();
  expect(run.status, run.cause).toBe('SUCCEEDED');
  return (await w.manifests()).at(-1)!;
}

describe('qcow2 VDIs through the backup and restore workflows', () => {
  it('a small qcow2 VDI: full + two deltas stored as qcow2, restored bit-exact with replay and merge', async () => {
    const w = (world = await startBackupWorld({
      vdi: { virtualSize: 16 * MiB, populate: 'scattered', imageFormat: 'qcow2' },
    }));
    const hashes = new Map<string, string>();
    const full = await backupOk(w);
    hashes.set(full.backupId, w.sim.diskSha256(full.snapshotUuid));
    w.sim.writeDisk(w.vdiUuid, 5 * CLUSTER_SIZE + 100, randomBytes(3 * CLUSTER_SIZE));
    const delta1 = await backupOk(w);
    hashes.set(delta1.backupId, w.sim.diskSha256(delta1.snapshotUuid));
    w.sim.writeDisk(w.vdiUuid, 6 * CLUSTER_SIZE, Buffer.alloc(CLUSTER_SIZE)); // zeros over delta1's data
    w.sim.writeDisk(w.vdiUuid, 200 * CLUSTER_SIZE, randomBytes(512));
    const delta2 = await backupOk(w);
    hashes.set(delta2.backupId, w.sim.diskSha256(delta2.snapshotUuid));

    const manifests = await w.manifests();
    expect(manifests.map((m) => [m.kind, m.format])).toEqual([
      ['full', 'qcow2'],
      ['delta', 'qcow2'],
      ['delta', 'qcow2'],
    ]);
    for (const m of manifests) expect(m.objectKey.endsWith(`${m.backupId}.qcow2`)).toBe(true);
    // A delta carries the clusters written since its base, and the metadata before them.
    expect(delta1.presentBlocks).toBeLessThan(full.presentBlocks);
    expect(
      w.sim
        .transfers()
        .filter((t) => t.direction === 'export')
        .map((t) => t.format),
    ).toEqual(['qcow2', 'qcow2', 'qcow2']);

    const srUuid = w.sim.srs.shared.uuid;
    for (const strategy of ['replay', 'merge'] as const) {
      for (const point of strategy === 'replay' ? [delta2, delta1] : [delta2]) {
        const run = await w.restore({ vdiUuid: w.vdiUuid, restorePoint: point.backupId, srUuid, strategy });
        expect(run.status, run.cause).toBe('SUCCEEDED');
        const restored = run.result!.vdiUuid;
        expect(run.result!.format).toBe('qcow2');
        expect(w.sim.diskSha256(restored)).toBe(hashes.get(point.backupId));
        expect((w.sim.vdiRecord(restored)!.sm_config as Record<string, string>)['image-format']).toBe(
          'qcow2',
        );
      }
    }
    const imports = w.sim.transfers().filter((t) => t.direction === 'import' && t.outcome === 'success');
    expect(new Set(imports.map((t) => t.format))).toEqual(new Set(['qcow2']));
    expect(w.outsideChecks.done.length).toBeGreaterThan(0);
    expect(w.sim.openTasks()).toEqual([]);
    expect(w.sim.openSessions()).toEqual([]);
  });

  it('a 3 TiB sparse qcow2 VDI: full + two deltas, restored with replay and merge', async () => {
    const w = (world = await startBackupWorld({
      vdi: { virtualSize: 3 * TiB, populate: 'none', imageFormat: 'qcow2' },
    }));
    const writes: [number, Buffer][] = [];
    const write = (offset: number, bytes: Buffer) => {
      w.sim.writeDisk(w.vdiUuid, offset, bytes);
      writes.push([offset, bytes]);
    };
    write(0, randomBytes(CLUSTER_SIZE));
    write(2 * TiB + 7 * MiB, randomBytes(3 * CLUSTER_SIZE));
    write(3 * TiB - CLUSTER_SIZE, randomBytes(CLUSTER_SIZE));
    await backupOk(w);
    write(1.5 * TiB, randomBytes(2 * CLUSTER_SIZE));
    await backupOk(w);
    write(2 * TiB + 7 * MiB + CLUSTER_SIZE, randomBytes(CLUSTER_SIZE)); // overwrites the full's cluster
    write(100 * MiB, randomBytes(512));
    const latest = await backupOk(w);
    const manifests = await w.manifests();
    expect(manifests.map((m) => [m.kind, m.format, m.virtualSize])).toEqual([
      ['full', 'qcow2', 3 * TiB],
      ['delta', 'qcow2', 3 * TiB],
      ['delta', 'qcow2', 3 * TiB],
    ]);
    // Sparse: a few clusters and their tables, not terabytes.
    for (const m of manifests) expect(m.bytes).toBeLessThan(64 * MiB);
    expect(manifests[0]!.presentBlocks).toBe(5);

    const srUuid = w.sim.srs.shared.uuid;
    for (const strategy of ['replay', 'merge'] as const) {
      const run = await w.restore({ vdiUuid: w.vdiUuid, srUuid, strategy });
      expect(run.status, run.cause).toBe('SUCCEEDED');
      const restored = run.result!.vdiUuid;
      expect(run.result!.restorePoint).toBe(latest.backupId);
      expect(w.sim.vdiRecord(restored)!.virtual_size).toBe(3 * TiB);
      for (const [offset, bytes] of writes.filter(([o]) => o !== 2 * TiB + 7 * MiB)) {
        expect(Buffer.from(w.sim.readDisk(restored, offset, bytes.length)).equals(bytes)).toBe(true);
      }
      // The full's three clusters, the middle one overwritten by the last delta.
      expect(Buffer.from(w.sim.readDisk(restored, 2 * TiB + 7 * MiB, 3 * CLUSTER_SIZE))).toEqual(
        Buffer.from(w.sim.readDisk(latest.snapshotUuid, 2 * TiB + 7 * MiB, 3 * CLUSTER_SIZE)),
      );
      expect(Buffer.from(w.sim.readDisk(restored, 1 * TiB, CLUSTER_SIZE)).every((b) => b === 0)).toBe(true);
    }
  });
});
