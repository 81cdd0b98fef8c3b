import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, callError, login, postXml, xmlCall } from './sim-client.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;
let session: string;
let readOnly: string;

type Rec = Record<string, unknown>;

/** A complete VM.create record: every constructor field without a default. */
function vmCreateRecord(nameLabel: string): Rec {
  return {
    name_label: nameLabel,
    name_description: 'made by VM.create',
    user_version: 1,
    is_a_template: false,
    affinity: 'OpaqueRef:NULL',
    memory_static_max: 1024 * MiB,
    memory_dynamic_max: 1024 * MiB,
    memory_dynamic_min: 512 * MiB,
    memory_static_min: 256 * MiB,
    VCPUs_params: {},
    VCPUs_max: 2,
    VCPUs_at_startup: 1,
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: 'BIOS order',
    HVM_boot_params: { order: 'cd' },
    platform: { acpi: '1' },
    PCI_bus: '',
    other_config: { made: 'rpc' },
    recommendations: '',
  };
}

async function masterRef(): Promise<string> {
  const [poolRef] = (await call(sim.url, 'pool.get_all', [session])) as string[];
  return (await call(sim.url, 'pool.get_master', [session, poolRef])) as string;
}

beforeAll(async () => {
  sim = await startXapiSimulator();
  session = await login(sim);
  readOnly = await login({ url: sim.url, username: sim.readOnlyUsername, password: sim.readOnlyPassword });
});
afterAll(() => sim.close());

describe('VM records', () => {
  it('carry xapi field names and types; every getter equals its record field', async () => {
    const disk = sim.addVdi({ virtualSize: 4 * MiB, nameLabel: 'root' });
    const vm = sim.addVm({
      nameLabel: 'web-1',
      powerState: 'Running',
      memory: 1024 * MiB,
      vcpus: 4,
      tags: ['prod'],
      otherConfig: { owner: 'ops' },
      nvram: { EFI_VARS: 'AAAA' },
      disks: [{ vdiUuid: disk.uuid, userdevice: '0' }],
      cdDrives: ['3'],
      vifs: [{ networkUuid: sim.managementNetwork.uuid, device: '0', mac: '02:00:00:00:00:01' }],
    });
    expect(await call(sim.url, 'VM.get_by_uuid', [session, vm.uuid])).toBe(vm.ref);
    const record = (await call(sim.url, 'VM.get_record', [session, vm.ref])) as Rec;
    expect(record).toMatchObject({
      uuid: vm.uuid,
      name_label: 'web-1',
      power_state: 'Running',
      is_a_template: false,
      is_a_snapshot: false,
      is_control_domain: false,
      snapshot_of: 'OpaqueRef:NULL',
      snapshots: [],
      snapshot_time: '19700101T00:00:00Z',
      tags: ['prod'],
      memory_static_max: 1024 * MiB,
      memory_dynamic_max: 1024 * MiB,
      memory_dynamic_min: 1024 * MiB,
      memory_static_min: 512 * MiB,
      VCPUs_max: 4,
      VCPUs_at_startup: 4,
      VCPUs_params: {},
      HVM_boot_policy: 'BIOS order',
      HVM_shadow_multiplier: 1,
      domain_type: 'hvm',
      NVRAM: { EFI_VARS: 'AAAA' },
      blocked_operations: {},
      actions_after_shutdown: 'destroy',
      actions_after_reboot: 'restart',
      actions_after_crash: 'restart',
      has_vendor_device: false,
      user_version: 1,
      affinity: 'OpaqueRef:NULL',
      recommendations: '',
      xenstore_data: {},
      PV_bootloader: '',
      PV_kernel: '',
      PV_args: '',
      VTPMs: [],
    });
    expect(record.resident_on).toBe(await masterRef());
    expect((record.other_config as Rec).owner).toBe('ops');
    expect((record.other_config as Rec).mac_seed).toMatch(/^[0-9a-f-]{36}$/);
    expect(record.allowed_operations).toEqual(expect.arrayContaining(['snapshot', 'clean_shutdown']));
    expect(record.allowed_operations).not.toContain('start');
    expect(record.VBDs).toHaveLength(2);
    expect(record.VIFs).toHaveLength(1);
    for (const field of Object.keys(record)) {
      expect(await call(sim.url, `VM.get_${field}`, [session, vm.ref]), field).toEqual(record[field]);
    }
    const all = (await call(sim.url, 'VM.get_all_records', [session])) as Record<string, Rec>;
    expect(all[vm.ref]).toEqual(record);
    expect(await call(sim.url, 'VM.get_all', [session])).toContain(vm.ref);
    expect(sim.vmRecord(vm.uuid)).toEqual({ ref: vm.ref, ...record });
    expect(sim.vmsOf().map((entry) => entry.uuid)).toContain(vm.uuid);
    expect(await call(sim.url, 'VDI.get_VBDs', [session, disk.ref])).toEqual(
      sim
        .vbdsOf(vm.uuid)
        .filter((vbd) => vbd.type === 'Disk')
        .map((vbd) => vbd.ref),
    );
  });

  it('VBD and VIF records: a running VM has its devices attached', async () => {
    const disk = sim.addVdi({ virtualSize: 4 * MiB });
    const network = sim.addNetwork({ nameLabel: 'backend', mtu: 9000 });
    const vm = sim.addVm({
      nameLabel: 'db',
      disks: [{ vdiUuid: disk.uuid, userdevice: '1', mode: 'RW' }],
      cdDrives: ['3'],
      vifs: [{ networkUuid: network.uuid, device: '2', mac: '02:aa:bb:cc:dd:ee' }],
    });
    const [diskVbd, cd] = sim.vbdsOf(vm.uuid);
    const vbd = (await call(sim.url, 'VBD.get_record', [session, diskVbd!.ref])) as Rec;
    expect(vbd).toMatchObject({
      VM: vm.ref,
      VDI: disk.ref,
      userdevice: '1',
      bootable: false,
      mode: 'RW',
      type: 'Disk',
      empty: false,
      unpluggable: true,
      currently_attached: false,
      other_config: { owner: '' },
      qos_algorithm_type: '',
      qos_algorithm_params: {},
      qos_supported_algorithms: [],
    });
    expect(await call(sim.url, 'VBD.get_record', [session, cd!.ref])).toMatchObject({
      VDI: 'OpaqueRef:NULL',
      type: 'CD',
      mode: 'RO',
      empty: true,
      userdevice: '3',
    });
    const [vifRef] = (await call(sim.url, 'VM.get_VIFs', [session, vm.ref])) as string[];
    expect(await call(sim.url, 'VIF.get_record', [session, vifRef])).toMatchObject({
      VM: vm.ref,
      network: network.ref,
      device: '2',
      MAC: '02:aa:bb:cc:dd:ee',
      MTU: 9000,
      currently_attached: false,
      locking_mode: 'network_default',
      ipv4_allowed: [],
      ipv6_allowed: [],
      qos_algorithm_type: '',
      other_config: {},
    });
    sim.setVmPowerState(vm.uuid, 'Running');
    expect(await call(sim.url, 'VBD.get_currently_attached', [session, diskVbd!.ref])).toBe(true);
    expect(await call(sim.url, 'VBD.get_device', [session, diskVbd!.ref])).toBe('xvdb');
    expect(await call(sim.url, 'VIF.get_currently_attached', [session, vifRef])).toBe(true);
    sim.setVmPowerState(vm.uuid, 'Halted');
    expect(await call(sim.url, 'VBD.get_currently_attached', [session, diskVbd!.ref])).toBe(false);
    expect(await call(sim.url, 'VM.get_resident_on', [session, vm.ref])).toBe('OpaqueRef:NULL');
    expect(await call(sim.url, 'VM.get_domid', [session, vm.ref])).toBe(-1);
  });

  it('unknown refs and uuids fail HANDLE_INVALID [class, ref] and UUID_INVALID [class, uuid]', async () => {
    for (const cls of ['VM', 'VBD', 'VIF', 'VTPM', 'network', 'PIF']) {
      expect(await callError(sim.url, `${cls}.get_record`, [session, 'OpaqueRef:nope'])).toMatchObject({
        code: 'HANDLE_INVALID',
        params: [cls, 'OpaqueRef:nope'],
      });
      expect(await callError(sim.url, `${cls}.get_by_uuid`, [session, 'no-such'])).toMatchObject({
        code: 'UUID_INVALID',
        params: [cls, 'no-such'],
      });
    }
  });

  it('XML-RPC types the float HVM_shadow_multiplier and the snapshot_time', async () => {
    const vm = sim.addVm({ nameLabel: 'xml', disks: [], vifs: [] });
    const { text } = await postXml(sim.url, '/', xmlCall('VM.get_record', [session, vm.ref]));
    expect(text).toContain('<name>HVM_shadow_multiplier</name><value><double>1</double></value>');
    expect(text).toContain('<name>is_a_template</name><value><boolean>0</boolean></value>');
    expect(text).toContain(
      '<name>snapshot_time</name><value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>',
    );
  });
});

describe('what a fresh host has', () => {
  it('a running control domain per host and default templates', async () => {
    const all = (await call(sim.url, 'VM.get_all_records', [session])) as Record<string, Rec>;
    const dom0s = Object.entries(all).filter(([, vm]) => vm.is_control_domain === true);
    expect(dom0s).toHaveLength(2);
    for (const [ref, dom0] of dom0s) {
      expect(dom0).toMatchObject({ power_state: 'Running', domid: 0, is_a_template: false });
      expect(await call(sim.url, 'host.get_control_domain', [session, dom0.resident_on])).toBe(ref);
      expect(await call(sim.url, 'host.get_resident_VMs', [session, dom0.resident_on])).toContain(ref);
    }
    expect(sim.controlDomain('master').ref).toBe(
      await call(sim.url, 'host.get_control_domain', [session, await masterRef()]),
    );
    const templates = Object.values(all).filter(
      (vm) => vm.is_a_template === true && vm.is_a_snapshot === false,
    );
    expect(templates.length).toBeGreaterThanOrEqual(3);
    for (const template of templates) {
      expect(template).toMatchObject({ power_state: 'Halted', is_default_template: true });
      expect(template.allowed_operations).not.toContain('start');
      expect(template.allowed_operations).toContain('clone');
    }
    const dom0 = dom0s[0]![0];
    expect(await callError(sim.url, 'VM.destroy', [session, dom0])).toMatchObject({
      code: 'VM_BAD_POWER_STATE',
      params: [dom0, 'halted, suspended', 'running'],
    });
    expect(await callError(sim.url, 'VM.snapshot', [session, dom0, 'x'])).toMatchObject({
      code: 'OPERATION_NOT_ALLOWED',
      params: ['This operation is not allowed on a control domain'],
    });
    const template = Object.entries(all).find(([, vm]) => vm.is_default_template === true)![0];
    expect(await callError(sim.url, 'VM.start', [session, template, false, false])).toMatchObject({
      code: 'VM_IS_TEMPLATE',
      params: [template, 'start'],
    });
    expect(await callError(sim.url, 'VM.destroy', [session, template])).toMatchObject({
      code: 'VM_IS_TEMPLATE',
      params: [template, 'destroy'],
    });
    expect(sim.vmsOf().some((vm) => vm.is_control_domain === true || vm.is_a_template === true)).toBe(false);
  });

  it('the management network has a physical eth0 PIF on each host with VLAN -1', async () => {
    const networks = (await call(sim.url, 'network.get_all_records', [session])) as Record<string, Rec>;
    const management = networks[sim.managementNetwork.ref]!;
    expect(management).toMatchObject({ uuid: sim.managementNetwork.uuid, bridge: 'xenbr0', MTU: 1500 });
    expect(management.PIFs).toHaveLength(2);
    for (const pifRef of management.PIFs as string[]) {
      const pif = (await call(sim.url, 'PIF.get_record', [session, pifRef])) as Rec;
      expect(pif).toMatchObject({ device: 'eth0', VLAN: -1, physical: true, management: true });
      expect(pif.network).toBe(sim.managementNetwork.ref);
      expect(await call(sim.url, 'host.get_PIFs', [session, pif.host])).toContain(pifRef);
    }
  });

  it('a VLAN network: a VLAN PIF on each host carrying the tag, a VLAN object on eth0', async () => {
    const network = sim.addNetwork({ nameLabel: 'storage vlan', vlan: 42, mtu: 9000, bridge: 'xapi42' });
    expect(await call(sim.url, 'network.get_by_uuid', [session, network.uuid])).toBe(network.ref);
    const record = (await call(sim.url, 'network.get_record', [session, network.ref])) as Rec;
    expect(record).toMatchObject({
      uuid: network.uuid,
      name_label: 'storage vlan',
      name_description: '',
      bridge: 'xapi42',
      MTU: 9000,
      VIFs: [],
      other_config: {},
    });
    const pifs = (await call(sim.url, 'PIF.get_all_records', [session])) as Record<string, Rec>;
    const vlanPifs = (record.PIFs as string[]).map((ref) => pifs[ref]!);
    expect(vlanPifs).toHaveLength(2);
    for (const pif of vlanPifs) {
      expect(pif).toMatchObject({
        VLAN: 42,
        device: 'eth0',
        physical: false,
        network: network.ref,
        MTU: 9000,
      });
      const vlan = (await call(sim.url, 'VLAN.get_record', [session, pif.VLAN_master_of])) as Rec;
      expect(vlan.tag).toBe(42);
      expect(pifs[vlan.tagged_PIF as string]).toMatchObject({ VLAN: -1, physical: true, host: pif.host });
    }
    const internal = sim.addNetwork({ nameLabel: 'internal' });
    expect(await call(sim.url, 'network.get_PIFs', [session, internal.ref])).toEqual([]);
    const vm = sim.addVm({
      nameLabel: 'on vlan',
      disks: [],
      vifs: [{ networkUuid: network.uuid, device: '0' }],
    });
    expect(await call(sim.url, 'network.get_VIFs', [session, network.ref])).toEqual(
      await call(sim.url, 'VM.get_VIFs', [session, vm.ref]),
    );
  });
});

describe('VM.create', () => {
  it('makes a halted VM with a mac_seed and the defaults of the optional fields', async () => {
    const ref = (await call(sim.url, 'VM.create', [session, vmCreateRecord('created')])) as string;
    const record = (await call(sim.url, 'VM.get_record', [session, ref])) as Rec;
    expect(record).toMatchObject({
      name_label: 'created',
      power_state: 'Halted',
      memory_static_min: 256 * MiB,
      VCPUs_at_startup: 1,
      tags: [],
      blocked_operations: {},
      NVRAM: {},
      xenstore_data: {},
      HVM_shadow_multiplier: 1,
      domain_type: 'hvm',
      actions_after_softreboot: 'soft',
      VBDs: [],
      VIFs: [],
      resident_on: 'OpaqueRef:NULL',
      domid: -1,
    });
    expect(record.other_config).toMatchObject({ made: 'rpc', mac_seed: expect.any(String) });
    await call(sim.url, 'VM.destroy', [session, ref]);
    expect(await callError(sim.url, 'VM.get_record', [session, ref])).toMatchObject({
      code: 'HANDLE_INVALID',
    });
  });

  it.each([
    'name_label',
    'user_version',
    'memory_static_max',
    'VCPUs_max',
    'actions_after_crash',
    'PV_kernel',
    'HVM_boot_policy',
    'platform',
    'other_config',
    'recommendations',
  ])('without %s fails as the dispatcher does: INTERNAL_ERROR Dispatcher_FieldNotFound', async (field) => {
    const record = vmCreateRecord('incomplete');
    delete record[field];
    expect(await callError(sim.url, 'VM.create', [session, record])).toMatchObject({
      code: 'INTERNAL_ERROR',
      params: [`Server_helpers.Dispatcher_FieldNotFound("${field}")`],
    });
  });

  it('reports the first missing field in datamodel order; a wrongly typed one is FIELD_TYPE_ERROR', async () => {
    const record = vmCreateRecord('x');
    delete record.recommendations;
    delete record.VCPUs_max;
    expect((await callError(sim.url, 'VM.create', [session, record])).params).toEqual([
      'Server_helpers.Dispatcher_FieldNotFound("VCPUs_max")',
    ]);
    expect(
      await callError(sim.url, 'VM.create', [session, { ...vmCreateRecord('x'), VCPUs_max: 'many' }]),
    ).toMatchObject({ code: 'FIELD_TYPE_ERROR', params: ['VCPUs_max'] });
  });
});

describe('read-only sessions', () => {
  it('read VMs, devices and networks, and may write nothing', async () => {
    const disk = sim.addVdi({ virtualSize: 4 * MiB });
    const vm = sim.addVm({
      nameLabel: 'ro',
      disks: [{ vdiUuid: disk.uuid, userdevice: '0' }],
      vifs: [{ networkUuid: sim.managementNetwork.uuid, device: '0' }],
      vtpm: { contents: 'c2VjcmV0' },
    });
    expect(await call(sim.url, 'VM.get_record', [readOnly, vm.ref])).toMatchObject({ uuid: vm.uuid });
    const [vbd] = (await call(sim.url, 'VM.get_VBDs', [readOnly, vm.ref])) as string[];
    const [vif] = (await call(sim.url, 'VM.get_VIFs', [readOnly, vm.ref])) as string[];
    const [vtpm] = (await call(sim.url, 'VM.get_VTPMs', [readOnly, vm.ref])) as string[];
    await call(sim.url, 'VBD.get_record', [readOnly, vbd]);
    await call(sim.url, 'network.get_all_records', [readOnly]);
    await call(sim.url, 'PIF.get_all_records', [readOnly]);
    await call(sim.url, 'VTPM.get_record', [readOnly, vtpm]);
    const writes: [string, unknown[]][] = [
      ['VM.create', [vmCreateRecord('ro')]],
      ['VM.destroy', [vm.ref]],
      ['VM.snapshot', [vm.ref, 'snap', []]],
      ['VM.set_name_label', [vm.ref, 'renamed']],
      ['VM.set_NVRAM', [vm.ref, {}]],
      ['VM.add_tags', [vm.ref, 't']],
      ['VM.add_to_blocked_operations', [vm.ref, 'start', 'true']],
      ['VM.add_to_other_config', [vm.ref, 'k', 'v']],
      ['VBD.destroy', [vbd]],
      ['VIF.destroy', [vif]],
      ['VTPM.destroy', [vtpm]],
      ['VTPM.create', [vm.ref, false]],
      ['VTPM.set_contents', [vtpm, 'AAAA']],
      // Not a write, but only the local superuser may read a vTPM's contents.
      ['VTPM.get_contents', [vtpm]],
    ];
    for (const [name, params] of writes) {
      expect(await callError(sim.url, name, [readOnly, ...params]), name).toMatchObject({
        code: 'RBAC_PERMISSION_DENIED',
        params: [name.toLowerCase(), 'No permission to perform this action'],
      });
    }
    expect(sim.vmRecord(vm.uuid)).toMatchObject({ name_label: 'ro', tags: [], blocked_operations: {} });
    expect(sim.vtpmContents(vm.uuid)).toBe('c2VjcmV0');
  });
});
