import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, callError, login } from './sim-client.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;
let session: string;

type Rec = Record<string, unknown>;

beforeAll(async () => {
  sim = await startXapiSimulator();
  session = await login(sim);
});
afterAll(() => sim.close());

function vmWithThreeDisks(powerState: 'Running' | 'Halted' = 'Running') {
  const disks = [0, 1, 2].map((index) =>
    sim.addVdi({ virtualSize: 8 * MiB, nameLabel: `disk ${index}`, populate: 'scattered', seed: 40 + index }),
  );
  const network = sim.addNetwork({ nameLabel: 'lan', vlan: 10 });
  const vm = sim.addVm({
    nameLabel: 'app',
    powerState,
    tags: ['backup'],
    nvram: { EFI_VARS: 'bnZyYW0=' },
    disks: disks.map((disk, index) => ({ vdiUuid: disk.uuid, userdevice: String(index) })),
    cdDrives: ['3'],
    vifs: [
      { networkUuid: network.uuid, device: '0', mac: '02:11:22:33:44:55' },
      { networkUuid: sim.managementNetwork.uuid, device: '1', mac: '02:11:22:33:44:66' },
    ],
    vtpm: { contents: 'dHBtLXN0YXRl' },
  });
  return { vm, disks, network };
}

async function vbdsOfSnapshot(snapshotRef: string): Promise<Rec[]> {
  const refs = (await call(sim.url, 'VM.get_VBDs', [session, snapshotRef])) as string[];
  return Promise.all(refs.map(async (ref) => (await call(sim.url, 'VBD.get_record', [session, ref])) as Rec));
}

describe('VM.snapshot', () => {
  it('snapshots every disk but the ignored ones, copy-on-write, and copies CDs, VIFs and the vTPM', async () => {
    const { vm, disks, network } = vmWithThreeDisks();
    const [disk0, disk1, disk2] = disks;
    const before = disks.map((disk) => sim.diskSha256(disk.uuid));
    const time = Date.now();
    const snapshotRef = (await call(sim.url, 'VM.snapshot', [
      session,
      vm.ref,
      'app-snap',
      [disk1!.ref],
    ])) as string;
    // Writes after the snapshot show in the VDIs, not in their snapshots.
    sim.writeDisk(disk0!.uuid, 0, new Uint8Array(4096).fill(7));
    sim.writeDisk(disk2!.uuid, 2 * MiB, new Uint8Array(512).fill(9));

    const snapshot = (await call(sim.url, 'VM.get_record', [session, snapshotRef])) as Rec;
    expect(snapshot).toMatchObject({
      name_label: 'app-snap',
      is_a_snapshot: true,
      is_a_template: true,
      snapshot_of: vm.ref,
      power_state: 'Halted',
      tags: ['backup'],
      NVRAM: { EFI_VARS: 'bnZyYW0=' },
      snapshot_info: { 'disk-snapshot-type': 'crash_consistent', 'power-state-at-snapshot': 'Running' },
      resident_on: 'OpaqueRef:NULL',
      blocked_operations: {},
    });
    const snapshotTime = snapshot.snapshot_time as string;
    const parsed = Date.parse(
      `${snapshotTime.slice(0, 4)}-${snapshotTime.slice(4, 6)}-${snapshotTime.slice(6, 8)}${snapshotTime.slice(8)}`,
    );
    expect(parsed).toBeGreaterThanOrEqual(Math.floor(time / 1000) * 1000);
    expect(await call(sim.url, 'VM.get_snapshots', [session, vm.ref])).toEqual([snapshotRef]);
    expect(await call(sim.url, 'VM.get_parent', [session, vm.ref])).toBe(snapshotRef);
    expect(sim.vmSnapshotsOf(vm.uuid).map((entry) => entry.ref)).toEqual([snapshotRef]);

    const vbds = await vbdsOfSnapshot(snapshotRef);
    expect(vbds.map((vbd) => vbd.userdevice).sort()).toEqual(['0', '2', '3']);
    for (const [index, disk] of [
      [0, disk0!],
      [2, disk2!],
    ] as const) {
      const vbd = vbds.find((entry) => entry.userdevice === String(index))!;
      expect(vbd).toMatchObject({ type: 'Disk', currently_attached: false, other_config: { owner: '' } });
      const vdi = sim.vdiRecord((await call(sim.url, 'VDI.get_uuid', [session, vbd.VDI])) as string)!;
      expect(vdi).toMatchObject({ is_a_snapshot: true, snapshot_of: disk.ref, name_label: `disk ${index}` });
      expect(sim.diskSha256(vdi.uuid)).toBe(before[index]);
      expect(sim.diskSha256(disk.uuid)).not.toBe(before[index]);
    }
    expect(sim.snapshotsOf(disk1!.uuid)).toEqual([]);
    expect(sim.diskSha256(disk1!.uuid)).toBe(before[1]);
    expect(vbds.find((vbd) => vbd.userdevice === '3')).toMatchObject({
      type: 'CD',
      empty: true,
      VDI: 'OpaqueRef:NULL',
      mode: 'RO',
    });

    const vifRefs = (await call(sim.url, 'VM.get_VIFs', [session, snapshotRef])) as string[];
    const vifs = await Promise.all(vifRefs.map((ref) => call(sim.url, 'VIF.get_record', [session, ref])));
    expect(vifs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          device: '0',
          MAC: '02:11:22:33:44:55',
          network: network.ref,
          currently_attached: false,
        }),
        expect.objectContaining({
          device: '1',
          MAC: '02:11:22:33:44:66',
          network: sim.managementNetwork.ref,
        }),
      ]),
    );
    expect(sim.vtpmContents(snapshot.uuid as string)).toBe('dHBtLXN0YXRl');
    expect(sim.vmRecord(vm.uuid)).toMatchObject({ power_state: 'Running', VBDs: expect.any(Array) });
  });

  it('with ignore_vdis left out (two arguments) snapshots every disk', async () => {
    const { vm, disks } = vmWithThreeDisks('Halted');
    const snapshotRef = (await call(sim.url, 'VM.snapshot', [session, vm.ref, 'all'])) as string;
    const vbds = await vbdsOfSnapshot(snapshotRef);
    expect(vbds.filter((vbd) => vbd.type === 'Disk')).toHaveLength(3);
    for (const disk of disks) expect(sim.snapshotsOf(disk.uuid)).toHaveLength(1);
    expect(
      sim.vmRecord((await call(sim.url, 'VM.get_uuid', [session, snapshotRef])) as string),
    ).toMatchObject({
      snapshot_info: { 'power-state-at-snapshot': 'Halted' },
    });
  });

  it('a snapshot cannot be snapshotted or started; blocked operations are refused with their value', async () => {
    const { vm } = vmWithThreeDisks('Halted');
    const snapshotRef = (await call(sim.url, 'VM.snapshot', [session, vm.ref, 's', []])) as string;
    expect(await callError(sim.url, 'VM.snapshot', [session, snapshotRef, 's2', []])).toMatchObject({
      code: 'VM_IS_SNAPSHOT',
      params: [snapshotRef, 'snapshot'],
    });
    expect(await callError(sim.url, 'VM.start', [session, snapshotRef, false, false])).toMatchObject({
      code: 'VM_IS_SNAPSHOT',
      params: [snapshotRef, 'start'],
    });
    await call(sim.url, 'VM.add_to_blocked_operations', [session, vm.ref, 'start', 'true']);
    await call(sim.url, 'VM.add_to_blocked_operations', [
      session,
      vm.ref,
      'snapshot',
      'reason: backup window',
    ]);
    expect(
      await callError(sim.url, 'VM.add_to_blocked_operations', [session, vm.ref, 'start', 'x']),
    ).toMatchObject({ code: 'MAP_DUPLICATE_KEY', params: ['VM', 'blocked_operations', vm.ref, 'start'] });
    expect(await callError(sim.url, 'VM.start', [session, vm.ref, false, false])).toMatchObject({
      code: 'OPERATION_BLOCKED',
      params: [vm.ref, 'true'],
    });
    expect(await callError(sim.url, 'VM.snapshot', [session, vm.ref, 'x', []])).toMatchObject({
      code: 'OPERATION_BLOCKED',
      params: [vm.ref, 'reason: backup window'],
    });
    expect(await call(sim.url, 'VM.get_allowed_operations', [session, vm.ref])).not.toContain('start');
    await call(sim.url, 'VM.remove_from_blocked_operations', [session, vm.ref, 'snapshot']);
    await call(sim.url, 'VM.set_blocked_operations', [session, vm.ref, { destroy: 'protected' }]);
    expect(await call(sim.url, 'VM.get_blocked_operations', [session, vm.ref])).toEqual({
      destroy: 'protected',
    });
    expect(await callError(sim.url, 'VM.destroy', [session, vm.ref])).toMatchObject({
      code: 'OPERATION_BLOCKED',
      params: [vm.ref, 'protected'],
    });
    await call(sim.url, 'VM.set_blocked_operations', [session, vm.ref, {}]);
    await call(sim.url, 'VM.start', [session, vm.ref, false, false]);
    expect(sim.vmRecord(vm.uuid)!.power_state).toBe('Running');
    expect(await callError(sim.url, 'VM.start', [session, vm.ref, false, false])).toMatchObject({
      code: 'VM_BAD_POWER_STATE',
      params: [vm.ref, 'halted', 'running'],
    });
  });
});

describe('VM.destroy and attached disks', () => {
  it('refuses a running VM, and removes a halted one with its VBDs, VIFs and vTPM but never its VDIs', async () => {
    const { vm, disks } = vmWithThreeDisks('Running');
    const vbdRefs = (await call(sim.url, 'VM.get_VBDs', [session, vm.ref])) as string[];
    const vifRefs = (await call(sim.url, 'VM.get_VIFs', [session, vm.ref])) as string[];
    const [vtpmRef] = (await call(sim.url, 'VM.get_VTPMs', [session, vm.ref])) as string[];
    expect(await callError(sim.url, 'VM.destroy', [session, vm.ref])).toMatchObject({
      code: 'VM_BAD_POWER_STATE',
      params: [vm.ref, 'halted, suspended', 'running'],
    });
    // A running VM's disks are attached: VDI.destroy says VDI_IN_USE, and so does the world's deleteVdi.
    expect(await callError(sim.url, 'VDI.destroy', [session, disks[0]!.ref])).toMatchObject({
      code: 'VDI_IN_USE',
      params: [disks[0]!.ref, 'destroy'],
    });
    expect(() => sim.deleteVdi(disks[0]!.uuid)).toThrow(/VDI_IN_USE/);
    expect(await call(sim.url, 'VBD.get_currently_attached', [session, vbdRefs[0]])).toBe(true);
    expect(await callError(sim.url, 'VBD.destroy', [session, vbdRefs[0]])).toMatchObject({
      code: 'OPERATION_NOT_ALLOWED',
    });
    await call(sim.url, 'VM.hard_shutdown', [session, vm.ref]);
    expect(await call(sim.url, 'VBD.get_currently_attached', [session, vbdRefs[0]])).toBe(false);
    await call(sim.url, 'VM.destroy', [session, vm.ref]);
    expect(sim.vmRecord(vm.uuid)).toBeUndefined();
    for (const ref of vbdRefs) {
      expect(await callError(sim.url, 'VBD.get_record', [session, ref])).toMatchObject({
        code: 'HANDLE_INVALID',
        params: ['VBD', ref],
      });
    }
    for (const ref of vifRefs)
      expect((await callError(sim.url, 'VIF.get_record', [session, ref])).code).toBe('HANDLE_INVALID');
    expect((await callError(sim.url, 'VTPM.get_record', [session, vtpmRef])).code).toBe('HANDLE_INVALID');
    for (const disk of disks) {
      expect(sim.vdiRecord(disk.uuid)).toMatchObject({ uuid: disk.uuid, VBDs: [] });
    }
    await call(sim.url, 'VDI.destroy', [session, disks[0]!.ref]);
  });

  it('VDI.destroy of a halted VM’s disk takes its VBD with it', async () => {
    const disk = sim.addVdi({ virtualSize: 4 * MiB });
    const vm = sim.addVm({ nameLabel: 'halted', disks: [{ vdiUuid: disk.uuid, userdevice: '0' }], vifs: [] });
    await call(sim.url, 'VDI.destroy', [session, disk.ref]);
    expect(sim.vbdsOf(vm.uuid)).toEqual([]);
  });
});
