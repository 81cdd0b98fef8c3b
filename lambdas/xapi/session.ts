import { DEFAULT_EXPORT_TASK_TIMEOUT_MS, DEFAULT_XAPI_CALL_TIMEOUT_MS } from '../runtime/defaults.ts';
import type { Agent } from './undici-parts.ts';
import { silentLog, type Log } from '../shared/log.ts';
import { isXapiError, XapiError } from './errors.ts';
import { callJsonRpc } from './json-rpc.ts';
import type {
  NetworkRecord,
  PifRecord,
  Ref,
  SrRecord,
  TaskRecord,
  VbdRecord,
  VdiCreateRecord,
  VdiRecord,
  VifRecord,
  VmRecord,
  VtpmRecord,
} from './records.ts';
import { createXapiAgent, type XapiTlsOptions } from './tls.ts';

export interface XapiConnectionOptions {
  /** The pool master's URL, e.g. `https://xcp-master.example`. A member URL works too (we follow HOST_IS_SLAVE). */
  readonly url: string;
  /** Default: verify against the system's CA store. */
  readonly tls?: XapiTlsOptions;
  /** Per-call timeout in milliseconds. Default 30 000. */
  readonly timeoutMs?: number;
  /** Default: silent. */
  readonly log?: Log;
}

export interface XapiCredentials {
  readonly username: string;
  readonly password: string;
}

/** What a later step needs to pick a session up again (it crosses Step Functions states). */
export interface XapiSessionHandle {
  readonly masterUrl: string;
  readonly sessionRef: Ref;
}

const ORIGINATOR = 'vdi-vault';

/** A logged-in XAPI session with typed calls for what vdi-vault uses. */
export class XapiSession {
  readonly masterUrl: string;
  readonly sessionRef: Ref;
  readonly agent: Agent;
  readonly timeoutMs: number;
  readonly log: Log;

  private constructor(masterUrl: string, sessionRef: Ref, agent: Agent, timeoutMs: number, log: Log) {
    this.masterUrl = masterUrl;
    this.sessionRef = sessionRef;
    this.agent = agent;
    this.timeoutMs = timeoutMs;
    this.log = log;
  }

  /** Logs in, following `HOST_IS_SLAVE` to the master (at most twice). */
  static async login(options: XapiConnectionOptions, credentials: XapiCredentials): Promise<XapiSession> {
    const log = options.log ?? silentLog;
    const timeoutMs = options.timeoutMs ?? DEFAULT_XAPI_CALL_TIMEOUT_MS;
    const agent = createXapiAgent(options.tls ?? {}, log);
    let url = options.url;
    try {
      for (let hop = 0; ; hop++) {
        try {
          const ref = await callJsonRpc<Ref>(
            { url, dispatcher: agent, timeoutMs },
            'session.login_with_password',
            [credentials.username, credentials.password, '1.0', ORIGINATOR],
          );
          log.info('logged in to XAPI', { host: url });
          return new XapiSession(url, ref, agent, timeoutMs, log);
        } catch (error) {
          if (!isXapiError(error, 'HOST_IS_SLAVE') || hop >= 2) throw error;
          const master = error.params[0];
          if (!master) throw error;
          log.info('host is a pool member; logging in to the master', { member: url, master });
          url = masterUrlFrom(url, master);
        }
      }
    } catch (error) {
      await agent.close();
      throw error;
    }
  }

  /** Picks up a session another step logged in. */
  static resume(options: XapiConnectionOptions, handle: XapiSessionHandle): XapiSession {
    const log = options.log ?? silentLog;
    const agent = createXapiAgent(options.tls ?? {}, log);
    return new XapiSession(
      handle.masterUrl,
      handle.sessionRef,
      agent,
      options.timeoutMs ?? DEFAULT_XAPI_CALL_TIMEOUT_MS,
      log,
    );
  }

  get handle(): XapiSessionHandle {
    return { masterUrl: this.masterUrl, sessionRef: this.sessionRef };
  }

  call<T>(method: string, ...params: readonly unknown[]): Promise<T> {
    return callJsonRpc<T>(
      { url: this.masterUrl, dispatcher: this.agent, timeoutMs: this.timeoutMs },
      method,
      [this.sessionRef, ...params],
    );
  }

  getVdiByUuid(uuid: string): Promise<Ref> {
    return this.call('VDI.get_by_uuid', uuid);
  }
  getVdiRecord(ref: Ref): Promise<VdiRecord> {
    return this.call('VDI.get_record', ref);
  }
  getAllVdiRecords(): Promise<Record<Ref, VdiRecord>> {
    return this.call('VDI.get_all_records');
  }
  snapshotVdi(ref: Ref, driverParams: Record<string, string> = {}): Promise<Ref> {
    return this.call('VDI.snapshot', ref, driverParams);
  }
  createVdi(record: VdiCreateRecord): Promise<Ref> {
    return this.call('VDI.create', record);
  }
  addToVdiOtherConfig(ref: Ref, key: string, value: string): Promise<void> {
    return this.call('VDI.add_to_other_config', ref, key, value);
  }
  removeFromVdiOtherConfig(ref: Ref, key: string): Promise<void> {
    return this.call('VDI.remove_from_other_config', ref, key);
  }
  /** `software_version.xapi` of the pool master (e.g. `25.27.0`): which transfer formats the pool knows. */
  async getMasterXapiVersion(): Promise<string | undefined> {
    const [poolRef] = await this.call<Ref[]>('pool.get_all');
    if (poolRef === undefined) return undefined;
    const master = await this.call<Ref>('pool.get_master', poolRef);
    const version = await this.call<Record<string, string>>('host.get_software_version', master);
    return version.xapi;
  }
  getVmByUuid(uuid: string): Promise<Ref> {
    return this.call('VM.get_by_uuid', uuid);
  }
  getVmRecord(ref: Ref): Promise<VmRecord> {
    return this.call('VM.get_record', ref);
  }
  getAllVmRecords(): Promise<Record<Ref, VmRecord>> {
    return this.call('VM.get_all_records');
  }
  /** Snapshots every disk of the VM at once, except `ignoreVdis`; returns the snapshot VM. */
  snapshotVm(ref: Ref, newName: string, ignoreVdis: readonly Ref[] = []): Promise<Ref> {
    return this.call('VM.snapshot', ref, newName, ignoreVdis);
  }
  addToVmOtherConfig(ref: Ref, key: string, value: string): Promise<void> {
    return this.call('VM.add_to_other_config', ref, key, value);
  }
  /** `VM.create`: every field datamodel_vm.ml requires must be in `record` (the host names a missing one). */
  createVm(record: Record<string, unknown>): Promise<Ref> {
    return this.call('VM.create', record);
  }
  setVmNameLabel(ref: Ref, value: string): Promise<void> {
    return this.call('VM.set_name_label', ref, value);
  }
  /** UEFI variables (`EFI-variables`, base64), as `VM.set_NVRAM` takes them. */
  setVmNvram(ref: Ref, value: Record<string, string>): Promise<void> {
    return this.call('VM.set_NVRAM', ref, value);
  }
  setVmBlockedOperations(ref: Ref, value: Record<string, string>): Promise<void> {
    return this.call('VM.set_blocked_operations', ref, value);
  }
  setVmOtherConfig(ref: Ref, value: Record<string, string>): Promise<void> {
    return this.call('VM.set_other_config', ref, value);
  }
  createVbd(record: Record<string, unknown>): Promise<Ref> {
    return this.call('VBD.create', record);
  }
  createVif(record: Record<string, unknown>): Promise<Ref> {
    return this.call('VIF.create', record);
  }
  getAllNetworkRecords(): Promise<Record<Ref, NetworkRecord>> {
    return this.call('network.get_all_records');
  }
  /** `VTPM.create(vM, is_unique)`: not a record. */
  createVtpm(vmRef: Ref, isUnique: boolean): Promise<Ref> {
    return this.call('VTPM.create', vmRef, isUnique);
  }
  /** Writes a vTPM's state (base64); like reading it, only the pool's local root account may. */
  setVtpmContents(ref: Ref, contents: string): Promise<void> {
    return this.call('VTPM.set_contents', ref, contents);
  }
  /** Destroys a VM record with its VBDs and VIFs; its VDIs stay. */
  destroyVm(ref: Ref): Promise<void> {
    return this.call('VM.destroy', ref);
  }
  getVbdRecord(ref: Ref): Promise<VbdRecord> {
    return this.call('VBD.get_record', ref);
  }
  getVifRecord(ref: Ref): Promise<VifRecord> {
    return this.call('VIF.get_record', ref);
  }
  getNetworkRecord(ref: Ref): Promise<NetworkRecord> {
    return this.call('network.get_record', ref);
  }
  getPifRecord(ref: Ref): Promise<PifRecord> {
    return this.call('PIF.get_record', ref);
  }
  getVtpmRecord(ref: Ref): Promise<VtpmRecord> {
    return this.call('VTPM.get_record', ref);
  }
  /** A vTPM's state (base64); xapi lets only the pool's local root account read it. */
  getVtpmContents(ref: Ref): Promise<string> {
    return this.call('VTPM.get_contents', ref);
  }
  getSrByUuid(uuid: string): Promise<Ref> {
    return this.call('SR.get_by_uuid', uuid);
  }
  getSrRecord(ref: Ref): Promise<SrRecord> {
    return this.call('SR.get_record', ref);
  }

  /**
   * Destroys a VDI. `VDI_IN_USE` is transient while a transfer or a tapdisk still holds it, so it is retried
   * with backoff; an already-gone VDI counts as destroyed.
   */
  async destroyVdi(ref: Ref, attempts = 6, firstDelayMs = 500): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.call('VDI.destroy', ref);
        return;
      } catch (error) {
        if (isXapiError(error, 'HANDLE_INVALID')) return;
        if (!isXapiError(error, 'VDI_IN_USE') || attempt >= attempts) throw error;
        await sleep(firstDelayMs * 2 ** (attempt - 1));
      }
    }
  }

  createTask(label: string, description = ''): Promise<Ref> {
    return this.call('task.create', label, description);
  }
  getTaskRecord(ref: Ref): Promise<TaskRecord> {
    return this.call('task.get_record', ref);
  }
  cancelTask(ref: Ref): Promise<void> {
    return this.call('task.cancel', ref);
  }
  /** Destroys a task we created; an already-gone task counts as destroyed. */
  async destroyTask(ref: Ref): Promise<void> {
    try {
      await this.call('task.destroy', ref);
    } catch (error) {
      if (!isXapiError(error, 'HANDLE_INVALID')) throw error;
    }
  }

  /** Polls until the task leaves `pending`. Raises if it does not within `timeoutMs`. */
  async awaitTask(ref: Ref, timeoutMs = DEFAULT_EXPORT_TASK_TIMEOUT_MS, pollMs = 100): Promise<TaskRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const task = await this.getTaskRecord(ref);
      if (task.status !== 'pending' && task.status !== 'cancelling') return task;
      if (Date.now() > deadline) {
        throw new XapiError('task.get_record', 'TASK_STILL_PENDING', [ref, String(timeoutMs)]);
      }
      await sleep(pollMs);
    }
  }

  /** Logs out (an already-invalid session counts as logged out) and releases connections. */
  async logout(): Promise<void> {
    try {
      await this.call('session.logout');
    } catch (error) {
      if (!isXapiError(error, 'SESSION_INVALID')) throw error;
    } finally {
      await this.close();
    }
  }

  /** Releases connections without logging out (the session lives on for a later step). */
  async close(): Promise<void> {
    if (this.agent.closed || this.agent.destroyed) return;
    await this.agent.close();
  }
}

/** Builds the master's URL from a member URL and the address XAPI reported (`ip` or `ip:port`). */
export function masterUrlFrom(memberUrl: string, masterAddress: string): string {
  const url = new URL(memberUrl);
  const withPort = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(masterAddress);
  if (withPort) {
    url.hostname = withPort[1]!;
    url.port = withPort[2]!;
  } else {
    url.hostname = masterAddress.includes(':') ? `[${masterAddress}]` : masterAddress;
  }
  return url.origin;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A task that ended other than `success`, as an error carrying the host's code and params. */
export function taskFailure(task: TaskRecord, method = 'task'): XapiError {
  const [code, ...params] = task.error_info.length ? task.error_info : [task.status.toUpperCase()];
  return new XapiError(method, code ?? 'TASK_FAILED', params);
}
