/**
 * What xapi does for VM, VBD, VIF and VTPM creation and destruction and for VM.snapshot, shared by the
 * RPC methods and the world API (so a world-made VM is exactly what the RPCs would have made).
 * Sources: xen-api ocaml/xapi/xapi_vbd.ml, xapi_vif_helpers.ml, xapi_vtpm.ml, xapi_vm_clone.ml.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { snapshotVdi } from './methods-vdi.ts';
import { NULL_REF } from './pool.ts';
import type { PoolState } from './pool.ts';
import { vmRecord } from './records-vm.ts';
import { toJsonValue } from './rpc-values.ts';
import { assertVmOperation } from './vm-lifecycle.ts';
import {
  deviceIndex,
  getNetwork,
  getVm,
  isValidMac,
  newUuidRef,
  powerStateText,
  randomMac,
  vbdsOfVm,
  vifsOfVm,
  vmTables,
  vtpmsOfVm,
} from './vm-state.ts';
import type { VbdState, VifState, VmFields, VmState, VtpmState } from './vm-state.ts';
import { XapiError } from './xapi-error.ts';

/** VM.create's defaults for the constructor fields that have one, and the fields it sets itself. */
export function defaultVmFields(): VmFields {
  return {
    name_label: '',
    name_description: '',
    power_state: 'Halted',
    user_version: 1,
    is_a_template: false,
    is_default_template: false,
    suspend_VDI: NULL_REF,
    resident_on: NULL_REF,
    affinity: NULL_REF,
    memory_overhead: 0,
    memory_target: 0,
    memory_static_max: 0,
    memory_dynamic_max: 0,
    memory_dynamic_min: 0,
    memory_static_min: 0,
    VCPUs_params: {},
    VCPUs_max: 1,
    VCPUs_at_startup: 1,
    actions_after_softreboot: 'soft',
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: '',
    HVM_boot_params: {},
    HVM_shadow_multiplier: 1,
    platform: {},
    PCI_bus: '',
    other_config: {},
    domid: -1,
    domarch: '',
    last_boot_CPU_flags: {},
    is_control_domain: false,
    last_booted_record: '',
    recommendations: '',
    xenstore_data: {},
    ha_always_run: false,
    ha_restart_priority: '',
    is_a_snapshot: false,
    snapshot_of: NULL_REF,
    snapshot_time: undefined,
    transportable_snapshot_id: '',
    tags: [],
    blocked_operations: {},
    snapshot_info: {},
    snapshot_metadata: '',
    parent: NULL_REF,
    bios_strings: {},
    protection_policy: NULL_REF,
    is_snapshot_from_vmpp: false,
    snapshot_schedule: NULL_REF,
    is_vmss_snapshot: false,
    appliance: NULL_REF,
    start_delay: 0,
    shutdown_delay: 0,
    order: 0,
    suspend_SR: NULL_REF,
    version: 0,
    generation_id: '0:0',
    hardware_platform_version: 0,
    has_vendor_device: false,
    requires_reboot: false,
    reference_label: '',
    domain_type: 'unspecified',
    NVRAM: {},
  };
}

/** VM.create: a halted VM; a mac_seed joins other_config and an unspecified domain type is derived. */
export function addVmToPool(pool: PoolState, fields: VmFields): VmState {
  const vm: VmState = { ...newUuidRef(), fields };
  if (!Object.hasOwn(fields.other_config, 'mac_seed')) {
    fields.other_config = { mac_seed: randomUUID(), ...fields.other_config };
  }
  if (fields.domain_type === 'unspecified') fields.domain_type = fields.HVM_boot_policy === '' ? 'pv' : 'hvm';
  vmTables(pool).vms.set(vm.ref, vm);
  return vm;
}

/** VM.destroy: its VBDs, VIFs and VTPMs go with it, never its VDIs; its children move to its parent. */
export function destroyVm(pool: PoolState, vm: VmState): void {
  assertVmOperation(pool, vm, 'destroy');
  const tables = vmTables(pool);
  for (const child of tables.vms.values()) {
    if (child.fields.parent === vm.ref) child.fields.parent = vm.fields.parent;
  }
  for (const vbd of vbdsOfVm(pool, vm)) tables.vbds.delete(vbd.ref);
  for (const vif of vifsOfVm(pool, vm)) tables.vifs.delete(vif.ref);
  for (const vtpm of vtpmsOfVm(pool, vm)) tables.vtpms.delete(vtpm.ref);
  tables.vms.delete(vm.ref);
}

const ATTACHABLE_VDI_TYPES = new Set(['system', 'user', 'ephemeral', 'suspend', 'crashdump', 'metadata']);
/** How many disk slots autodetect may choose from. */
const AUTODETECT_SLOTS = 16;

export interface NewVbd {
  VM: string;
  VDI: string;
  userdevice: string;
  bootable: boolean;
  mode: 'RO' | 'RW';
  type: 'CD' | 'Disk' | 'Floppy';
  unpluggable?: boolean;
  empty: boolean;
  other_config: Record<string, string>;
  qos_algorithm_type: string;
  qos_algorithm_params: Record<string, string>;
  device?: string;
  currently_attached?: boolean;
}

/** VBD.create, with xapi_vbd.ml's checks in its order. */
export function createVbd(pool: PoolState, spec: NewVbd): VbdState {
  const vm = getVm(pool, spec.VM);
  const vdi = spec.empty ? undefined : pool.vdi(spec.VDI);
  if (vdi !== undefined && !ATTACHABLE_VDI_TYPES.has(vdi.type)) {
    throw new XapiError('VDI_INCOMPATIBLE_TYPE', [vdi.ref, vdi.type]);
  }
  if (spec.type === 'CD' && spec.mode !== 'RO') throw new XapiError('VBD_CDS_MUST_BE_READONLY', []);
  if (spec.type !== 'CD' && spec.empty) throw new XapiError('VBD_NOT_REMOVABLE_MEDIA', ['in constructor']);
  if (spec.mode === 'RW' && vdi?.readOnly === true) throw new XapiError('VDI_READONLY', [vdi.ref]);
  const used = new Set(vbdsOfVm(pool, vm).map((vbd) => deviceIndex(vbd.userdevice)));
  let userdevice = spec.userdevice;
  if (userdevice === 'autodetect') {
    const free = Array.from({ length: AUTODETECT_SLOTS }, (_, index) => index).find((i) => !used.has(i));
    if (free === undefined) throw new XapiError('INVALID_DEVICE', [userdevice]);
    userdevice = String(free);
  } else if (deviceIndex(userdevice) === undefined) {
    throw new XapiError('INVALID_DEVICE', [userdevice]);
  }
  if (used.has(deviceIndex(userdevice))) throw new XapiError('DEVICE_ALREADY_EXISTS', [userdevice]);
  const vbd: VbdState = {
    ...newUuidRef(),
    VM: vm.ref,
    VDI: vdi?.ref ?? NULL_REF,
    device: spec.device ?? '',
    userdevice,
    bootable: spec.bootable,
    mode: spec.mode,
    type: spec.type,
    unpluggable: spec.unpluggable ?? true,
    empty: spec.empty,
    other_config: { ...spec.other_config },
    currently_attached: spec.currently_attached ?? false,
    qos_algorithm_type: spec.qos_algorithm_type,
    qos_algorithm_params: { ...spec.qos_algorithm_params },
  };
  vmTables(pool).vbds.set(vbd.ref, vbd);
  return vbd;
}

/** VBD.destroy: an attached VBD must be unplugged first. */
export function destroyVbd(pool: PoolState, vbd: VbdState): void {
  if (vbd.currently_attached) {
    const vmUuid = vmTables(pool).vms.get(vbd.VM)?.uuid ?? '';
    throw new XapiError('OPERATION_NOT_ALLOWED', [`VBD '${vbd.uuid}' still attached to '${vmUuid}'`]);
  }
  vmTables(pool).vbds.delete(vbd.ref);
}

export interface NewVif {
  device: string;
  network: string;
  VM: string;
  MAC: string;
  MTU: number;
  other_config: Record<string, string>;
  qos_algorithm_type: string;
  qos_algorithm_params: Record<string, string>;
  currently_attached?: boolean;
  locking_mode?: string;
  ipv4_allowed?: string[];
  ipv6_allowed?: string[];
}

/** VIF.create, as xapi_vif_helpers.ml checks: device a number, MAC valid (or made from the VM's mac_seed), device free. */
export function createVif(pool: PoolState, spec: NewVif): VifState {
  const vm = getVm(pool, spec.VM);
  const network = getNetwork(pool, spec.network);
  if (!/^\d+$/.test(spec.device)) throw new XapiError('INVALID_DEVICE', [spec.device]);
  const seeded = Object.hasOwn(vm.fields.other_config, 'mac_seed') && spec.MAC === '';
  const mac = seeded ? randomMac() : spec.MAC;
  if (!isValidMac(mac)) throw new XapiError('MAC_INVALID', [mac]);
  if (vifsOfVm(pool, vm).some((vif) => vif.device === spec.device)) {
    throw new XapiError('DEVICE_ALREADY_EXISTS', [spec.device]);
  }
  const vif: VifState = {
    ...newUuidRef(),
    device: spec.device,
    network: network.ref,
    VM: vm.ref,
    MAC: mac,
    MAC_autogenerated: seeded,
    MTU: spec.MTU,
    other_config: { ...spec.other_config },
    currently_attached: spec.currently_attached ?? false,
    qos_algorithm_type: spec.qos_algorithm_type,
    qos_algorithm_params: { ...spec.qos_algorithm_params },
    locking_mode: spec.locking_mode ?? 'network_default',
    ipv4_allowed: [...(spec.ipv4_allowed ?? [])],
    ipv6_allowed: [...(spec.ipv6_allowed ?? [])],
  };
  vmTables(pool).vifs.set(vif.ref, vif);
  return vif;
}

export function destroyVif(pool: PoolState, vif: VifState): void {
  const vm = vmTables(pool).vms.get(vif.VM);
  if (vm?.fields.power_state === 'Running' && vif.currently_attached) {
    throw new XapiError('OPERATION_NOT_ALLOWED', ['VIF currently attached to a running VM']);
  }
  vmTables(pool).vifs.delete(vif.ref);
}

function assertHalted(vm: VmState): void {
  if (vm.fields.power_state !== 'Halted') {
    throw new XapiError('VM_BAD_POWER_STATE', [vm.ref, 'halted', powerStateText(vm.fields.power_state)]);
  }
}

/** VTPM.create (xapi_vtpm.ml): one per VM, on a halted VM, with empty contents. */
export function createVtpm(pool: PoolState, vm: VmState, isUnique: boolean, contents = ''): VtpmState {
  const existing = vtpmsOfVm(pool, vm);
  if (existing.length > 0) throw new XapiError('VTPM_MAX_AMOUNT_REACHED', [String(existing.length)]);
  assertHalted(vm);
  return addVtpm(pool, vm, isUnique, contents);
}

function addVtpm(pool: PoolState, vm: VmState, isUnique: boolean, contents: string): VtpmState {
  const vtpm: VtpmState = {
    ...newUuidRef(),
    VM: vm.ref,
    persistence_backend: 'xapi',
    is_unique: isUnique,
    is_protected: false,
    contents,
  };
  vmTables(pool).vtpms.set(vtpm.ref, vtpm);
  return vtpm;
}

export function destroyVtpm(pool: PoolState, vtpm: VtpmState): void {
  const vm = vmTables(pool).vms.get(vtpm.VM);
  if (vm !== undefined) assertHalted(vm);
  vmTables(pool).vtpms.delete(vtpm.ref);
}

/** Xapi_vm_helpers.fresh_genid: a new random generation, unless the VM never had one. */
function freshGenerationId(current: string): string {
  if (current === '') return '';
  const part = (): string => BigInt(`0x${randomBytes(7).toString('hex')}`).toString();
  return `${part()}:${part()}`;
}

/**
 * VM.snapshot (xapi_vm_clone.ml, Disk_op_snapshot): VBDs whose VDI is in ignoreVdis are left out
 * altogether; an empty VBD stays empty, a CD keeps its VDI, each disk's VDI is snapshotted (VDI.snapshot,
 * copy-on-write). The new VM is a halted template with is_a_snapshot, snapshot_of, snapshot_time and
 * snapshot_info set; VIFs keep their MAC; VTPMs are copied (a unique one's contents are not); every
 * device of the snapshot is detached. The VM's parent becomes the snapshot.
 */
export function snapshotVm(
  pool: PoolState,
  vm: VmState,
  newName: string,
  ignoreVdis: readonly string[],
): VmState {
  assertVmOperation(pool, vm, 'snapshot');
  const ignored = new Set(ignoreVdis);
  const vbds = vbdsOfVm(pool, vm).filter((vbd) => !ignored.has(vbd.VDI));
  const newVdis = vbds.map((vbd) => {
    if (vbd.empty) return NULL_REF;
    if (vbd.type === 'CD') return vbd.VDI;
    return snapshotVdi(pool, pool.vdi(vbd.VDI)).ref;
  });
  const source = vm.fields;
  const otherConfig = { ...source.other_config };
  delete otherConfig.default_template;
  delete otherConfig.xensource_internal;
  const fields: VmFields = {
    ...structuredClone(source),
    power_state: 'Halted',
    blocked_operations: {},
    name_label: newName,
    is_a_template: true,
    is_default_template: false,
    is_a_snapshot: true,
    snapshot_of: vm.ref,
    snapshot_time: new Date(),
    snapshot_info: {
      'disk-snapshot-type': 'crash_consistent',
      'power-state-at-snapshot': source.power_state,
    },
    snapshot_metadata: JSON.stringify(toJsonValue(vmRecord(pool, vm))),
    transportable_snapshot_id: '',
    resident_on: NULL_REF,
    suspend_VDI: NULL_REF,
    other_config: otherConfig,
    domid: -1,
    domarch: '',
    ha_always_run: false,
    protection_policy: NULL_REF,
    is_snapshot_from_vmpp: false,
    snapshot_schedule: NULL_REF,
    is_vmss_snapshot: false,
    appliance: NULL_REF,
    start_delay: 0,
    shutdown_delay: 0,
    order: 0,
    suspend_SR: NULL_REF,
    version: 0,
    generation_id: freshGenerationId(source.generation_id),
    requires_reboot: false,
  };
  const tables = vmTables(pool);
  const snapshot: VmState = { ...newUuidRef(), fields };
  tables.vms.set(snapshot.ref, snapshot);
  vbds.forEach((vbd, index) => {
    const vdi = newVdis[index]!;
    const otherConfigOfVbd = { ...vbd.other_config };
    if (vbd.type === 'Disk' && !Object.hasOwn(otherConfigOfVbd, 'owner')) otherConfigOfVbd.owner = '';
    const copy: VbdState = {
      ...newUuidRef(),
      VM: snapshot.ref,
      VDI: vdi,
      device: vbd.device,
      userdevice: vbd.userdevice,
      bootable: vbd.bootable,
      mode: vbd.mode,
      type: vbd.type,
      unpluggable: vbd.unpluggable,
      empty: vdi === NULL_REF,
      other_config: otherConfigOfVbd,
      currently_attached: false,
      qos_algorithm_type: vbd.qos_algorithm_type,
      qos_algorithm_params: { ...vbd.qos_algorithm_params },
    };
    tables.vbds.set(copy.ref, copy);
  });
  for (const vif of vifsOfVm(pool, vm)) {
    const copy: VifState = {
      ...vif,
      ...newUuidRef(),
      VM: snapshot.ref,
      other_config: { ...vif.other_config },
      qos_algorithm_params: { ...vif.qos_algorithm_params },
      ipv4_allowed: [...vif.ipv4_allowed],
      ipv6_allowed: [...vif.ipv6_allowed],
      currently_attached: false,
    };
    tables.vifs.set(copy.ref, copy);
  }
  for (const vtpm of vtpmsOfVm(pool, vm)) {
    addVtpm(pool, snapshot, vtpm.is_unique, vtpm.is_unique ? '' : vtpm.contents);
  }
  vm.fields.parent = snapshot.ref;
  return snapshot;
}
