/**
 * Whether a VM operation may run, in the order xapi's Xapi_vm_lifecycle.check_operation_error checks:
 * blocked_operations, then the power state, then the template, snapshot and control-domain rules.
 * The first failing check is the error (none of these checks needs guest metrics: the simulated guests
 * all have PV drivers).
 */
import type { PoolState } from './pool.ts';
import { powerStateText } from './vm-state.ts';
import type { PowerState, VmState } from './vm-state.ts';
import { XapiError } from './xapi-error.ts';

const ALL: readonly PowerState[] = ['Halted', 'Paused', 'Suspended', 'Running'];

/** allowed_power_states, for the operations the simulator has a use for. */
function allowedPowerStates(vm: VmState, op: string): readonly PowerState[] {
  switch (op) {
    case 'changing_VCPUs':
    case 'changing_static_range':
    case 'changing_memory_limits':
      return vm.fields.is_control_domain ? ['Halted', 'Running'] : ['Halted'];
    case 'changing_shadow_memory':
    case 'make_into_template':
    case 'provision':
    case 'start':
    case 'start_on':
      return ['Halted'];
    case 'unpause':
      return ['Paused'];
    case 'csvm':
    case 'resume':
    case 'resume_on':
      return ['Suspended'];
    case 'awaiting_memory_live':
    case 'call_plugin':
    case 'clean_reboot':
    case 'clean_shutdown':
    case 'changing_memory_live':
    case 'changing_shadow_memory_live':
    case 'changing_VCPUs_live':
    case 'data_source_op':
    case 'pause':
    case 'pool_migrate':
    case 'send_sysrq':
    case 'send_trigger':
    case 'snapshot_with_quiesce':
    case 'suspend':
      return ['Running'];
    case 'changing_dynamic_range':
      return ['Halted', 'Running'];
    case 'clone':
    case 'copy':
      return vm.fields.is_a_snapshot ? ['Halted', 'Suspended'] : ['Halted'];
    case 'create_template':
    case 'destroy':
    case 'export':
      return ['Halted', 'Suspended'];
    case 'hard_reboot':
      return ['Paused', 'Running'];
    case 'checkpoint':
    case 'get_boot_record':
    case 'shutdown':
    case 'hard_shutdown':
      return ['Paused', 'Suspended', 'Running'];
    case 'migrate_send':
      return ['Halted', 'Suspended', 'Running'];
    default:
      // snapshot, revert, metadata_export, query_services, ...: any power state.
      return ALL;
  }
}

const TEMPLATE_OPERATIONS = new Set([
  'changing_dynamic_range',
  'changing_static_range',
  'changing_memory_limits',
  'changing_shadow_memory',
  'changing_VCPUs',
  'clone',
  'copy',
  'export',
  'metadata_export',
  'provision',
]);

const SNAPSHOT_OPERATIONS = new Set([
  'revert',
  'clone',
  'copy',
  'export',
  'destroy',
  'hard_shutdown',
  'metadata_export',
]);

const CONTROL_DOMAIN_OPERATIONS = new Set([
  'data_source_op',
  'changing_memory_live',
  'awaiting_memory_live',
  'metadata_export',
  'changing_dynamic_range',
  'changing_memory_limits',
  'changing_static_range',
  'start',
  'start_on',
  'changing_VCPUs',
  'destroy',
]);

/** The error an operation would meet, or undefined when it may run. */
export function vmOperationError(pool: PoolState, vm: VmState, op: string): XapiError | undefined {
  const { fields } = vm;
  if (Object.hasOwn(fields.blocked_operations, op)) {
    return new XapiError('OPERATION_BLOCKED', [vm.ref, fields.blocked_operations[op]]);
  }
  const allowed = allowedPowerStates(vm, op);
  if (!allowed.includes(fields.power_state)) {
    return new XapiError('VM_BAD_POWER_STATE', [
      vm.ref,
      allowed.map(powerStateText).join(', '),
      powerStateText(fields.power_state),
    ]);
  }
  if (fields.is_a_template && !fields.is_a_snapshot) {
    const defaultTemplate = fields.is_default_template || fields.other_config.default_template === 'true';
    const ok =
      TEMPLATE_OPERATIONS.has(op) || ((op === 'destroy' || op === 'migrate_send') && !defaultTemplate);
    if (!ok) return new XapiError('VM_IS_TEMPLATE', [vm.ref, op]);
  }
  if (fields.is_a_snapshot && !SNAPSHOT_OPERATIONS.has(op)) {
    return new XapiError('VM_IS_SNAPSHOT', [vm.ref, op]);
  }
  if (op === 'provision' && !fields.is_a_template) return new XapiError('ONLY_PROVISION_TEMPLATE', []);
  if (op === 'revert' && !fields.is_a_snapshot) return new XapiError('ONLY_REVERT_SNAPSHOT', []);
  if (fields.is_control_domain) {
    const isDom0 = fields.domid === 0 || pool.hosts.some((host) => host.ref === fields.resident_on);
    if ((op === 'changing_VCPUs' || op === 'destroy') && isDom0) {
      return new XapiError('OPERATION_NOT_ALLOWED', ['This operation is not allowed on dom0']);
    }
    if (!CONTROL_DOMAIN_OPERATIONS.has(op)) {
      return new XapiError('OPERATION_NOT_ALLOWED', ['This operation is not allowed on a control domain']);
    }
  }
  return undefined;
}

export function assertVmOperation(pool: PoolState, vm: VmState, op: string): void {
  const error = vmOperationError(pool, vm, op);
  if (error !== undefined) throw error;
}

/** The operations update_allowed_operations offers, in its order. */
const LISTED_OPERATIONS = [
  'snapshot',
  'copy',
  'clone',
  'revert',
  'checkpoint',
  'snapshot_with_quiesce',
  'start',
  'start_on',
  'pause',
  'unpause',
  'clean_shutdown',
  'clean_reboot',
  'hard_shutdown',
  'hard_reboot',
  'suspend',
  'resume',
  'resume_on',
  'export',
  'destroy',
  'provision',
  'changing_VCPUs_live',
  'pool_migrate',
  'migrate_send',
  'make_into_template',
  'changing_static_range',
  'changing_shadow_memory',
  'changing_dynamic_range',
];

export function vmAllowedOperations(pool: PoolState, vm: VmState): string[] {
  // xapi folds the list into an accumulator, so the field lists them last first.
  return LISTED_OPERATIONS.filter((op) => vmOperationError(pool, vm, op) === undefined).reverse();
}
