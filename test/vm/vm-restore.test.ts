/**
 * Whole VMs back through the synthesized restore workflow (input naming `vmUuid`): web-1 (three disks, one
 * excluded; a CD drive; two VIFs, one on a VLAN; UEFI NVRAM; a vTPM) is backed up twice and restored. All
 * is counted at the simulator (VMs, VBDs, VIFs, VDIs and their content, tasks, sessions) and in S3; every
 * stream the host received for a restored disk is read by an outside reader (startBackupWorld). Each
 * failure, at each step, leaves the pool and the bucket as they were.
 */
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmManifestKey, type VmManifest } from '../../lambdas/catalog/vm-manifest.ts';
import type { VmRestoreResult } from '../../lambdas/vm/restore-vm.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';
import { addWebVm, WEB_VM_ROOT_DISK } from './web-vm.ts';

const MiB = 1024 * 1024;

describe('VM restores', () => {
  let world: BackupWorld;
  let web: ReturnType<typeof addWebVm>;
  /** Per VM point: its id and each disk's content hash at its snapshot (slot → sha256). */
  const points: { vmBackupId: string; disks: Map<string, string> }[] = [];
  const catalog = () => ({ bucket: world.bucket, prefix: 'backups' });

  const backUp = async () => {
    const run = await world.backup({ vmUuids: [web.vmUuid] });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const outcome = (run.summary as BackupSummary).vmOutcomes![0]!;
    expect(outcome.status).toBe('succeeded');
    const disks = new Map<string, string>();
    for (const [slot, vdiUuid] of [
      ['0', web.disks.root],
      ['1', web.disks.data],
    ] as const) {
      disks.set(slot, world.sim.diskSha256((await world.manifests(vdiUuid)).at(-1)!.snapshotUuid));
    }
    points.push({ vmBackupId: outcome.vmBackupId!, disks });
  };

  beforeAll(async () => {
    world = await startBackupWorld({ vdi: WEB_VM_ROOT_DISK });
    web = addWebVm(world);
    await backUp();
    world.sim.writeDisk(web.disks.root, MiB, randomBytes(64 * 1024));
    world.sim.writeDisk(web.disks.data, 5 * MiB, randomBytes(64 * 1024));
    await backUp();
    expect(points[0]!.disks.get('1')).not.toBe(points[1]!.disks.get('1'));
  });
  afterAll(async () => {
    await world?.close();
  });

  /** The pool's VMs (uuid) and VDIs, and the bucket's keys, to compare after a failure. */
  const footprint = async () => ({
    vms: world.sim
      .allVms()
      .map((vm) => vm.uuid)
      .sort(),
    vdis: await world.vdiUuids(),
    keys: await listKeys(world.s3, world.bucket),
  });
  const expectNothingOpen = async () => {
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
    expect(await listKeys(world.s3, world.bucket, 'backups/.transfers/'), 'chain documents').toEqual([]);
  };

  /** The restored VM equals web-1 at `point`: record, NVRAM, vTPM, disks by slot (content), drives, VIFs. */
  const expectRestoredVm = (result: VmRestoreResult, point: (typeof points)[number]) => {
    const vm = world.sim.vmRecord(result.vmUuid)!;
    const source = world.sim.vmRecord(web.vmUuid)!;
    expect(vm).toMatchObject({
      power_state: 'Halted',
      is_a_template: false,
      blocked_operations: {},
      name_description: 'the web server',
      memory_static_max: source.memory_static_max,
      memory_dynamic_max: source.memory_dynamic_max,
      VCPUs_max: 4,
      VCPUs_at_startup: 4,
      HVM_boot_policy: source.HVM_boot_policy,
      HVM_boot_params: { order: 'c', firmware: 'uefi' },
      platform: source.platform,
      NVRAM: web.nvram,
    });
    expect((vm.other_config as Record<string, string>)['vdi-vault-restore']).toBe('complete');
    expect(world.sim.vtpmContents(result.vmUuid)).toBe(web.vtpm);
    const vbds = world.sim.vbdsOf(result.vmUuid);
    const bySlot = new Map(vbds.map((vbd) => [vbd.userdevice as string, vbd]));
    expect([...bySlot.keys()].sort(), 'slots: the excluded disk 2 is not brought back').toEqual([
      '0',
      '1',
      '3',
    ]);
    expect(bySlot.get('3')).toMatchObject({ type: 'CD', empty: true });
    expect(result.excludedSlots).toEqual(['2']);
    expect(result.disks.map((disk) => [disk.userdevice, disk.sourceVdiUuid])).toEqual([
      ['0', web.disks.root],
      ['1', web.disks.data],
    ]);
    for (const disk of result.disks) {
      const vbd = bySlot.get(disk.userdevice)!;
      const vdi = world.sim.vdiRecord(disk.vdiUuid)!;
      expect(vbd).toMatchObject({
        type: 'Disk',
        VDI: vdi.ref,
        bootable: disk.userdevice === '0',
        mode: 'RW',
      });
      expect(world.sim.diskSha256(disk.vdiUuid), `disk ${disk.userdevice}`).toBe(
        point.disks.get(disk.userdevice),
      );
      expect((vdi.other_config as Record<string, string>)['vdi-vault-restore']).toBe('complete');
    }
    // Every restored disk's stream was read by an outside reader, as the host received it.
    const read = world.outsideChecks.done.filter((check) => check.what === 'restore stream');
    for (const disk of result.disks) expect(read.map((check) => check.backupId)).toContain(disk.backupId);
  };

  it('restores the latest VM point: same record, NVRAM, vTPM, disks in their slots, VIFs with their MACs and networks; never started', async () => {
    const run = await world.restoreVm({ vmUuid: web.vmUuid, srUuid: world.sim.srs.shared.uuid });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const result = run.result!;
    expect(result.restorePoint).toBe(points[1]!.vmBackupId);
    expect(result.nameLabel).toBe('web-1');
    expect(world.sim.vmRecord(result.vmUuid)!.name_label).toBe('web-1');
    expectRestoredVm(result, points[1]!);
    const vifs = world.sim.vifsOf(result.vmUuid).map((vif) => [vif.device, vif.MAC, vif.MTU]);
    expect(vifs.sort()).toEqual([
      ['0', 'aa:bb:cc:00:00:01', 1500],
      ['1', 'aa:bb:cc:00:00:02', 9000],
    ]);
    expect(result.vifs).toEqual([
      { device: '0', mac: 'aa:bb:cc:00:00:01', networkUuid: web.networks.lan },
      { device: '1', mac: 'aa:bb:cc:00:00:02', networkUuid: web.networks.storage },
    ]);
    await expectNothingOpen();
  });

  it('restores the first point under a new name, with new MACs and a network mapped by networkMap', async () => {
    const dmz = world.sim.addNetwork({ nameLabel: 'dmz', vlan: 7 }).uuid;
    const run = await world.restoreVm({
      vmUuid: web.vmUuid,
      restorePoint: points[0]!.vmBackupId,
      srMap: { '0': world.sim.srs.shared.uuid, [web.disks.data]: world.sim.srs.shared.uuid },
      networkMap: { [web.networks.storage]: dmz },
      nameLabel: 'web-1 (yesterday)',
      newMacs: true,
    });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const result = run.result!;
    expect(result.restorePoint).toBe(points[0]!.vmBackupId);
    expect(world.sim.vmRecord(result.vmUuid)!.name_label).toBe('web-1 (yesterday)');
    expectRestoredVm(result, points[0]!);
    expect(result.vifs.map((vif) => [vif.device, vif.networkUuid])).toEqual([
      ['0', web.networks.lan],
      ['1', dmz],
    ]);
    for (const vif of result.vifs) expect(vif.mac).not.toMatch(/^aa:bb:cc:00:00:0/);
    await expectNothingOpen();
  });

  it('a point from a pool whose network this pool lacks is refused before anything is made, listing the networks', async () => {
    const key = vmManifestKey(catalog(), 'lab', web.vmUuid, points[1]!.vmBackupId);
    const object = await world.s3.send(new GetObjectCommand({ Bucket: world.bucket, Key: key }));
    const original = await object.Body!.transformToString();
    const elsewhere = JSON.parse(original) as VmManifest;
    const foreign = { uuid: '0badc0de-0000-4000-8000-000000000007', nameLabel: 'backbone', vlan: 7 };
    const moved = { ...elsewhere, vifs: elsewhere.vifs.map((vif) => ({ ...vif, network: foreign })) };
    await world.s3.send(
      new PutObjectCommand({ Bucket: world.bucket, Key: key, Body: JSON.stringify(moved) }),
    );
    try {
      const before = await footprint();
      const run = await world.restoreVm({ vmUuid: web.vmUuid, srUuid: world.sim.srs.shared.uuid });
      expect(run.status).toBe('FAILED');
      expect(run.error).toBe('InputValidationError');
      expect(run.cause).toMatch(
        /^networkMap: VIF 0's network "backbone" \(0badc0de-0000-4000-8000-000000000007, VLAN 7\) is not in pool lab\. Map it .*"networkMap": \{"0badc0de-0000-4000-8000-000000000007": "<network uuid>"\}.*storage \([0-9a-f-]+, VLAN 42\)/,
      );
      expect(await footprint()).toEqual(before);
      await expectNothingOpen();
    } finally {
      await world.s3.send(new PutObjectCommand({ Bucket: world.bucket, Key: key, Body: original }));
    }
  });

  it.each([
    [
      'vmUuid',
      { vmUuid: 'web-1', srUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566' },
      /^vmUuid: "web-1" is not a uuid/,
    ],
    [
      'srUuid',
      { vmUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566' },
      /^srUuid: is missing\. Give the SR for every disk/,
    ],
    [
      'restorePoint',
      {
        vmUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
        srUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
        restorePoint: '20261126T164000.000Z-full',
      },
      /^restorePoint: .* is neither "latest", a VM restore point id/,
    ],
    [
      'networkMap',
      {
        vmUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
        srUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
        networkMap: ['x'],
      },
      /^networkMap: must be an object/,
    ],
    [
      'vdiUuid',
      {
        vmUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
        vdiUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
        srUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
      },
      /^vdiUuid: .*VM restore input \(a disk restore names vdiUuid/,
    ],
  ])('bad input naming %s is refused at Validate, before any login', async (_field, input, cause) => {
    const logins = world.sim.sessionCounts().logins;
    const run = await world.restoreVm(input);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('InputValidationError');
    expect(run.cause).toMatch(cause);
    expect(world.sim.sessionCounts().logins).toBe(logins);
  });

  it('an unknown VM and an unknown SR are refused by ResolveVm, naming the field, before anything is made', async () => {
    const before = await footprint();
    const unknownVm = await world.restoreVm({
      vmUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
      srUuid: world.sim.srs.shared.uuid,
    });
    expect(unknownVm.cause).toMatch(
      /^vmUuid: VM 3f1c2d4e-8a9b-4c5d-9e0f-112233445566 has no backups in the catalog/,
    );
    const unknownSr = await world.restoreVm({
      vmUuid: web.vmUuid,
      srUuid: '3f1c2d4e-8a9b-4c5d-9e0f-112233445566',
    });
    expect(unknownSr.cause).toMatch(/^srUuid: no SR 3f1c2d4e-8a9b-4c5d-9e0f-112233445566 in pool lab/);
    expect(await footprint()).toEqual(before);
    await expectNothingOpen();
  });

  // Each failure after ResolveVm: the VM and every VDI made for it are destroyed, the session logged out,
  // the chain documents removed; then the same point still restores.
  it.each([
    {
      step: 'ResolveVm: a disk object missing from S3',
      arm: async () => {
        const manifest = (await world.manifests(web.disks.data)).at(-1)!;
        const body = await world.s3.send(
          new GetObjectCommand({ Bucket: world.bucket, Key: manifest.objectKey }),
        );
        const bytes = Buffer.from(await body.Body!.transformToByteArray());
        await world.s3.send(new DeleteObjectCommand({ Bucket: world.bucket, Key: manifest.objectKey }));
        return async () => {
          await world.s3.send(
            new PutObjectCommand({ Bucket: world.bucket, Key: manifest.objectKey, Body: bytes }),
          );
        };
      },
      cause: /^disk 1: broken chain: the object .* is missing from S3/,
    },
    {
      step: 'CreateVm: VIF.create fails',
      arm: async () => {
        world.sim.injectFault({ kind: 'rpc-error', method: 'VIF.create', code: 'INTERNAL_ERROR', times: 1 });
        return async () => world.sim.clearFaults();
      },
      cause: /INTERNAL_ERROR/,
    },
    {
      step: "the second disk's import: a thick SR refuses it",
      arm: async () => {
        const thick = world.sim.addSr({ nameLabel: 'LVM', type: 'lvm', shared: true, prezeroed: false });
        return { srMap: { '0': world.sim.srs.shared.uuid, '1': thick.uuid } };
      },
      cause: /cannot take VHD imports \(thick-provisioned\)/,
    },
    {
      step: "AttachVmDisk: the second disk's VBD.create fails",
      arm: async () => {
        // Let through the CD drive's (CreateVm) and the first disk's.
        world.sim.injectFault({
          kind: 'rpc-error',
          method: 'VBD.create',
          code: 'DEVICE_ALREADY_EXISTS',
          skip: 2,
          times: 1,
        });
        return async () => world.sim.clearFaults();
      },
      cause: /DEVICE_ALREADY_EXISTS/,
    },
    {
      step: 'FinishVm: VM.set_blocked_operations fails',
      arm: async () => {
        world.sim.injectFault({
          kind: 'rpc-error',
          method: 'VM.set_blocked_operations',
          code: 'INTERNAL_ERROR',
          times: 1,
        });
        return async () => world.sim.clearFaults();
      },
      cause: /INTERNAL_ERROR/,
    },
  ])('$step: nothing is left on the host or in S3, and the point still restores', async ({ arm, cause }) => {
    const before = await footprint();
    const armed = await arm();
    const input = {
      vmUuid: web.vmUuid,
      srUuid: world.sim.srs.shared.uuid,
      ...(typeof armed === 'object' ? armed : {}),
    };
    const run = await world.restoreVm(input);
    if (typeof armed === 'function') await armed();
    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(cause);
    expect(await footprint()).toEqual(before);
    await expectNothingOpen();
    const again = await world.restoreVm({ vmUuid: web.vmUuid, srUuid: world.sim.srs.shared.uuid });
    expect(again.status, again.cause).toBe('SUCCEEDED');
    expectRestoredVm(again.result!, points[1]!);
    await expectNothingOpen();
  });

  it('keepPartial: a failed restore leaves the VM blocked and named as restoring, with the disks it made', async () => {
    const thick = world.sim.addSr({ nameLabel: 'LVM 2', type: 'lvm', shared: true, prezeroed: false });
    const before = new Set(world.sim.allVms().map((vm) => vm.uuid));
    const run = await world.restoreVm({
      vmUuid: web.vmUuid,
      srMap: { '0': world.sim.srs.shared.uuid, '1': thick.uuid },
      keepPartial: true,
    });
    expect(run.status).toBe('FAILED');
    const kept = world.sim.allVms().filter((vm) => !before.has(vm.uuid));
    expect(kept).toHaveLength(1);
    expect(kept[0]!.name_label).toBe(`web-1 (restoring from vdi-vault ${points[1]!.vmBackupId})`);
    expect(kept[0]!.blocked_operations).toMatchObject({ start: 'vdi-vault: restore in progress' });
    expect((kept[0]!.other_config as Record<string, string>)['vdi-vault-restore']).toBe('in-progress');
    expect(
      world.sim
        .vbdsOf(kept[0]!.uuid)
        .map((vbd) => vbd.userdevice)
        .sort(),
    ).toEqual(['0', '3']);
    await expectNothingOpen();
  });
});

describe('a VM restore whose disks are too large for a Lambda (routing threshold of 1 byte)', () => {
  let world: BackupWorld;
  afterAll(async () => {
    await world?.close();
  });

  it('imports each disk in a Fargate task, attaches it in its slot, and leaves nothing', async () => {
    world = await startBackupWorld({
      vdi: WEB_VM_ROOT_DISK,
      target: { routing: { fargateThresholdBytes: 1 } },
    });
    const web = addWebVm(world);
    const backup = await world.backup({ vmUuids: [web.vmUuid] });
    expect(backup.status, backup.cause).toBe('SUCCEEDED');
    const expected = new Map<string, string>();
    for (const [slot, vdiUuid] of [
      ['0', web.disks.root],
      ['1', web.disks.data],
    ] as const) {
      expected.set(slot, world.sim.diskSha256((await world.manifests(vdiUuid)).at(-1)!.snapshotUuid));
    }
    const run = await world.restoreVm({ vmUuid: web.vmUuid, srUuid: world.sim.srs.shared.uuid });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    // Counted in the execution's history: one Fargate import per disk, none on Lambda.
    expect(run.statesEntered.filter((state) => state === 'VmDiskImportOnFargate')).toHaveLength(2);
    expect(run.statesEntered).not.toContain('VmDiskImport');
    const slots = new Map(world.sim.vbdsOf(run.result!.vmUuid).map((vbd) => [vbd.userdevice as string, vbd]));
    for (const disk of run.result!.disks) {
      expect(slots.get(disk.userdevice)!.VDI).toBe(world.sim.vdiRecord(disk.vdiUuid)!.ref);
      expect(world.sim.diskSha256(disk.vdiUuid)).toBe(expected.get(disk.userdevice));
    }
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await listKeys(world.s3, world.bucket, 'backups/.transfers/')).toEqual([]);
  });
});
