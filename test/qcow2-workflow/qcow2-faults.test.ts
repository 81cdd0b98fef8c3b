/**
 * The fault matrix's qcow2 rows (docs/fault-matrix.md): faults in a qcow2 export and a qcow2 import,
 * triggered by the simulator where the bytes flow. Each failed backup leaves no manifest, object, upload,
 * task, session or extra snapshot, and every earlier point still restores bit-exact with both strategies;
 * each failed restore leaves no VDI.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fault } from '../../world/xapi-simulator/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';
import { backupAndRecord, expectInvariants, type RestorePointHashes } from '../safety/invariants.ts';

const MiB = 1024 * 1024;
const CLUSTER = 64 * 1024;

// A 40 MiB qcow2 disk with every cluster present: header, refcount table, one refcount block, L1 and one
// L2 table (clusters 0 to 4), then 640 data clusters. The failed backups are fulls, so a multipart upload
// is open when the fault strikes.
const exportFaults: { name: string; fault: Fault; cause: RegExp }[] = [
  {
    name: 'the connection drops in the data',
    fault: { kind: 'drop-connection', on: 'export', afterBytes: 20 * MiB },
    cause:
      /: stream ended while reading the data of cluster \d+ at byte \d+ .*; the host's task failed: VDI_IO_ERROR/,
  },
  {
    name: 'the connection drops in the tables',
    fault: { kind: 'drop-connection', on: 'export', afterBytes: 3 * CLUSTER + 100 },
    cause: /: stream ended while reading the (refcount table|refcount block|L1 table)/,
  },
  {
    name: 'an L2 entry is corrupt',
    fault: { kind: 'corrupt-byte', on: 'export', offset: 4 * CLUSTER + 8 + 5 },
    cause:
      /: the L2 entry of cluster 1 points at byte \d+, the next data cluster is at 393216 \(at byte 262152\)/,
  },
  {
    name: 'a refcount is corrupt',
    fault: { kind: 'corrupt-byte', on: 'export', offset: 2 * CLUSTER + 1 },
    cause:
      /: the refcount of cluster 0 is 254: the host writes 1 for each cluster of the file, then 0 \(at byte 131072\)/,
  },
  {
    name: 'the host appends its 500 page mid-stream',
    fault: { kind: 'http-500-in-body', on: 'export', afterBytes: 10 * MiB, code: 'VDI_IO_ERROR' },
    cause: /HTTP\/1\.1 500 Internal Error.*; the host's task failed: VDI_IO_ERROR/,
  },
  {
    name: 'the task fails after a complete body',
    fault: {
      kind: 'fail-task-after-body',
      on: 'export',
      code: 'VDI_IO_ERROR',
      params: ['Device I/O errors'],
    },
    cause: /VDI_IO_ERROR/,
  },
];

describe('qcow2 faults', () => {
  let world: BackupWorld;
  const hashes: RestorePointHashes = new Map();
  beforeAll(async () => {
    world = await startBackupWorld({
      vdi: { virtualSize: 40 * MiB, populate: 'generated', imageFormat: 'qcow2' },
    });
    const first = await backupAndRecord(world, hashes);
    expect(first).toMatchObject({ kind: 'full', format: 'qcow2' });
  });
  afterAll(async () => {
    await world?.close();
  });

  it.each(exportFaults)('backup: $name', async ({ fault, cause }) => {
    const keysBefore = await listKeys(world.s3, world.bucket);
    const manifestsBefore = await world.manifests();
    const injected = world.sim.injectFault({ ...fault, times: 1 } as Fault);
    const run = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(injected.fired, 'the fault fired').toBe(1);
    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(cause);
    const exported = world.sim
      .transfers()
      .filter((t) => t.direction === 'export')
      .at(-1)!;
    expect(exported).toMatchObject({ format: 'qcow2' });
    expect(await listKeys(world.s3, world.bucket)).toEqual(keysBefore);
    expect(await world.manifests()).toEqual(manifestsBefore);
    await expectInvariants(world, hashes);
  });

  it('the next backup after those is a qcow2 delta on the surviving base', async () => {
    world.sim.writeDisk(world.vdiUuid, 5 * MiB, Buffer.alloc(3 * CLUSTER, 9));
    const next = await backupAndRecord(world, hashes);
    expect(next).toMatchObject({ kind: 'delta', format: 'qcow2', presentBlocks: 3 });
    await expectInvariants(world, hashes);
  });

  describe.each(['replay', 'merge'] as const)('restore with %s', (strategy) => {
    const importFaults: { name: string; fault: Fault; cause: RegExp }[] = [
      {
        name: 'the connection drops in the data',
        fault: { kind: 'drop-connection', on: 'import', afterBytes: 2 * MiB },
        cause: /VDI_IO_ERROR|socket|closed|ECONNRESET|terminated|sent \d+ of \d+/i,
      },
      {
        name: 'the host fails the task after the body',
        fault: {
          kind: 'fail-task-after-body',
          on: 'import',
          code: 'VDI_IO_ERROR',
          params: ['Device I/O errors'],
        },
        cause: /import failed: VDI_IO_ERROR \[Device I\/O errors\]/,
      },
    ];
    it.each(importFaults)('$name: the new VDI is destroyed, nothing is left', async ({ fault, cause }) => {
      const before = await world.vdiUuids();
      // Every attempt fails: a one-off failure is retried (below).
      const injected = world.sim.injectFault(fault);
      const run = await world.restore({
        vdiUuid: world.vdiUuid,
        srUuid: world.sim.srs.shared.uuid,
        strategy,
      });
      world.sim.clearFaults();
      expect(injected.fired, 'the fault fired').toBeGreaterThan(0);
      expect(run.status).toBe('FAILED');
      expect(run.cause).toMatch(cause);
      const imported = world.sim
        .transfers()
        .filter((t) => t.direction === 'import')
        .at(-1)!;
      expect(imported).toMatchObject({ format: 'qcow2', outcome: 'failure' });
      expect(await world.vdiUuids()).toEqual(before);
      expect(world.sim.openTasks()).toEqual([]);
      expect(world.sim.openSessions()).toEqual([]);
    });

    it('a dropped import is retried once and the restore is bit-exact', async () => {
      const latest = (await world.manifests()).at(-1)!;
      const injected = world.sim.injectFault({
        kind: 'drop-connection',
        on: 'import',
        afterBytes: 2 * MiB,
        times: 1,
      });
      const run = await world.restore({
        vdiUuid: world.vdiUuid,
        srUuid: world.sim.srs.shared.uuid,
        strategy,
      });
      expect(injected.fired, 'the fault fired').toBe(1);
      expect(run.status, run.cause).toBe('SUCCEEDED');
      const imports = world.sim.transfers().filter((t) => t.direction === 'import');
      expect(imports.some((t) => t.outcome === 'failure' && t.format === 'qcow2')).toBe(true);
      expect(world.sim.diskSha256(run.result!.vdiUuid)).toBe(hashes.get(latest.backupId));
      expect(world.sim.openTasks()).toEqual([]);
      expect(world.sim.openSessions()).toEqual([]);
    });
  });
});
