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
