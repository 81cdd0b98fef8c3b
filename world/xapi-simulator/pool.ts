import { randomUUID } from 'node:crypto';
import { FaultRegistry } from './faults.ts';
import { SparseDisk } from './sparse-disk.ts';
import { XapiError } from './xapi-error.ts';

export const NULL_REF = 'OpaqueRef:NULL';
/** A current XCP-ng 8.3 host: qcow2 transfers, allocation of qcow2-backed VDIs read from their metadata. */
export const DEFAULT_XAPI_VERSION = '26.1.3';

/** Whether a dotted xapi version is at least `wanted` (`25.27.0`, `26.0`). */
export function xapiAtLeast(version: string, wanted: string): boolean {
  const have = version.split('.').map((part) => Number.parseInt(part, 10) || 0);
  const need = wanted.split('.').map((part) => Number.parseInt(part, 10) || 0);
  for (let i = 0; i < Math.max(have.length, need.length); i++) {
    const difference = (have[i] ?? 0) - (need[i] ?? 0);
    if (difference !== 0) return difference > 0;
  }
  return true;
}

export function newRef(): string {
  return `OpaqueRef:${randomUUID()}`;
}

export interface HostState {
  readonly uuid: string;
  readonly ref: string;
  readonly role: 'master' | 'member';
  readonly nameLabel: string;
  /** `127.0.0.1:<port>`: both hosts share the loopback address, so the port tells them apart. */
  address: string;
  /** `http://127.0.0.1:<port>` or `https://...`. */
  baseUrl: string;
  /** A host that is down resets every connection (sim.setHostDown). */
  down?: boolean;
}

export interface SrState {
  readonly uuid: string;
  readonly ref: string;
  nameLabel: string;
  readonly type: string;
  /** Shared SRs are seen by both hosts; a local SR only by `host`. */
  readonly shared: boolean;
  readonly host: HostState | undefined;
  readonly physicalSize: number;
  /** False models thick-provisioned SRs, which cannot take vhd imports ("prezeroed"). */
  readonly prezeroed: boolean;
  otherConfig: Record<string, string>;
  /** The PBD's `device-config:preferred-image-formats`: a new VDI takes the first (default: vhd). */
  readonly preferredImageFormats: readonly ImageFormat[];
}

/** What backs a VDI on the SR, shown in `sm_config["image-format"]` (docs/design.md § QCOW2 stream). */
export type ImageFormat = 'vhd' | 'qcow2' | 'raw';
/** The transfer formats a host may speak (`qcow2` from xapi 25.27.0). */
export type TransferFormat = 'vhd' | 'raw' | 'qcow2';

export interface VdiState {
  readonly uuid: string;
  readonly ref: string;
  readonly sr: SrState;
  nameLabel: string;
  nameDescription: string;
  type: string;
  sharable: boolean;
  readOnly: boolean;
  otherConfig: Record<string, string>;
  smConfig: Record<string, string>;
  xenstoreData: Record<string, string>;
  tags: string[];
  readonly isASnapshot: boolean;
  readonly snapshotOf: string;
  readonly snapshots: string[];
  readonly snapshotTime: Date | undefined;
  readonly disk: SparseDisk;
  readonly imageFormat: ImageFormat;
  /** Transfers currently holding the VDI (the real host attaches it: VDI.destroy says VDI_IN_USE). */
  activeTransfers: number;
}

export type TaskStatus = 'pending' | 'success' | 'failure' | 'cancelling' | 'cancelled';

export interface TaskState {
  readonly uuid: string;
  readonly ref: string;
  nameLabel: string;
  nameDescription: string;
  readonly created: Date;
  finished: Date | undefined;
  status: TaskStatus;
  progress: number;
  result: string;
  errorInfo: string[];
  otherConfig: Record<string, string>;
  readonly sessionRef: string;
  /** Set while a transfer runs under the task: task.cancel calls it. */
  cancel: (() => void) | undefined;
}

export interface SessionState {
  readonly ref: string;
  readonly uuid: string;
  readonly username: string;
  readonly readOnly: boolean;
  readonly originator: string;
  readonly lastActive: Date;
  readonly created: Date;
}

/** One export or import as the host saw it: counted where the bytes flow, not reported by the client. */
export interface TransferRecord {
  readonly direction: 'export' | 'import';
  readonly vdiUuid: string;
  /** For a snapshot: the uuid of the VDI it is a snapshot of (while that VDI exists). */
  readonly snapshotOfUuid: string | undefined;
  readonly format: TransferFormat;
  /** The `base` of a delta export (known once the export has read its query). */
  baseUuid: string | undefined;
  /** Body bytes written to (export) or read from (import) the connection. */
  bytes: number;
  outcome: 'running' | 'success' | 'failure';
  /** With recording on: the disk content the export read (a copy taken when it started). */
  exportedDisk?: SparseDisk;
  /** With recording on: the file holding the import body exactly as received. */
  bodyPath?: string;
}

/** Every session a login made, and how it ended: undefined while it is open. */
export interface SessionHistoryEntry {
  readonly ref: string;
  readonly username: string;
  readonly originator: string;
  readonly created: Date;
  ended: { readonly how: 'logout' | 'expired' | 'transfer'; readonly at: Date } | undefined;
}

/** A session that ended by expiry (never by logout): kept so tests can see what an expiry hit. */
export interface ExpiredSession {
  readonly ref: string;
  readonly username: string;
  readonly originator: string;
  readonly created: Date;
  readonly expiredAt: Date;
}

export interface UserAccount {
  readonly username: string;
  readonly password: string;
  /** Read-only role: may read, may not change anything or move disk data (403 on transfers). */
  readonly readOnly: boolean;
}

/** The whole pool's database, shared by both hosts' servers (sessions and tasks are pool-wide). */
export class PoolState {
  readonly poolUuid = randomUUID();
  readonly poolRef = newRef();
  readonly hosts: HostState[] = [];
  readonly srs = new Map<string, SrState>(); // by ref
  readonly vdis = new Map<string, VdiState>(); // by ref
  readonly tasks = new Map<string, TaskState>(); // by ref
  readonly sessions = new Map<string, SessionState>(); // by ref
  /** Every session an expiry ended, oldest first. */
  readonly expiredSessions: ExpiredSession[] = [];
  /** Every session ever created, oldest first, with how it ended (the live table forgets expired ones). */
  readonly sessionHistory = new Map<string, SessionHistoryEntry>(); // by ref, in creation order
  /** Successful `session.login_with_password` calls, and `session.logout` calls, since the start. */
  readonly sessionCounts = { logins: 0, logouts: 0 };
  /** Tasks a host made for a transfer the client gave no task_id for: the host removes them itself. */
  readonly hostTasks = new Set<string>();
  /** Every export and import since the start, oldest first. */
  readonly transfers: TransferRecord[] = [];
  /** When set, exports keep the content they read and import bodies are saved in this folder. */
  recordTransfersIn: string | undefined;

  /** Starts the record of a transfer the host has just answered 200 for. */
  recordTransfer(
    direction: TransferRecord['direction'],
    vdi: VdiState,
    format: TransferFormat,
  ): TransferRecord {
    const record: TransferRecord = {
      direction,
      vdiUuid: vdi.uuid,
      snapshotOfUuid: vdi.isASnapshot ? this.vdis.get(vdi.snapshotOf)?.uuid : undefined,
      format,
      baseUuid: undefined,
      bytes: 0,
      outcome: 'running',
    };
    this.transfers.push(record);
    return record;
  }
  readonly users: UserAccount[];
  readonly faults = new FaultRegistry();
  /** How long an export may stay blocked on a reader that does not read before it dies (VDI_IO_ERROR). */
  readerStallTimeoutMs: number;
  /** The hosts' xapi version (host.software_version.xapi): `format=qcow2` needs 25.27.0, "map" mode 26.0. */
  xapiVersion = DEFAULT_XAPI_VERSION;

  constructor(users: UserAccount[], readerStallTimeoutMs: number) {
    this.users = users;
    this.readerStallTimeoutMs = readerStallTimeoutMs;
  }

  get master(): HostState {
    return this.hosts.find((host) => host.role === 'master')!;
  }

  session(ref: unknown): SessionState {
    const session = typeof ref === 'string' ? this.sessions.get(ref) : undefined;
    if (session === undefined) throw new XapiError('SESSION_INVALID', [String(ref)]);
    return session;
  }

  vdi(ref: unknown): VdiState {
    const vdi = typeof ref === 'string' ? this.vdis.get(ref) : undefined;
    if (vdi === undefined) throw new XapiError('HANDLE_INVALID', ['VDI', String(ref)]);
    return vdi;
  }

  vdiByUuid(uuid: unknown): VdiState {
    for (const vdi of this.vdis.values()) if (vdi.uuid === uuid) return vdi;
    throw new XapiError('UUID_INVALID', ['VDI', String(uuid)]);
  }

  /** What the HTTP handlers accept in `vdi=` and `base=`: a ref or (as real xapi also does) a uuid. */
  vdiByRefOrUuid(text: string): VdiState {
    return text.startsWith('OpaqueRef:') ? this.vdi(text) : this.vdiByUuid(text);
  }

  sr(ref: unknown): SrState {
    const sr = typeof ref === 'string' ? this.srs.get(ref) : undefined;
    if (sr === undefined) throw new XapiError('HANDLE_INVALID', ['SR', String(ref)]);
    return sr;
  }

  srByUuid(uuid: unknown): SrState {
    for (const sr of this.srs.values()) if (sr.uuid === uuid) return sr;
    throw new XapiError('UUID_INVALID', ['SR', String(uuid)]);
  }

  task(ref: unknown): TaskState {
    const task = typeof ref === 'string' ? this.tasks.get(ref) : undefined;
    if (task === undefined) throw new XapiError('HANDLE_INVALID', ['task', String(ref)]);
    return task;
  }

  host(ref: unknown): HostState {
    const host = this.hosts.find((candidate) => candidate.ref === ref);
    if (host === undefined) throw new XapiError('HANDLE_INVALID', ['host', String(ref)]);
    return host;
  }

  /** The host that must serve transfers of a VDI: undefined when any host can (shared SR). */
  hostFor(sr: SrState): HostState | undefined {
    return sr.shared ? undefined : sr.host;
  }

  createSession(user: UserAccount, originator: string): SessionState {
    const session: SessionState = {
      ref: newRef(),
      uuid: randomUUID(),
      username: user.username,
      readOnly: user.readOnly,
      originator,
      lastActive: new Date(),
      created: new Date(),
    };
    this.sessions.set(session.ref, session);
    this.sessionHistory.set(session.ref, {
      ref: session.ref,
      username: session.username,
      originator,
      created: session.created,
      ended: undefined,
    });
    return session;
  }

  /** Removes a session from the live table and records how it ended. */
  endSession(ref: string, how: 'logout' | 'expired' | 'transfer', at = new Date()): void {
    this.sessions.delete(ref);
    const entry = this.sessionHistory.get(ref);
    if (entry !== undefined && entry.ended === undefined) entry.ended = { how, at };
  }

  /**
   * Every current session becomes invalid (SESSION_INVALID, 401 on transfers). They leave the live table
   * but are recorded, so a test can check that an expiry hit only the sessions it meant to (a session
   * some earlier run leaked would otherwise vanish with them). Returns how many expired.
   */
  expireSessions(): number {
    const now = new Date();
    for (const session of this.sessions.values()) {
      this.expiredSessions.push({
        ref: session.ref,
        username: session.username,
        originator: session.originator,
        created: session.created,
        expiredAt: now,
      });
    }
    const count = this.sessions.size;
    for (const ref of [...this.sessions.keys()]) this.endSession(ref, 'expired', now);
    return count;
  }

  createTask(sessionRef: string, nameLabel: string, nameDescription: string): TaskState {
    const task: TaskState = {
      uuid: randomUUID(),
      ref: newRef(),
      nameLabel,
      nameDescription,
      created: new Date(),
      finished: undefined,
      status: 'pending',
      progress: 0,
      result: '',
      errorInfo: [],
      otherConfig: {},
      sessionRef,
      cancel: undefined,
    };
    this.tasks.set(task.ref, task);
    return task;
  }

  /** Removes a VDI and its ref from its parent's snapshot list (its own snapshots keep a dangling snapshot_of). */
  removeVdi(vdi: VdiState): void {
    this.vdis.delete(vdi.ref);
    const parent = this.vdis.get(vdi.snapshotOf);
    if (parent !== undefined) {
      const at = parent.snapshots.indexOf(vdi.ref);
      if (at >= 0) parent.snapshots.splice(at, 1);
    }
  }
}

export function completeTask(task: TaskState, result: string): void {
  if (task.status !== 'pending' && task.status !== 'cancelling') return;
  task.status = 'success';
  task.progress = 1;
  task.result = result;
  task.finished = new Date();
  task.cancel = undefined;
}

export function failTask(task: TaskState, errorInfo: readonly string[]): void {
  if (task.status !== 'pending' && task.status !== 'cancelling') return;
  const cancelled = errorInfo[0] === 'TASK_CANCELLED';
  task.status = cancelled ? 'cancelled' : 'failure';
  task.progress = 1;
  task.errorInfo = [...errorInfo];
  task.finished = new Date();
  task.cancel = undefined;
}
