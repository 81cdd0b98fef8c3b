/**
 * The VM side of the simulated pool as a fresh XCP-ng 8.3 install has it: the management network on
 * eth0 of both hosts, the host-internal management network, one control domain per host and a few
 * default templates; plus the world API's builders for networks and VMs (index.ts documents them).
 */
import { randomUUID } from 'node:crypto';
import { NULL_REF } from './pool.ts';
import type { HostState, PoolState } from './pool.ts';
import { addVmToPool, createVbd, createVif, defaultVmFields } from './vm-ops.ts';
import {
  networkByUuid,
  newUuidRef,
  POWER_STATES,
  randomMac,
  setVmPowerState,
  vmByUuid,
  vmTables,
} from './vm-state.ts';
import type { NetworkState, PifState, PowerState, VmFields, VmState } from './vm-state.ts';
import { createVtpm } from './vm-ops.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export interface AddNetworkOptions {
  nameLabel: string;
  nameDescription?: string;
  /** Default `xapi<N>`. */
  bridge?: string;
  /** A VLAN tag: each host gets a VLAN PIF on eth0 carrying it. Without one the network has no PIF (internal). */
  vlan?: number;
  /** Default 1500. */
  mtu?: number;
  otherConfig?: Record<string, string>;
}

export interface AddVmDisk {
  vdiUuid: string;
  /** `0`, `1`, ... (or a name such as `xvdb`). */
  userdevice: string;
  bootable?: boolean;
  /** Default RW. */
  mode?: 'RO' | 'RW';
}

export interface AddVmVif {
  networkUuid: string;
  /** `0`, `1`, ... */
  device: string;
  /** Default: a random locally administered MAC. */
  mac?: string;
  /** Default: the network's MTU. */
  mtu?: number;
}

export interface AddVmOptions {
  nameLabel: string;
  nameDescription?: string;
  /** Default Halted. */
  powerState?: PowerState;
  /** Bytes: static max, dynamic max and dynamic min (default 2 GiB; static min is the smaller of it and 512 MiB). */
  memory?: number;
  /** VCPUs_max and VCPUs_at_startup (default 2). */
  vcpus?: number;
  tags?: string[];
  otherConfig?: Record<string, string>;
  /** Default `hvm`. */
  domainType?: 'hvm' | 'pv' | 'pv_in_pvh' | 'pvh';
  /** Default `BIOS order` for HVM, '' for PV. */
  hvmBootPolicy?: string;
  /** Default { order: 'cd', firmware: 'bios' } for HVM. */
  hvmBootParams?: Record<string, string>;
  platform?: Record<string, string>;
  nvram?: Record<string, string>;
  /** A vTPM holding these contents (base64, as VTPM.get_contents returns them). */
  vtpm?: { contents: string; isUnique?: boolean } | undefined;
  blockedOperations?: Record<string, string>;
  disks: AddVmDisk[];
  /** Userdevices of empty CD drives. */
  cdDrives?: string[];
  vifs: AddVmVif[];
  isTemplate?: boolean;
  /** A snapshot VM (is_a_template too, as xapi makes them), of `snapshotOfUuid` if given. */
  isSnapshot?: boolean;
  snapshotOfUuid?: string;
}

let bridgeCounter = 0;

function addNetworkState(pool: PoolState, spec: Omit<NetworkState, 'uuid' | 'ref'>): NetworkState {
  const network: NetworkState = { ...newUuidRef(), ...spec };
  vmTables(pool).networks.set(network.ref, network);
  return network;
}

function addPif(pool: PoolState, spec: Omit<PifState, 'uuid' | 'ref'>): PifState {
  const pif: PifState = { ...newUuidRef(), ...spec };
  vmTables(pool).pifs.set(pif.ref, pif);
  return pif;
}

/** The physical eth0 PIF of a host (VLANs are made on top of it). */
function eth0Of(pool: PoolState, host: HostState): PifState {
  return [...vmTables(pool).pifs.values()].find(
    (pif) => pif.host === host.ref && pif.device === 'eth0' && pif.physical,
  )!;
}

export function addNetwork(pool: PoolState, options: AddNetworkOptions): NetworkState {
  const mtu = options.mtu ?? 1500;
  const network = addNetworkState(pool, {
    name_label: options.nameLabel,
    name_description: options.nameDescription ?? '',
    MTU: mtu,
    other_config: { ...options.otherConfig },
    bridge: options.bridge ?? `xapi${bridgeCounter++}`,
    managed: true,
    tags: [],
  });
  if (options.vlan !== undefined) {
    const tag = options.vlan;
    if (!Number.isInteger(tag) || tag < 0 || tag > 4094)
      throw new RangeError(`VLAN tag must be 0-4094, got ${tag}`);
    for (const host of pool.hosts) {
      const eth0 = eth0Of(pool, host);
      const pif = addPif(pool, {
        device: 'eth0',
        network: network.ref,
        host: host.ref,
        MAC: eth0.MAC,
        MTU: mtu,
        VLAN: tag,
        physical: false,
        management: false,
        ip_configuration_mode: 'None',
        IP: '',
        netmask: '',
        gateway: '',
        DNS: '',
        VLAN_master_of: NULL_REF,
        other_config: {},
      });
      const vlan = { ...newUuidRef(), tagged_PIF: eth0.ref, untagged_PIF: pif.ref, tag };
      vmTables(pool).vlans.set(vlan.ref, vlan);
      pif.VLAN_master_of = vlan.ref;
    }
  }
  return network;
}

function controlDomain(pool: PoolState, host: HostState): VmState {
  const fields: VmFields = {
    ...defaultVmFields(),
    name_label: `Control domain on host: ${host.nameLabel}`,
    name_description: 'The domain which manages physical devices and manages other domains',
    is_control_domain: true,
    memory_static_max: 4 * GiB,
    memory_dynamic_max: 4 * GiB,
    memory_dynamic_min: 4 * GiB,
    memory_static_min: 4 * GiB,
    memory_target: 4 * GiB,
    VCPUs_max: 8,
    VCPUs_at_startup: 8,
    domain_type: 'pv',
    other_config: { storage_driver_domain: '', is_system_domain: 'true', perfmon: '' },
  };
  const vm = addVmToPool(pool, fields);
  vm.fields.other_config.storage_driver_domain = vm.ref;
  vm.fields.power_state = 'Running';
  vm.fields.domid = 0;
  vm.fields.resident_on = host.ref;
  return vm;
}

function defaultTemplate(
  pool: PoolState,
  nameLabel: string,
  description: string,
  extra: Partial<VmFields>,
): VmState {
  return addVmToPool(pool, {
    ...defaultVmFields(),
    name_label: nameLabel,
    name_description: description,
    is_a_template: true,
    is_default_template: true,
    memory_static_max: 2 * GiB,
    memory_dynamic_max: 2 * GiB,
    memory_dynamic_min: 2 * GiB,
    memory_static_min: 512 * MiB,
    VCPUs_max: 1,
    VCPUs_at_startup: 1,
    HVM_boot_policy: 'BIOS order',
    HVM_boot_params: { order: 'cdn' },
    domain_type: 'hvm',
    platform: { viridian: 'false', 'device-model': 'qemu-upstream-compat' },
    other_config: { default_template: 'true', 'install-methods': 'cdrom' },
    ...extra,
  });
}

/** What a fresh pool has: networks and PIFs, the control domains, the default templates. */
export function seedVmWorld(pool: PoolState): { managementNetwork: NetworkState } {
  const management = addNetworkState(pool, {
    name_label: 'Pool-wide network associated with eth0',
    name_description: '',
    MTU: 1500,
    other_config: {},
    bridge: 'xenbr0',
    managed: true,
    tags: [],
  });
  pool.hosts.forEach((host, index) => {
    addPif(pool, {
      device: 'eth0',
      network: management.ref,
      host: host.ref,
      MAC: randomMac(),
      MTU: 1500,
      VLAN: -1,
      physical: true,
      management: true,
      ip_configuration_mode: 'Static',
      IP: `192.0.2.${10 + index}`,
      netmask: '255.255.255.0',
      gateway: '192.0.2.1',
      DNS: '192.0.2.1',
      VLAN_master_of: NULL_REF,
      other_config: {},
    });
  });
  addNetworkState(pool, {
    name_label: 'Host internal management network',
    name_description:
      'Network on which guests will be assigned a private link-local IP address which can be used to talk XenAPI',
    MTU: 1500,
    other_config: { is_guest_installer_network: 'true', is_host_internal_management_network: 'true' },
    bridge: 'xenapi',
    managed: true,
    tags: [],
  });
  for (const host of pool.hosts) controlDomain(pool, host);
  defaultTemplate(
    pool,
    'Other install media',
    'Template which allows VM installation from install media',
    {},
  );
  defaultTemplate(
    pool,
    'Debian Bookworm 12',
    'To use this template from the CLI, install your VM using vm-install',
    {
      reference_label: 'debian-12',
    },
  );
  defaultTemplate(
    pool,
    'Windows Server 2022 (64-bit)',
    'Clones of this template will automatically provision',
    {
      reference_label: 'windows-server-2022-64',
      platform: { viridian: 'true', 'device-model': 'qemu-upstream-uefi', secureboot: 'true', vtpm: 'true' },
      HVM_boot_params: { order: 'dc', firmware: 'uefi' },
    },
  );
  return { managementNetwork: management };
}

export function addVm(pool: PoolState, options: AddVmOptions): VmState {
  const powerState = options.powerState ?? 'Halted';
  if (!POWER_STATES.includes(powerState)) throw new RangeError(`unknown power state ${powerState}`);
  const templateLike = options.isTemplate === true || options.isSnapshot === true;
  if (templateLike && powerState !== 'Halted') throw new RangeError('templates and snapshots are halted');
  const memory = options.memory ?? 2 * GiB;
  const vcpus = options.vcpus ?? 2;
  const domainType = options.domainType ?? 'hvm';
  const hvm = domainType === 'hvm';
  const snapshotOf =
    options.snapshotOfUuid === undefined ? undefined : vmByUuid(pool, options.snapshotOfUuid);
  const vm = addVmToPool(pool, {
    ...defaultVmFields(),
    name_label: options.nameLabel,
    name_description: options.nameDescription ?? '',
    is_a_template: templateLike,
    is_a_snapshot: options.isSnapshot === true,
    snapshot_of: snapshotOf?.ref ?? NULL_REF,
    snapshot_time: options.isSnapshot === true ? new Date() : undefined,
    snapshot_info:
      options.isSnapshot === true
        ? { 'disk-snapshot-type': 'crash_consistent', 'power-state-at-snapshot': 'Halted' }
        : {},
    memory_static_max: memory,
    memory_dynamic_max: memory,
    memory_dynamic_min: memory,
    memory_static_min: Math.min(memory, 512 * MiB),
    memory_target: powerState === 'Halted' ? 0 : memory,
    VCPUs_max: vcpus,
    VCPUs_at_startup: vcpus,
    HVM_boot_policy: options.hvmBootPolicy ?? (hvm ? 'BIOS order' : ''),
    HVM_boot_params: options.hvmBootParams ?? (hvm ? { order: 'cd', firmware: 'bios' } : {}),
    PV_bootloader: hvm ? '' : 'pygrub',
    platform:
      options.platform ??
      (hvm
        ? {
            acpi: '1',
            apic: 'true',
            pae: 'true',
            nx: 'true',
            viridian: 'false',
            'device-model': 'qemu-upstream-compat',
            videoram: '8',
            hpet: 'true',
            timeoffset: '0',
          }
        : {}),
    domain_type: domainType,
    other_config: { mac_seed: randomUUID(), ...options.otherConfig },
    tags: [...new Set(options.tags ?? [])],
    NVRAM: { ...options.nvram },
    blocked_operations: { ...options.blockedOperations },
    generation_id: hvm ? '0:0' : '',
  });
  try {
    for (const disk of options.disks) {
      const vdi = pool.vdiByUuid(disk.vdiUuid);
      createVbd(pool, {
        VM: vm.ref,
        VDI: vdi.ref,
        userdevice: disk.userdevice,
        bootable: disk.bootable ?? disk.userdevice === '0',
        mode: disk.mode ?? 'RW',
        type: 'Disk',
        empty: false,
        other_config: { owner: '' },
        qos_algorithm_type: '',
        qos_algorithm_params: {},
      });
    }
    for (const userdevice of options.cdDrives ?? []) {
      createVbd(pool, {
        VM: vm.ref,
        VDI: NULL_REF,
        userdevice,
        bootable: false,
        mode: 'RO',
        type: 'CD',
        empty: true,
        other_config: {},
        qos_algorithm_type: '',
        qos_algorithm_params: {},
      });
    }
    for (const spec of options.vifs) {
      const network = networkByUuid(pool, spec.networkUuid);
      createVif(pool, {
        device: spec.device,
        network: network.ref,
        VM: vm.ref,
        MAC: spec.mac ?? randomMac(),
        MTU: spec.mtu ?? network.MTU,
        other_config: {},
        qos_algorithm_type: '',
        qos_algorithm_params: {},
      });
    }
    if (options.vtpm !== undefined)
      createVtpm(pool, vm, options.vtpm.isUnique ?? false, options.vtpm.contents);
  } catch (error) {
    // Leave no half-made VM behind.
    const tables = vmTables(pool);
    for (const table of [tables.vbds, tables.vifs, tables.vtpms]) {
      for (const [ref, device] of table) if (device.VM === vm.ref) table.delete(ref);
    }
    tables.vms.delete(vm.ref);
    throw error;
  }
  if (powerState !== 'Halted') setVmPowerState(pool, vm, powerState);
  return vm;
}
