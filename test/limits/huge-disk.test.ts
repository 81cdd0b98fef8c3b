/**
 * A small delta of the largest disk a VHD export can serve (2040 GiB, "2 TiB" as XenServer sizes it): it
 * runs on Lambda with parts sized for what it sends and for the export Lambda's memory, not for the whole
 * disk (a 2 TiB disk's parts are 233 MiB: 4 in flight would not fit a 1 GiB Lambda). A disk of exactly
 * 2 TiB cannot be exported as VHD at all; that fails on its own terms.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupPlan, BackupSummary } from '../../lambdas/backup/state.ts';
import { exportMemoryBytes, partSizeFor, vhdExportUpperBound } from '../../lambdas/export/part-size.ts';
import { DEFAULT_PARTS_IN_FLIGHT } from '../../lambdas/runtime/defaults.ts';
import { vhdByteLength } from '../../lambdas/vhd/index.ts';
import { STEP_ENV } from '../../infra/constructs/step-function.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { MAX_VHD_EXPORT_SIZE } from '../../world/xapi-simulator/index.ts';
import { describeSizes, installPayloadProbe, type PayloadProbe } from './payload-probe.ts';

const MiB = 1024 * 1024;
const TiB = 1024 ** 4;

describe('a delta of a 2 TiB disk', () => {
  let world: BackupWorld;
  let probe: PayloadProbe;

  beforeAll(async () => {
    probe = installPayloadProbe();
    world = await startBackupWorld({
      vdi: { virtualSize: MAX_VHD_EXPORT_SIZE, populate: 'none', nameLabel: 'archive-01 data' },
    });
  });
  afterAll(async () => {
    probe?.remove();
    await world?.close();
  });

  it('runs on Lambda with parts sized for the delta and the Lambda, and stores a small object', async () => {
    const uuid = world.vdiUuid;
    // A filesystem's worth of metadata at the start and the end, then the full.
    world.sim.writeDisk(uuid, 0, Buffer.alloc(MiB, 1));
    world.sim.writeDisk(uuid, MAX_VHD_EXPORT_SIZE - MiB, Buffer.alloc(MiB, 2));
    const full = await world.backup();
    expect(full.status, `${full.error}: ${full.cause}`).toBe('SUCCEEDED');
    expect(full.summary!.outcomes[0]!.kind).toBe('full');

    // A few MiB written across the disk: 3 blocks change (one of them twice).
    world.sim.writeDisk(uuid, 1 * TiB, Buffer.alloc(3 * MiB, 3)); // blocks 524288 and 524289
    world.sim.writeDisk(uuid, 1 * TiB + 512 * 1024, Buffer.alloc(4096, 4));
    world.sim.writeDisk(uuid, 2000 * 1024 ** 3, Buffer.alloc(MiB, 5));
    probe.reset();
    const delta = await world.backup();
    expect(delta.status, `${delta.error}: ${delta.cause}`).toBe('SUCCEEDED');
    const sizes = probe.sizes();
    console.log(describeSizes('2040 GiB delta', sizes));

    // On Lambda: the Export state ran, no Fargate state and no retry on Fargate after a timeout.
    expect(sizes.statesEntered).toContain('Export');
    for (const state of ['ExportOnFargate', 'PrepareFargateRetry', 'CollectExport', 'FailureCleanup']) {
      expect(sizes.statesEntered).not.toContain(state);
    }

    const outcome = (delta.output as BackupSummary).outcomes[0]!;
    expect(outcome.kind).toBe('delta');
    expect(outcome.presentBlocks).toBe(3);
    // Header, a 4 MiB BAT (1,044,480 entries) and 3 blocks: about 10 MiB of a 2040 GiB disk.
    expect(outcome.bytes).toBe(vhdByteLength(MAX_VHD_EXPORT_SIZE, 3));
    expect(outcome.bytes).toBeLessThan(12 * MiB);
    const [manifest] = (await world.manifests()).slice(-1);
    expect(manifest!.bytes).toBe(outcome.bytes);

    // The plan, as Plan returned it into the execution.
    const plan = sizes.taskOutputs.get('Plan')!.at(-1) as BackupPlan;
    const wholeDiskPart = partSizeFor(vhdExportUpperBound(MAX_VHD_EXPORT_SIZE));
    const lambdaMemoryBytes = (await exportFunctionMemoryMiB(world)) * MiB;
    console.log(
      `plan: route ${plan.route}, part size ${plan.partSize / MiB} MiB (whole disk: ${wholeDiskPart / MiB} MiB), ` +
        `estimated peak ${exportMemoryBytes(plan.partSize, DEFAULT_PARTS_IN_FLIGHT) / MiB} MiB of the export ` +
        `Lambda's ${lambdaMemoryBytes / MiB} MiB; ${plan.routeReason}`,
    );
    expect(plan.kind).toBe('delta');
    expect(plan.route).toBe('lambda');
    expect(wholeDiskPart).toBeGreaterThanOrEqual(232 * MiB);
    expect(plan.partSize).toBeLessThan(wholeDiskPart);
    expect(plan.partSize % MiB).toBe(0);
    expect(exportMemoryBytes(plan.partSize, DEFAULT_PARTS_IN_FLIGHT)).toBeLessThanOrEqual(lambdaMemoryBytes);
    // The upload can still hold far more than this delta sent.
    expect(plan.partSize * 10_000).toBeGreaterThan(100 * outcome.bytes!);

    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
  });

  it('a disk of exactly 2 TiB, past what VHD can hold, is backed up as qcow2 and leaves only its base', async () => {
    const vdi = world.sim.addVdi({ virtualSize: 2 * TiB, populate: 'none', nameLabel: 'too big for vhd' });
    world.sim.writeDisk(vdi.uuid, 0, Buffer.alloc(MiB, 7));
    const before = world.sim.transfers().length;
    const run = await world.backup({ vdiUuids: [vdi.uuid] });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const [manifest] = await world.manifests(vdi.uuid);
    expect(manifest).toMatchObject({ kind: 'full', format: 'qcow2', virtualSize: 2 * TiB });
    expect(manifest!.objectKey).toMatch(/\.qcow2$/);
    // The host was asked for qcow2, never for a vhd it would refuse (VDI_TOO_LARGE).
    const exports = world.sim
      .transfers()
      .slice(before)
      .filter((transfer) => transfer.direction === 'export');
    expect(exports.map((transfer) => [transfer.format, transfer.outcome])).toEqual([['qcow2', 'success']]);
    expect(world.sim.snapshotsOf(vdi.uuid).map((snapshot) => snapshot.uuid)).toEqual([
      manifest!.snapshotUuid,
    ]);
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
  });
});

/** The export function's memory, from the template the deployment runs. */
async function exportFunctionMemoryMiB(world: BackupWorld): Promise<number> {
  const { stack } = await world.deployment();
  for (const [, resource] of stack.resourcesOfType('AWS::Lambda::Function')) {
    const env = (resource.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)
      ?.Variables;
    if (env?.[STEP_ENV] === 'backup.export') return Number(resource.Properties?.MemorySize);
  }
  throw new Error('no backup.export function in the template');
}
