/** XAPI object references look like `OpaqueRef:<uuid>`. */
export type Ref = string;
export const NULL_REF: Ref = 'OpaqueRef:NULL';

/** The VDI fields we read; XAPI returns more. Sizes arrive as numbers over JSON-RPC. */
export interface VdiRecord {
  readonly uuid: string;
  readonly name_label: string;
  readonly name_description?: string;
  readonly SR: Ref;
  readonly virtual_size: number;
  readonly physical_utilisation: number;
  readonly type: string;
  readonly sharable: boolean;
  readonly read_only: boolean;
  readonly other_config: Record<string, string>;
  readonly sm_config?: Record<string, string>;
  readonly is_a_snapshot: boolean;
  readonly snapshot_of: Ref;
  readonly snapshots: readonly Ref[];
  readonly snapshot_time: string;
  readonly cbt_enabled?: boolean;
  readonly tags?: readonly string[];
}

export type TaskStatus = 'pending' | 'success' | 'failure' | 'cancelling' | 'cancelled';

export interface TaskRecord {
  readonly uuid: string;
  readonly name_label: string;
  readonly status: TaskStatus;
  readonly progress: number;
  readonly result: string;
  readonly error_info: readonly string[];
}

export interface SrRecord {
  readonly uuid: string;
  readonly name_label: string;
  readonly type: string;
  readonly shared: boolean;
}

/** What `VDI.create` needs (XAPI rejects a record missing any of these). */
export interface VdiCreateRecord {
  readonly name_label: string;
  readonly name_description: string;
  readonly SR: Ref;
  readonly virtual_size: number;
  readonly type: 'user' | 'system';
  readonly sharable: boolean;
  readonly read_only: boolean;
  readonly other_config: Record<string, string>;
  readonly xenstore_data?: Record<string, string>;
  readonly sm_config?: Record<string, string>;
  readonly tags?: readonly string[];
}

export type VmPowerState = 'Halted' | 'Paused' | 'Running' | 'Suspended';

/** The VM fields we read to select a VM and to recreate it (datamodel_vm.ml); XAPI returns more. */
export interface VmRecord {
  readonly uuid: string;
  readonly name_label: string;
  readonly name_description: string;
  readonly power_state: VmPowerState;
  readonly is_a_template: boolean;
  readonly is_a_snapshot: boolean;
  readonly is_control_domain: boolean;
  readonly snapshot_of: Ref;
  readonly tags: readonly string[];
  readonly other_config: Record<string, string>;
  readonly user_version: number;
  readonly memory_static_max: number;
  readonly memory_dynamic_max: number;
  readonly memory_dynamic_min: number;
  readonly memory_static_min: number;
  readonly VCPUs_max: number;
  readonly VCPUs_at_startup: number;
  readonly VCPUs_params: Record<string, string>;
  readonly actions_after_shutdown: string;
  readonly actions_after_reboot: string;
  readonly actions_after_crash: string;
  readonly PV_bootloader: string;
  readonly PV_kernel: string;
  readonly PV_ramdisk: string;
  readonly PV_args: string;
  readonly PV_bootloader_args: string;
  readonly PV_legacy_args: string;
  readonly HVM_boot_policy: string;
  readonly HVM_boot_params: Record<string, string>;
  readonly HVM_shadow_multiplier?: number;
  readonly platform: Record<string, string>;
  readonly PCI_bus?: string;
  readonly recommendations: string;
  readonly domain_type?: string;
  readonly has_vendor_device?: boolean;
  readonly NVRAM?: Record<string, string>;
  readonly blocked_operations: Record<string, string>;
  readonly VBDs: readonly Ref[];
  readonly VIFs: readonly Ref[];
  readonly VTPMs?: readonly Ref[];
  readonly snapshots: readonly Ref[];
}

export interface VbdRecord {
  readonly uuid: string;
  readonly VM: Ref;
  readonly VDI: Ref;
  readonly userdevice: string;
  readonly bootable: boolean;
  readonly mode: 'RO' | 'RW';
  readonly type: 'Disk' | 'CD' | 'Floppy';
  readonly empty: boolean;
  readonly unpluggable: boolean;
  readonly other_config: Record<string, string>;
}

export interface VifRecord {
  readonly uuid: string;
  readonly VM: Ref;
  readonly network: Ref;
  readonly device: string;
  readonly MAC: string;
  readonly MTU: number;
  readonly other_config: Record<string, string>;
  readonly locking_mode?: string;
}

export interface NetworkRecord {
  readonly uuid: string;
  readonly name_label: string;
  readonly bridge: string;
  readonly MTU: number;
  readonly PIFs: readonly Ref[];
}

export interface PifRecord {
  readonly uuid: string;
  readonly network: Ref;
  readonly device: string;
  /** -1 for an untagged PIF. */
  readonly VLAN: number;
}

export interface VtpmRecord {
  readonly uuid: string;
  readonly VM: Ref;
  readonly is_unique: boolean;
  readonly is_protected?: boolean;
}
