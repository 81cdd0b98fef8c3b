import { NULL_REF } from './pool.ts';
import type { HostState, PoolState, SessionState, SrState, TaskState, VdiState } from './pool.ts';
import { XapiDateTime, XapiFloat } from './rpc-values.ts';
import type { XapiValue } from './rpc-values.ts';
import { BLOCK_SIZE } from './sparse-disk.ts';
import { vbdsOfVdi, vmTables } from './vm-state.ts';

type XapiRecord = Record<string, XapiValue>;

/** Host API version this pool claims (XCP-ng 8.3 / XenServer 8 report 2.21). */
export const API_VERSION = { major: 2, minor: 21 };

/** Field names as real xapi spells them (snake_case, `SR`, ints for sizes, string maps). */
export function vdiRecord(pool: PoolState, vdi: VdiState): XapiRecord {
  const allocated = vdi.disk.allocatedIndexes().length;
  return {
    uuid: vdi.uuid,
    name_label: vdi.nameLabel,
    name_description: vdi.nameDescription,
    allowed_operations: vdi.isASnapshot
      ? ['clone', 'copy', 'destroy', 'forget', 'generate_config', 'update']
      : ['clone', 'copy', 'destroy', 'forget', 'generate_config', 'mirror', 'resize', 'snapshot', 'update'],
    current_operations: {},
    SR: vdi.sr.ref,
    VBDs: vbdsOfVdi(pool, vdi.ref).map((vbd) => vbd.ref),
    crash_dumps: [],
    virtual_size: vdi.disk.virtualSize,
    physical_utilisation: allocated * (BLOCK_SIZE + 512),
    type: vdi.type,
    sharable: vdi.sharable,
    read_only: vdi.readOnly,
    other_config: { ...vdi.otherConfig },
    storage_lock: false,
    location: vdi.uuid,
    managed: true,
    missing: false,
    parent: NULL_REF,
    xenstore_data: { ...vdi.xenstoreData },
    sm_config: { ...vdi.smConfig },
    is_a_snapshot: vdi.isASnapshot,
    snapshot_of: vdi.snapshotOf,
    snapshots: [...vdi.snapshots].filter((ref) => pool.vdis.has(ref)),
    snapshot_time: new XapiDateTime(vdi.snapshotTime),
    tags: [...vdi.tags],
    allow_caching: false,
    on_boot: 'persist',
    metadata_of_pool: NULL_REF,
    metadata_latest: false,
    is_tools_iso: false,
    cbt_enabled: false,
  };
}

export function srRecord(pool: PoolState, sr: SrState): XapiRecord {
  const vdis = [...pool.vdis.values()].filter((vdi) => vdi.sr === sr);
  const allocation = vdis.reduce((sum, vdi) => sum + vdi.disk.virtualSize, 0);
  const utilisation = vdis.reduce((sum, vdi) => sum + vdi.disk.allocatedIndexes().length * BLOCK_SIZE, 0);
  return {
    uuid: sr.uuid,
    name_label: sr.nameLabel,
    name_description: '',
    allowed_operations: ['vdi_create', 'vdi_destroy', 'vdi_snapshot', 'vdi_clone', 'scan', 'update'],
    current_operations: {},
    VDIs: vdis.map((vdi) => vdi.ref),
    PBDs: [],
    virtual_allocation: allocation,
    physical_utilisation: utilisation,
    physical_size: sr.physicalSize,
    type: sr.type,
    content_type: 'user',
    shared: sr.shared,
    other_config: { ...sr.otherConfig },
    tags: [],
    sm_config: { devserial: '' },
    blobs: {},
    local_cache_enabled: false,
    introduced_by: NULL_REF,
    clustered: false,
    is_tools_sr: false,
  };
}

export function taskRecord(pool: PoolState, task: TaskState): XapiRecord {
  return {
    uuid: task.uuid,
    name_label: task.nameLabel,
    name_description: task.nameDescription,
    allowed_operations: task.status === 'pending' ? ['cancel'] : [],
    current_operations: {},
    created: new XapiDateTime(task.created),
    finished: new XapiDateTime(task.finished),
    status: task.status,
    resident_on: pool.master.ref,
    progress: new XapiFloat(task.progress),
    type: '',
    result: task.result,
    error_info: [...task.errorInfo],
    other_config: { ...task.otherConfig },
    subtask_of: NULL_REF,
    subtasks: [],
    backtrace: '()',
  };
}

export function hostRecord(pool: PoolState, host: HostState): XapiRecord {
  return {
    uuid: host.uuid,
    name_label: host.nameLabel,
    name_description: 'XAPI simulator host',
    allowed_operations: [],
    current_operations: {},
    API_version_major: API_VERSION.major,
    API_version_minor: API_VERSION.minor,
    API_version_vendor: 'XenSource',
    API_version_vendor_implementation: {},
    enabled: true,
    software_version: {
      product_brand: 'XCP-ng',
      product_version: '8.3.0',
      xapi: pool.xapiVersion,
      xen: '4.17.5',
      platform_name: 'XCP',
      hostname: host.nameLabel,
    },
    other_config: {},
    capabilities: [],
    cpu_configuration: {},
    sched_policy: 'credit',
    supported_bootloaders: ['pygrub', 'eliloader'],
    resident_VMs: [...vmTables(pool).vms.values()]
      .filter((vm) => vm.fields.resident_on === host.ref)
      .map((vm) => vm.ref),
    logging: {},
    PIFs: [...vmTables(pool).pifs.values()].filter((pif) => pif.host === host.ref).map((pif) => pif.ref),
    suspend_image_sr: NULL_REF,
    crash_dump_sr: NULL_REF,
    crashdumps: [],
    patches: [],
    updates: [],
    PBDs: [],
    host_CPUs: [],
    cpu_info: {},
    hostname: host.nameLabel,
    address: host.address,
    metrics: NULL_REF,
    license_params: {},
    ha_statefiles: [],
    ha_network_peers: [],
    blobs: {},
    tags: [],
    external_auth_type: '',
    external_auth_service_name: '',
    external_auth_configuration: {},
    edition: 'xcp-ng',
    license_server: {},
    bios_strings: {},
    power_on_mode: '',
    power_on_config: {},
    local_cache_sr: NULL_REF,
    chipset_info: {},
    PCIs: [],
    PGPUs: [],
    PUSBs: [],
    ssl_legacy: false,
    guest_VCPUs_params: {},
    display: 'enabled',
    virtual_hardware_platform_versions: [0, 1, 2],
    control_domain:
      [...vmTables(pool).vms.values()].find(
        (vm) => vm.fields.is_control_domain && vm.fields.resident_on === host.ref,
      )?.ref ?? NULL_REF,
    updates_requiring_reboot: [],
    features: [],
    iscsi_iqn: '',
    multipathing: false,
    uefi_certificates: '',
    certificates: [],
    editions: ['xcp-ng'],
  };
}

export function poolRecord(pool: PoolState): XapiRecord {
  const defaultSr = [...pool.srs.values()].find((sr) => sr.shared);
  return {
    uuid: pool.poolUuid,
    name_label: 'vdi-vault simulated pool',
    name_description: '',
    master: pool.master.ref,
    default_SR: defaultSr?.ref ?? NULL_REF,
    suspend_image_SR: NULL_REF,
    crash_dump_SR: NULL_REF,
    other_config: {},
    ha_enabled: false,
    ha_configuration: {},
    ha_statefiles: [],
    ha_host_failures_to_tolerate: 0,
    ha_plan_exists_for: 0,
    ha_allow_overcommit: false,
    ha_overcommitted: false,
    blobs: {},
    tags: [],
    gui_config: {},
    health_check_config: {},
    wlb_url: '',
    wlb_username: '',
    wlb_enabled: false,
    wlb_verify_cert: false,
    redo_log_enabled: false,
    redo_log_vdi: NULL_REF,
    vswitch_controller: '',
    // XCP-ng 8.3 leaves vTPMs unrestricted (VTPM.create checks restrict_vtpm).
    restrictions: { restrict_vtpm: 'false' },
    metadata_VDIs: [],
    ha_cluster_stack: 'xhad',
    allowed_operations: [],
    current_operations: {},
    guest_agent_config: {},
    cpu_info: {},
    policy_no_vendor_device: false,
    live_patching_disabled: false,
    igmp_snooping_enabled: false,
  };
}

export function sessionRecord(pool: PoolState, session: SessionState): XapiRecord {
  return {
    uuid: session.uuid,
    this_host: pool.master.ref,
    this_user: NULL_REF,
    last_active: new XapiDateTime(session.lastActive),
    pool: false,
    other_config: {},
    is_local_superuser: !session.readOnly,
    subject: NULL_REF,
    validation_time: new XapiDateTime(session.lastActive),
    auth_user_sid: '',
    auth_user_name: session.username,
    rbac_permissions: [],
    tasks: [...pool.tasks.values()].filter((task) => task.sessionRef === session.ref).map((task) => task.ref),
    parent: NULL_REF,
    originator: session.originator,
  };
}
