/** VM.* methods: records, the constructor, destroy, snapshot, power changes and the fields a backup product writes. */
import { B, E, F, I, L, M, readCtorRecord, S } from './ctor-record.ts';
import type { CtorField } from './ctor-record.ts';
import { method, stringArg, stringListArg, stringMapArg } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import { fieldGetters } from './methods-getters.ts';
import { NULL_REF } from './pool.ts';
import type { PoolState } from './pool.ts';
import { VM_RECORD_FIELDS, vmRecord } from './records-vm.ts';
import { boolArg } from './method-table.ts';
import { assertVmOperation } from './vm-lifecycle.ts';
import { addVmToPool, defaultVmFields, destroyVm, snapshotVm } from './vm-ops.ts';
import { getVm, setVmPowerState, vmByUuid, vmTables } from './vm-state.ts';
import type { VmFields, VmState } from './vm-state.ts';
import { XapiError } from './xapi-error.ts';

const ON_NORMAL_EXIT = E('destroy', 'restart');
const ON_CRASH = E(
  'destroy',
  'coredump_and_destroy',
  'restart',
  'coredump_and_restart',
  'preserve',
  'rename_restart',
);
const ON_SOFTREBOOT = E('soft', 'destroy', 'restart');
const DOMAIN_TYPE = E('hvm', 'pv', 'pv_in_pvh', 'pvh', 'unspecified');

/** VM's constructor fields in datamodel order (ocaml/idl/datamodel_vm.ml); those without `default` are required. */
const VM_CTOR_FIELDS: readonly CtorField[] = [
  { name: 'name_label', type: S },
  { name: 'name_description', type: S },
  { name: 'user_version', type: I },
  { name: 'is_a_template', type: B },
  { name: 'affinity', type: S },
  { name: 'memory_target', type: I, default: 0 },
  { name: 'memory_static_max', type: I },
  { name: 'memory_dynamic_max', type: I },
  { name: 'memory_dynamic_min', type: I },
  { name: 'memory_static_min', type: I },
  { name: 'VCPUs_params', type: M },
  { name: 'VCPUs_max', type: I },
  { name: 'VCPUs_at_startup', type: I },
  { name: 'actions_after_softreboot', type: ON_SOFTREBOOT, default: 'soft' },
  { name: 'actions_after_shutdown', type: ON_NORMAL_EXIT },
  { name: 'actions_after_reboot', type: ON_NORMAL_EXIT },
  { name: 'actions_after_crash', type: ON_CRASH },
  { name: 'PV_bootloader', type: S },
  { name: 'PV_kernel', type: S },
  { name: 'PV_ramdisk', type: S },
  { name: 'PV_args', type: S },
  { name: 'PV_bootloader_args', type: S },
  { name: 'PV_legacy_args', type: S },
  { name: 'HVM_boot_policy', type: S },
  { name: 'HVM_boot_params', type: M },
  { name: 'HVM_shadow_multiplier', type: F, default: 1 },
  { name: 'platform', type: M },
  { name: 'PCI_bus', type: S },
  { name: 'other_config', type: M },
  { name: 'recommendations', type: S },
  { name: 'xenstore_data', type: M, default: {} },
  { name: 'ha_always_run', type: B, default: false },
  { name: 'ha_restart_priority', type: S, default: '' },
  { name: 'tags', type: L, default: [] },
  { name: 'blocked_operations', type: M, default: {} },
  { name: 'protection_policy', type: S, default: NULL_REF },
  { name: 'is_snapshot_from_vmpp', type: B, default: false },
  { name: 'snapshot_schedule', type: S, default: NULL_REF },
  { name: 'is_vmss_snapshot', type: B, default: false },
  { name: 'appliance', type: S, default: NULL_REF },
  { name: 'start_delay', type: I, default: 0 },
  { name: 'shutdown_delay', type: I, default: 0 },
  { name: 'order', type: I, default: 0 },
  { name: 'suspend_SR', type: S, default: NULL_REF },
  { name: 'version', type: I, default: 0 },
  { name: 'generation_id', type: S, default: '0:0' },
  { name: 'hardware_platform_version', type: I, default: 0 },
  { name: 'has_vendor_device', type: B, default: false },
  { name: 'reference_label', type: S, default: '' },
  { name: 'domain_type', type: DOMAIN_TYPE, default: 'unspecified' },
  { name: 'NVRAM', type: M, default: {} },
];

function createVmFromRecord(pool: PoolState, value: unknown): VmState {
  const read = readCtorRecord(value, VM_CTOR_FIELDS);
  const fields = { ...defaultVmFields(), ...read } as VmFields;
  // xapi_vm.ml: apart from the mac_seed, parameter validation waits for VM.start.
  return addVmToPool(pool, fields);
}

function vmOf(pool: PoolState, ref: unknown): VmState {
  return getVm(pool, ref);
}

/** A setter `VM.set_<field>(self, value)` writing one stored field. */
function setter<K extends keyof VmFields>(
  field: K,
  read: (args: readonly unknown[]) => VmFields[K],
): MethodTable[string] {
  return method(
    2,
    ({ pool }, args) => {
      const vm = vmOf(pool, args[0]);
      vm.fields[field] = read(args);
      return '';
    },
    { writes: true },
  );
}

type MapField =
  | 'other_config'
  | 'blocked_operations'
  | 'NVRAM'
  | 'platform'
  | 'xenstore_data'
  | 'HVM_boot_params'
  | 'VCPUs_params';

/** `add_to_<field>` (MAP_DUPLICATE_KEY on an existing key) and `remove_from_<field>` (no error when absent). */
function mapMethods(field: MapField): MethodTable {
  return {
    [`VM.add_to_${field}`]: method(
      3,
      ({ pool }, args) => {
        const vm = vmOf(pool, args[0]);
        const key = stringArg(args, 1, 'key');
        const value = stringArg(args, 2, 'value');
        if (Object.hasOwn(vm.fields[field], key)) {
          throw new XapiError('MAP_DUPLICATE_KEY', ['VM', field, vm.ref, key]);
        }
        vm.fields[field] = { ...vm.fields[field], [key]: value };
        return '';
      },
      { writes: true },
    ),
    [`VM.remove_from_${field}`]: method(
      2,
      ({ pool }, args) => {
        const vm = vmOf(pool, args[0]);
        const key = stringArg(args, 1, 'key');
        const next = { ...vm.fields[field] };
        delete next[key];
        vm.fields[field] = next;
        return '';
      },
      { writes: true },
    ),
    [`VM.set_${field}`]: setter(field, (args) => stringMapArg(args[1], 'value')),
  };
}

function powerChange(
  op: string,
  to: (args: readonly unknown[]) => 'Halted' | 'Running' | 'Paused',
  params: number,
) {
  return method(
    params,
    ({ pool }, args) => {
      const vm = vmOf(pool, args[0]);
      assertVmOperation(pool, vm, op);
      setVmPowerState(pool, vm, to(args));
      return '';
    },
    { writes: true },
  );
}

export const vmMethods: MethodTable = {
  'VM.get_by_uuid': method(1, ({ pool }, args) => vmByUuid(pool, args[0]).ref),
  'VM.get_record': method(1, ({ pool }, args) => vmRecord(pool, vmOf(pool, args[0]))),
  'VM.get_all': method(0, ({ pool }) => [...vmTables(pool).vms.keys()]),
  'VM.get_all_records': method(0, ({ pool }) =>
    Object.fromEntries([...vmTables(pool).vms.values()].map((vm) => [vm.ref, vmRecord(pool, vm)])),
  ),
  'VM.get_by_name_label': method(1, ({ pool }, args) =>
    [...vmTables(pool).vms.values()].filter((vm) => vm.fields.name_label === args[0]).map((vm) => vm.ref),
  ),
  ...fieldGetters('VM', (pool, ref) => vmRecord(pool, vmOf(pool, ref)), VM_RECORD_FIELDS),
  'VM.create': method(1, ({ pool }, args) => createVmFromRecord(pool, args[0]).ref, { writes: true }),
  'VM.destroy': method(
    1,
    ({ pool }, args) => {
      destroyVm(pool, vmOf(pool, args[0]));
      return '';
    },
    { writes: true },
  ),
  // ignore_vdis has a default (the empty set), so 2 or 3 arguments.
  'VM.snapshot': method(
    [2, 3],
    ({ pool }, args) => {
      const vm = vmOf(pool, args[0]);
      const newName = stringArg(args, 1, 'new_name');
      const ignore = args[2] === undefined ? [] : stringListArg(args[2], 'ignore_vdis');
      return snapshotVm(pool, vm, newName, ignore).ref;
    },
    { writes: true },
  ),
  'VM.start': powerChange('start', (args) => (boolArg(args[1], 'start_paused') ? 'Paused' : 'Running'), 3),
  'VM.clean_shutdown': powerChange('clean_shutdown', () => 'Halted', 1),
  'VM.hard_shutdown': powerChange('hard_shutdown', () => 'Halted', 1),
  'VM.pause': powerChange('pause', () => 'Paused', 1),
  'VM.unpause': powerChange('unpause', () => 'Running', 1),
  'VM.set_name_label': setter('name_label', (args) => stringArg(args, 1, 'value')),
  'VM.set_name_description': setter('name_description', (args) => stringArg(args, 1, 'value')),
  'VM.set_tags': setter('tags', (args) => [...new Set(stringListArg(args[1], 'value'))]),
  'VM.add_tags': method(
    2,
    ({ pool }, args) => {
      const vm = vmOf(pool, args[0]);
      const tag = stringArg(args, 1, 'value');
      if (!vm.fields.tags.includes(tag)) vm.fields.tags = [...vm.fields.tags, tag];
      return '';
    },
    { writes: true },
  ),
  'VM.remove_tags': method(
    2,
    ({ pool }, args) => {
      const vm = vmOf(pool, args[0]);
      const tag = stringArg(args, 1, 'value');
      vm.fields.tags = vm.fields.tags.filter((candidate) => candidate !== tag);
      return '';
    },
    { writes: true },
  ),
  ...mapMethods('other_config'),
  ...mapMethods('blocked_operations'),
  ...mapMethods('NVRAM'),
  ...mapMethods('platform'),
  ...mapMethods('xenstore_data'),
  ...mapMethods('HVM_boot_params'),
  ...mapMethods('VCPUs_params'),
};
