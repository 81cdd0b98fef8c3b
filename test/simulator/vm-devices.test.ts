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

function vbdRecord(vm: string, vdi: string, userdevice: string, extra: Rec = {}): Rec {
  return {
    VM: vm,
    VDI: vdi,
    userdevice,
    bootable: false,
    mode: 'RW',
    type: 'Disk',
    empty: false,
    other_config: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    ...extra,
  };
}

function vifRecord(vm: string, network: string, device: string, extra: Rec = {}): Rec {
  return {
    device,
    network,
    VM: vm,
    MAC: '02:00:00:00:10:01',
    MTU: 1500,
    other_config: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    ...extra,
  };
}

describe('VBD.create and VBD.destroy', () => {
  it('plugs a disk and an empty CD, and refuses what xapi_vbd.ml refuses', async () => {
    const vm = sim.addVm({ nameLabel: 'target', disks: [], vifs: [] });
    const disk = sim.addVdi({ virtualSize: 4 * MiB });
    const ref = (await call(sim.url, 'VBD.create', [session, vbdRecord(vm.ref, disk.ref, '0')])) as string;
    expect(await call(sim.url, 'VBD.get_record', [session, ref])).toMatchObject({
      VM: vm.ref,
      VDI: disk.ref,
      userdevice: '0',
      device: '',
      unpluggable: true,
      currently_attached: false,
    });
    expect(await call(sim.url, 'VM.get_VBDs', [session, vm.ref])).toEqual([ref]);
    expect(await call(sim.url, 'VDI.get_VBDs', [session, disk.ref])).toEqual([ref]);

    const other = sim.addVdi({ virtualSize: 4 * MiB });
    const cases: [Rec, string, string[]][] = [
      [vbdRecord(vm.ref, other.ref, '0'), 'DEVICE_ALREADY_EXISTS', ['0']],
      // 0, hda, xvda and sda name one slot.
      [vbdRecord(vm.ref, other.ref, 'xvda'), 'DEVICE_ALREADY_EXISTS', ['xvda']],
      [vbdRecord(vm.ref, other.ref, 'bogus'), 'INVALID_DEVICE', ['bogus']],
      [vbdRecord('OpaqueRef:none', other.ref, '1'), 'HANDLE_INVALID', ['VM', 'OpaqueRef:none']],
      [vbdRecord(vm.ref, 'OpaqueRef:none', '1'), 'HANDLE_INVALID', ['VDI', 'OpaqueRef:none']],
      [vbdRecord(vm.ref, other.ref, '1', { type: 'CD' }), 'VBD_CDS_MUST_BE_READONLY', []],
      [
        vbdRecord(vm.ref, 'OpaqueRef:NULL', '1', { empty: true }),
        'VBD_NOT_REMOVABLE_MEDIA',
        ['in constructor'],
      ],
      [vbdRecord(vm.ref, other.ref, '1', { mode: 'rx' }), 'ENUM_INVALID', ['mode', 'rx']],
    ];
    for (const [record, code, params] of cases) {
      expect(await callError(sim.url, 'VBD.create', [session, record]), code).toMatchObject({ code, params });
    }
    const { userdevice, ...withoutUserdevice } = vbdRecord(vm.ref, other.ref, '1');
    expect(userdevice).toBe('1');
    expect(await callError(sim.url, 'VBD.create', [session, withoutUserdevice])).toMatchObject({
      code: 'INTERNAL_ERROR',
      params: ['Server_helpers.Dispatcher_FieldNotFound("userdevice")'],
    });
    const cd = (await call(sim.url, 'VBD.create', [
      session,
      vbdRecord(vm.ref, 'OpaqueRef:NULL', '3', { type: 'CD', mode: 'RO', empty: true }),
    ])) as string;
    expect(await call(sim.url, 'VBD.get_empty', [session, cd])).toBe(true);
    const auto = (await call(sim.url, 'VBD.create', [
      session,
      vbdRecord(vm.ref, other.ref, 'autodetect'),
    ])) as string;
    expect(await call(sim.url, 'VBD.get_userdevice', [session, auto])).toBe('1');

    await call(sim.url, 'VBD.destroy', [session, ref]);
    expect(await call(sim.url, 'VM.get_VBDs', [session, vm.ref])).toEqual([cd, auto]);
    expect(sim.vdiRecord(disk.uuid)).toMatchObject({ VBDs: [] });
    expect(await callError(sim.url, 'VBD.destroy', [session, ref])).toMatchObject({
      code: 'HANDLE_INVALID',
      params: ['VBD', ref],
    });
  });

  it('the world API refuses a second disk on a used userdevice the same way', () => {
    const a = sim.addVdi({ virtualSize: 4 * MiB });
    const b = sim.addVdi({ virtualSize: 4 * MiB });
    expect(() =>
      sim.addVm({
        nameLabel: 'clash',
        disks: [
          { vdiUuid: a.uuid, userdevice: '0' },
          { vdiUuid: b.uuid, userdevice: '0' },
        ],
        vifs: [],
      }),
    ).toThrow(/DEVICE_ALREADY_EXISTS/);
    expect(sim.allVms().some((vm) => vm.name_label === 'clash')).toBe(false);
  });
});

describe('VIF.create and VIF.destroy', () => {
  it('adds a VIF, and refuses a used device, an invalid MAC or device', async () => {
    const vm = sim.addVm({ nameLabel: 'net', disks: [], vifs: [] });
    const network = sim.addNetwork({ nameLabel: 'front', vlan: 7 });
    const ref = (await call(sim.url, 'VIF.create', [session, vifRecord(vm.ref, network.ref, '0')])) as string;
    expect(await call(sim.url, 'VIF.get_record', [session, ref])).toMatchObject({
      device: '0',
      MAC: '02:00:00:00:10:01',
      MAC_autogenerated: false,
      network: network.ref,
      locking_mode: 'network_default',
    });
    const cases: [Rec, string, string[]][] = [
      [vifRecord(vm.ref, network.ref, '0', { MAC: '02:00:00:00:10:02' }), 'DEVICE_ALREADY_EXISTS', ['0']],
      [vifRecord(vm.ref, network.ref, '1', { MAC: '02:00:00:00:10' }), 'MAC_INVALID', ['02:00:00:00:10']],
      [
        vifRecord(vm.ref, network.ref, '1', { MAC: 'zz:00:00:00:10:01' }),
        'MAC_INVALID',
        ['zz:00:00:00:10:01'],
      ],
      [vifRecord(vm.ref, network.ref, 'eth1'), 'INVALID_DEVICE', ['eth1']],
      [vifRecord(vm.ref, 'OpaqueRef:none', '1'), 'HANDLE_INVALID', ['network', 'OpaqueRef:none']],
    ];
    for (const [record, code, params] of cases) {
      expect(await callError(sim.url, 'VIF.create', [session, record]), code).toMatchObject({ code, params });
    }
    const { MAC, ...withoutMac } = vifRecord(vm.ref, network.ref, '1');
    expect(MAC).toBeDefined();
    expect(await callError(sim.url, 'VIF.create', [session, withoutMac])).toMatchObject({
      code: 'INTERNAL_ERROR',
      params: ['Server_helpers.Dispatcher_FieldNotFound("MAC")'],
    });
    // An empty MAC on a VM with a mac_seed (every VM.create makes one) is generated.
    const generated = (await call(sim.url, 'VIF.create', [
      session,
      vifRecord(vm.ref, network.ref, '1', { MAC: '' }),
    ])) as string;
    const record = (await call(sim.url, 'VIF.get_record', [session, generated])) as Rec;
    expect(record.MAC).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(record.MAC_autogenerated).toBe(true);
    expect(sim.vifsOf(vm.uuid).map((vif) => vif.ref)).toEqual([ref, generated]);

    sim.setVmPowerState(vm.uuid, 'Running');
    expect(await callError(sim.url, 'VIF.destroy', [session, ref])).toMatchObject({
      code: 'OPERATION_NOT_ALLOWED',
      params: ['VIF currently attached to a running VM'],
    });
    sim.setVmPowerState(vm.uuid, 'Halted');
    await call(sim.url, 'VIF.destroy', [session, ref]);
    expect(await call(sim.url, 'network.get_VIFs', [session, network.ref])).toEqual([generated]);
  });
});

describe('VTPM', () => {
  it('create on a halted VM only, one per VM; contents readable and writable by the local superuser', async () => {
    const vm = sim.addVm({ nameLabel: 'tpm', disks: [], vifs: [] });
    const ref = (await call(sim.url, 'VTPM.create', [session, vm.ref, false])) as string;
    expect(await call(sim.url, 'VTPM.get_record', [session, ref])).toEqual({
      uuid: expect.any(String),
      allowed_operations: ['destroy'],
      current_operations: {},
      VM: vm.ref,
      backend: 'OpaqueRef:NULL',
      persistence_backend: 'xapi',
      is_unique: false,
      is_protected: false,
    });
    expect(await call(sim.url, 'VM.get_VTPMs', [session, vm.ref])).toEqual([ref]);
    expect(await call(sim.url, 'VTPM.get_contents', [session, ref])).toBe('');
    expect(await callError(sim.url, 'VTPM.create', [session, vm.ref, false])).toMatchObject({
      code: 'VTPM_MAX_AMOUNT_REACHED',
      params: ['1'],
    });
    await call(sim.url, 'VTPM.set_contents', [session, ref, 'bmV3IHN0YXRl']);
    expect(await call(sim.url, 'VTPM.get_contents', [session, ref])).toBe('bmV3IHN0YXRl');
    expect(sim.vtpmContents(vm.uuid)).toBe('bmV3IHN0YXRl');

    sim.setVmPowerState(vm.uuid, 'Running');
    expect(await callError(sim.url, 'VTPM.destroy', [session, ref])).toMatchObject({
      code: 'VM_BAD_POWER_STATE',
      params: [vm.ref, 'halted', 'running'],
    });
    const running = sim.addVm({ nameLabel: 'running', powerState: 'Running', disks: [], vifs: [] });
    expect(await callError(sim.url, 'VTPM.create', [session, running.ref, false])).toMatchObject({
      code: 'VM_BAD_POWER_STATE',
      params: [running.ref, 'halted', 'running'],
    });
    sim.setVmPowerState(vm.uuid, 'Halted');
    await call(sim.url, 'VTPM.destroy', [session, ref]);
    expect(sim.vtpmContents(vm.uuid)).toBeUndefined();
    expect(await callError(sim.url, 'VTPM.get_contents', [session, ref])).toMatchObject({
      code: 'HANDLE_INVALID',
      params: ['VTPM', ref],
    });
  });

  it('a unique vTPM is copied to a snapshot without its contents', async () => {
    const vm = sim.addVm({
      nameLabel: 'unique',
      disks: [],
      vifs: [],
      vtpm: { contents: 'a2V5', isUnique: true },
    });
    const snapshot = (await call(sim.url, 'VM.snapshot', [session, vm.ref, 's', []])) as string;
    const [vtpm] = (await call(sim.url, 'VM.get_VTPMs', [session, snapshot])) as string[];
    expect(await call(sim.url, 'VTPM.get_is_unique', [session, vtpm])).toBe(true);
    expect(await call(sim.url, 'VTPM.get_contents', [session, vtpm])).toBe('');
    expect(sim.vtpmContents(vm.uuid)).toBe('a2V5');
  });
});

describe('VM field writes', () => {
  it('name, NVRAM, tags and other_config, with the world’s late tags', async () => {
    const vm = sim.addVm({ nameLabel: 'fields', tags: ['a'], disks: [], vifs: [] });
    await call(sim.url, 'VM.set_name_label', [session, vm.ref, 'renamed']);
    await call(sim.url, 'VM.set_NVRAM', [session, vm.ref, { EFI_VARS: 'dmFycw==' }]);
    await call(sim.url, 'VM.add_tags', [session, vm.ref, 'b']);
    await call(sim.url, 'VM.add_tags', [session, vm.ref, 'b']);
    await call(sim.url, 'VM.remove_tags', [session, vm.ref, 'a']);
    sim.addVmTags(vm.uuid, ['late', 'b']);
    await call(sim.url, 'VM.add_to_other_config', [session, vm.ref, 'k', 'v']);
    expect(await callError(sim.url, 'VM.add_to_other_config', [session, vm.ref, 'k', 'w'])).toMatchObject({
      code: 'MAP_DUPLICATE_KEY',
      params: ['VM', 'other_config', vm.ref, 'k'],
    });
    expect(sim.vmRecord(vm.uuid)).toMatchObject({
      name_label: 'renamed',
      NVRAM: { EFI_VARS: 'dmFycw==' },
      tags: ['b', 'late'],
      other_config: { k: 'v' },
    });
    await call(sim.url, 'VM.set_tags', [session, vm.ref, ['x']]);
    await call(sim.url, 'VM.set_other_config', [session, vm.ref, { only: 'this' }]);
    expect(await call(sim.url, 'VM.get_tags', [session, vm.ref])).toEqual(['x']);
    expect(await call(sim.url, 'VM.get_other_config', [session, vm.ref])).toEqual({ only: 'this' });
    expect(await call(sim.url, 'VM.get_by_name_label', [session, 'renamed'])).toEqual([vm.ref]);
  });
});
