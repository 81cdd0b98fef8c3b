/**
 * Whole VMs through the synthesized backup workflow: chosen by uuid or by tag, snapshotted whole by
 * VM.snapshot, each disk through its own series, then the VM restore point written last. Counted at the
 * simulator (snapshots, VMs, tasks, sessions) and in S3; each stored disk point is read by the outside
 * readers (startBackupWorld).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseVmManifest, vmSeriesPrefix, type VmManifest } from '../../lambdas/catalog/vm-manifest.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';
import { addWebVm, WEB_VM_ROOT_DISK } from './web-vm.ts';

const MiB = 1024 * 1024;
const TAG = 'backup-nightly';

describe('VM backups', () => {
  let world: BackupWorld;
  let vmUuid: string;
  let disks: { root: string; data: string; scratch: string };
  let networks: { lan: string; storage: string };
  let nvram: Record<string, string>;
  let vtpm: string;

  beforeAll(async () => {
    world = await startBackupWorld({ vdi: WEB_VM_ROOT_DISK });
    ({ vmUuid, disks, networks, nvram, vtpm } = addWebVm(world));
  });
  afterAll(async () => {
    await world?.close();
  });

  const vmManifests = async (): Promise<VmManifest[]> => {
    const prefix = vmSeriesPrefix({ bucket: world.bucket, prefix: 'backups' }, 'lab', vmUuid);
    const keys = (await listKeys(world.s3, world.bucket, prefix)).filter((key) => key.endsWith('.json'));
    return Promise.all(
      keys.map(async (key) => {
        const object = await world.s3.send(new GetObjectCommand({ Bucket: world.bucket, Key: key }));
        return parseVmManifest(await object.Body!.transformToString(), key);
      }),
    );
  };
  /** What must hold after every VM run: nothing of the run left on the host or in S3 but points and bases. */
  const expectNothingLeft = async () => {
    expect(world.sim.vmSnapshotsOf(vmUuid), 'snapshot VMs').toEqual([]);
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
    expect(await listKeys(world.s3, world.bucket, 'backups/.vm-pending/')).toEqual([]);
    expect(world.sim.snapshotsOf(disks.scratch), 'the excluded disk is never snapshotted').toEqual([]);
    for (const vdi of [disks.root, disks.data]) {
      const manifests = await world.manifests(vdi);
      const bases = world.sim.snapshotsOf(vdi).map((snapshot) => snapshot.uuid);
      expect(bases, `snapshots of ${vdi}`).toEqual(manifests.length ? [manifests.at(-1)!.snapshotUuid] : []);
    }
  };

  it('backs up a VM by uuid: its two disks as fulls, then the VM point with its record, devices, NVRAM and vTPM', async () => {
    const run = await world.backup({ vmUuids: [vmUuid] });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const summary = run.summary as BackupSummary;
    expect(summary.outcomes.map((o) => [o.vdiUuid, o.vmUuid, o.status, o.kind])).toEqual([
      [disks.root, vmUuid, 'succeeded', 'full'],
      [disks.data, vmUuid, 'succeeded', 'full'],
    ]);
    const [point] = await vmManifests();
    expect(summary.vmOutcomes).toEqual([
      { vmUuid, status: 'succeeded', vmBackupId: point!.vmBackupId, disks: 2 },
    ]);
    expect(point!.vmBackupId).toMatch(/^\d{8}T\d{6}\.\d{3}Z-vm$/);
    expect(point!.record).toMatchObject({
      name_label: 'web-1',
      name_description: 'the web server',
      memory_static_max: 4 * 1024 * MiB,
      VCPUs_max: 4,
      VCPUs_at_startup: 4,
      HVM_boot_params: { order: 'c', firmware: 'uefi' },
    });
    expect(point!.nvram).toEqual(nvram);
    expect(point!.vtpm).toEqual({ isUnique: false, contents: vtpm });
    const diskPoints = await Promise.all([world.manifests(disks.root), world.manifests(disks.data)]);
    expect(point!.disks.map((d) => [d.userdevice, d.bootable, d.mode, d.vdiUuid, d.backupId])).toEqual([
      ['0', true, 'RW', disks.root, diskPoints[0]!.at(-1)!.backupId],
      ['1', false, 'RW', disks.data, diskPoints[1]!.at(-1)!.backupId],
    ]);
    expect(point!.excludedDisks).toEqual([{ userdevice: '2', vdiUuid: disks.scratch }]);
    expect(point!.removableDrives).toEqual([{ userdevice: '3', type: 'CD', bootable: false }]);
    expect(point!.vifs.map((v) => [v.device, v.mac, v.mtu, v.network.uuid, v.network.vlan])).toEqual([
      ['0', 'aa:bb:cc:00:00:01', 1500, networks.lan, -1],
      ['1', 'aa:bb:cc:00:00:02', 9000, networks.storage, 42],
    ]);
    expect(point!.vifs[1]!.network.nameLabel).toBe('storage');
    // Each disk point was read by an outside reader.
    const checked = world.outsideChecks.done.map((check) => check.backupId);
    expect(checked).toEqual(expect.arrayContaining(point!.disks.map((disk) => disk.backupId)));
    await expectNothingLeft();
  });

  it('by tag, a VM tagged after the job was deployed: deltas of each disk against its own base', async () => {
    const nothing = await world.backup({ tags: [TAG] });
    expect(nothing.status).toBe('FAILED');
    expect(nothing.error).toBe('NothingToBackUp');
    expect(nothing.cause).toMatch(/^no VM of pool lab carries "backup-nightly"; .*Tag the VMs to protect/);

    world.sim.addVmTags(vmUuid, [TAG]);
    world.sim.writeDisk(disks.root, MiB, randomBytes(64 * 1024));
    world.sim.writeDisk(disks.data, 5 * MiB, randomBytes(64 * 1024));
    const run = await world.backup({ tags: [TAG] });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const summary = run.summary as BackupSummary;
    expect(summary.outcomes.map((o) => [o.vdiUuid, o.kind])).toEqual([
      [disks.root, 'delta'],
      [disks.data, 'delta'],
    ]);
    const points = await vmManifests();
    expect(points).toHaveLength(2);
    const latest = points.at(-1)!;
    for (const disk of latest.disks) {
      expect(disk.backupId).toBe((await world.manifests(disk.vdiUuid)).at(-1)!.backupId);
      expect(disk.backupId).toMatch(/-delta$/);
    }
    expect(latest.record.tags).toEqual([TAG]);
    await expectNothingLeft();
  });

  it('a disk that fails: no VM point, the other disk is a point of its own, nothing left behind', async () => {
    const before = await vmManifests();
    const dataBefore = await world.manifests(disks.data);
    const fault = world.sim.injectFault({
      kind: 'drop-connection',
      on: 'export',
      vdiUuid: disks.data,
      afterBytes: MiB,
    });
    // (fired is checked below: the scope names the VM's disk, the export is of its snapshot)
    world.sim.writeDisk(disks.data, 0, randomBytes(64 * 1024));
    const run = await world.backup({ vmUuids: [vmUuid], mode: 'full' });
    world.sim.clearFaults();
    expect(fault.fired).toBe(1);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('BackupFailed');
    expect(run.cause).toContain(
      `VM ${vmUuid} (web-1): no VM restore point, 1 of 2 disks failed: disk 1 (VDI ${disks.data})`,
    );
    // The disk that committed is a restore point of its own; the other has nothing new.
    expect((await world.manifests(disks.root)).at(-1)).toMatchObject({
      kind: 'full',
      fullReason: 'mode full',
    });
    expect(await world.manifests(disks.data)).toEqual(dataBefore);
    expect(await vmManifests()).toEqual(before);
    await expectNothingLeft();
  });

  it('a VM snapshot the host refuses fails the run and creates nothing', async () => {
    const vdisBefore = await world.vdiUuids();
    const keysBefore = await listKeys(world.s3, world.bucket);
    world.sim.injectFault({
      kind: 'rpc-error',
      method: 'VM.snapshot',
      code: 'SR_FULL',
      params: ['1', '2'],
      times: 1,
    });
    const run = await world.backup({ vmUuids: [vmUuid] });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('XapiError');
    expect(run.cause).toMatch(/VM\.snapshot failed: SR_FULL/);
    expect(await world.vdiUuids()).toEqual(vdisBefore);
    expect(await listKeys(world.s3, world.bucket)).toEqual(keysBefore);
    await expectNothingLeft();
  });

  it('an unknown VM, a template or the control domain is refused by name, touching nothing', async () => {
    const unknown = await world.backup({ vmUuids: ['00000000-0000-4000-8000-000000000000'] });
    expect(unknown.status).toBe('FAILED');
    expect(unknown.cause).toMatch(
      /UUID_INVALID.*VM.*00000000-0000-4000-8000-000000000000.*no such VM in pool lab/,
    );
    const dom0 = world.sim.allVms().find((vm) => vm.is_control_domain)!;
    const refused = await world.backup({ vmUuids: [dom0.uuid as string] });
    expect(refused.status).toBe('FAILED');
    expect(refused.cause).toMatch(/VM_NOT_BACKABLE.*is the control domain/);
    const template = world.sim.allVms().find((vm) => vm.is_a_template && !vm.is_a_snapshot)!;
    const templateRun = await world.backup({ vmUuids: [template.uuid as string] });
    expect(templateRun.cause).toMatch(/VM_NOT_BACKABLE.*is a template/);
    const twice = await world.backup({ vmUuids: [vmUuid], vdiUuids: [disks.root] });
    expect(twice.status).toBe('FAILED');
    expect(twice.cause).toMatch(/vdiUuids: .* is a disk of a VM this run backs up too/);
    await expectNothingLeft();
  });

  it('CommitVms cannot remove the snapshot VM: the VM point stands, and the next backup removes the snapshot VM', async () => {
    world.sim.injectFault({ kind: 'rpc-error', method: 'VM.destroy', code: 'INTERNAL_ERROR', times: 1 });
    const run = await world.backup({ vmUuids: [vmUuid] });
    world.sim.clearFaults();
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const summary = run.summary as BackupSummary;
    expect(summary.vmOutcomes![0]).toMatchObject({ vmUuid, status: 'succeeded' });
    // Counted at the simulator: the snapshot VM is still there, tagged as ours.
    const left = world.sim.vmSnapshotsOf(vmUuid);
    expect(left).toHaveLength(1);
    expect((left[0]!.other_config as Record<string, string>)['vdi-vault-vm-snapshot']).toBeTruthy();
    const next = await world.backup({ vmUuids: [vmUuid] });
    expect(next.status, next.cause).toBe('SUCCEEDED');
    expect(world.sim.vmRecord(left[0]!.uuid), 'the snapshot VM the failed destroy left').toBeUndefined();
    await expectNothingLeft();
  });

  it("retention that takes a VM point's disk points takes the VM point too: only restorable VM points stay", async () => {
    const before = await vmManifests();
    expect(before.length).toBeGreaterThan(0);
    const run = await world.backup({ vmUuids: [vmUuid], mode: 'full', retention: { keep: 1, fullEvery: 1 } });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const summary = run.summary as BackupSummary;
    // Counted in S3: each disk keeps its new full only, so every earlier VM point lost its disks.
    for (const vdi of [disks.root, disks.data]) {
      const kept = await world.manifests(vdi);
      expect(kept.map((m) => m.kind)).toEqual(['full']);
    }
    const after = await vmManifests();
    expect(after.map((point) => point.vmBackupId)).toEqual([summary.vmOutcomes![0]!.vmBackupId]);
    expect(summary.vmOutcomes![0]!.vmPointsRemoved).toBe(before.length);
    await expectNothingLeft();
  });
});
