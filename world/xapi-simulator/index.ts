/**
 * XAPI simulator: a real HTTP/HTTPS server on loopback standing in for a two-host Xen pool
 * (docs/design.md § XAPI: calls, sessions and tasks, and § XAPI: disk transfers over HTTP).
 *
 *   const sim = await startXapiSimulator({ tls: true });
 *   sim.url / sim.memberUrl          master / member base URLs (`http(s)://127.0.0.1:<port>`)
 *   sim.username / sim.password      pool admin; sim.readOnlyUsername / readOnlyPassword: read-only role
 *                                    (its RPC writes fail RBAC_PERMISSION_DENIED, its transfers get 403)
 *   sim.caPem                        the self-signed certificate to trust (undefined without tls)
 *   sim.srs                          { shared, masterLocal, memberLocal }: { uuid, ref } each
 *   sim.addSr({ nameLabel?, type?, shared?, onMember?, prezeroed?, preferredImageFormats? })    → { uuid, ref }
 *       preferredImageFormats: the PBD's device-config:preferred-image-formats, e.g. ['qcow2']: a VDI made
 *       on the SR without an image-format (addVdi or VDI.create) takes the first.
 *   sim.addVdi({ virtualSize, nameLabel?, nameDescription?, onMember?, srUuid?, populate?, seed?,
 *                otherConfig?, tags?, imageFormat? })                              → { uuid, ref, srUuid }
 *       imageFormat: 'vhd' | 'qcow2' | 'raw', in sm_config["image-format"]; default the SR's preference, or
 *       qcow2 over 2040 GiB (MAX_VHD_SIZE) as XCP-ng creates them; up to 16,381 GiB on a real host (MAX_QCOW2_SIZE).
 *       VDI.create takes it from sm_config["image-format"] the same way; snapshots inherit it.
 *       populate: 'none' (default) | 'scattered' (about a third of the blocks, some half-filled, plus the
 *       first and last) | 'generated' (every block). Both generate content from (seed, block) on demand,
 *       so a huge disk costs no memory; writes store real bytes. onMember: on the member's local SR, so
 *       the master answers its transfers with 302 to the member.
 *   sim.writeDisk(uuid, offset, bytes) / readDisk(uuid, offset, length) / diskSha256(uuid)
 *   sim.sparseSha256(uuid)           a content hash costing only the allocated blocks (equal content, equal
 *                                    hash; not the raw image's sha256): for disks of terabytes
 *   sim.allocatedBlocks(uuid)        ascending indexes of allocated 2 MiB blocks
 *   sim.allocatedClusters(uuid)      ascending indexes of the 64 KiB clusters a qcow2 image of the VDI has
 *                                    allocated (written at least once; a pattern block: its filled part)
 *   sim.xapiVersion / setXapiVersion(v)  host.software_version.xapi (option `xapiVersion`, default
 *                                    DEFAULT_XAPI_VERSION 26.1.3). Below 25.27.0 `format=qcow2` is unknown
 *                                    (HTTP/1.0 404, task INTERNAL_ERROR ["Unknown format qcow2"]); from 26.0
 *                                    a qcow2-backed VDI's qcow2 export takes allocation from its metadata
 *                                    ("map": allocated clusters go even when zero, a delta the clusters
 *                                    written since the base), else "scan" (all-zero clusters skipped, a
 *                                    delta the clusters whose bytes differ). docs/design.md § QCOW2 stream
 *   sim.snapshotVdi(uuid)            VDI.snapshot behind the client's back       → { uuid, ref }
 *   sim.snapshotsOf(uuid)            VDI records (each with `ref`) of the VDI's snapshots
 *   sim.vdiRecord(uuid)              the VDI's record (with `ref`), or undefined once destroyed
 *   sim.deleteVdi(uuid)              removes a VDI (someone deleting a snapshot behind our back); as VDI.destroy:
 *                                    VDI_IN_USE while a transfer holds it or a running VM has it attached, and
 *                                    the VBDs of halted VMs that use it go with it
 *   sim.openTasks()                  task records (with `ref`) clients created and have not destroyed
 *   sim.openSessions()               [{ ref, username, originator }]
 *   sim.expireSessions()             every current session becomes SESSION_INVALID (→ how many); or, counted
 *                                    where the bytes flow, the fault `{kind: 'expire-sessions', afterBytes}`
 *   sim.expiredSessions()            [{ ref, username, originator, created, expiredAt }] every expiry ended
 *   sim.sessionCounts()              { logins, logouts, expired }: logins counts re-logins after an expiry
 *   sim.sessionHistory()             [{ ref, username, originator, created, ended }] every session ever made, oldest
 *                                    first; ended: { how: 'logout' | 'expired' | 'transfer' (a basic-auth transfer's
 *                                    own session), at }, undefined while open
 *   sim.transfers()                  every export and import the hosts served, oldest first: { direction, vdiUuid,
 *                                    snapshotOfUuid, format, baseUuid, bytes (counted on the wire), outcome, bodyPath?,
 *                                    exportedContent? }; with `recordTransfersIn: dir`, an
 *                                    export keeps the content it read and an import's body is saved (bodyPath)
 *   sim.diskContent(uuid)            a copy of the VDI's content: { virtualSize, allocatedBlocks(), readBlock(),
 *                                    sha256() }
 *   sim.setHostDown(role, down)      a host that is down resets every connection (a redirect to it fails)
 *   sim.injectFault(fault)           → { remove(), fired }; sim.clearFaults(). Fault shapes: faults.ts
 *   sim.setReaderStallTimeout(ms)    how long an export tolerates a reader that does not read (VDI_IO_ERROR)
 *   sim.close()
 *
 * VMs, devices and networks (vm-world.ts, vm-ops.ts; records with xapi's field names, records-vm.ts). The pool
 * starts as a fresh XCP-ng host does: one running control domain per host (is_control_domain), three default
 * templates (is_a_template, is_default_template), the management network `xenbr0` with a physical eth0 PIF on
 * each host (VLAN -1) and the host-internal management network.
 *   sim.managementNetwork            { uuid, ref } of the xenbr0 network
 *   sim.controlDomain(role)          { uuid, ref } of the master's or the member's dom0
 *   sim.addNetwork({ nameLabel, nameDescription?, bridge?, vlan?, mtu?, otherConfig? })   → { uuid, ref }
 *       vlan: each host gets a VLAN PIF on its eth0 with that tag (and a VLAN object); without it the network
 *       has no PIF (an internal network). bridge default `xapi<N>`, mtu 1500.
 *   sim.addVm({ nameLabel, nameDescription?, powerState?, memory?, vcpus?, tags?, otherConfig?, domainType?,
 *               hvmBootPolicy?, hvmBootParams?, platform?, nvram?, vtpm?: { contents, isUnique? },
 *               blockedOperations?, disks: [{ vdiUuid, userdevice, bootable?, mode? }], cdDrives?: [userdevice],
 *               vifs: [{ networkUuid, device, mac?, mtu? }], isTemplate?, isSnapshot?, snapshotOfUuid? })
 *                                    → { uuid, ref }
 *       Built with the same code as VM.create / VBD.create / VIF.create / VTPM.create, so the same errors apply
 *       (DEVICE_ALREADY_EXISTS, MAC_INVALID, ...). powerState default Halted; a running or paused VM has its
 *       VBDs and VIFs currently_attached (its VDIs are then VDI_IN_USE for VDI.destroy). memory default 2 GiB,
 *       vcpus 2, domainType hvm; CD drives are empty; vtpm contents are what VTPM.get_contents returns.
 *   sim.vmRecord(uuid)               the VM's record (with `ref`), or undefined once destroyed
 *   sim.allVms()                     every VM record: control domains, templates and snapshots included
 *   sim.vmsOf()                      the VMs a backup would choose from: not templates, snapshots or control domains
 *   sim.vmSnapshotsOf(uuid)          VM records of the snapshots of a VM
 *   sim.setVmPowerState(uuid, state) Halted | Running | Paused | Suspended behind the client's back (devices
 *                                    attach and detach as on the host)
 *   sim.addVmTags(uuid, tags)        tags a VM behind the client's back ("tagged after the job was deployed")
 *   sim.vbdsOf(vmUuid) / vifsOf(vmUuid)   VBD / VIF records (with `ref`) of a VM
 *   sim.vtpmContents(vmUuid)         the contents of the VM's vTPM, or undefined without one
 *   RPC: VM.get_record/get_all/get_all_records/get_by_uuid/get_by_name_label, VM.get_<field> for every field,
 *   VM.create, VM.destroy, VM.snapshot(vm, new_name, ignore_vdis), VM.start/clean_shutdown/hard_shutdown/pause/
 *   unpause, VM.set_name_label/set_name_description/set_tags/add_tags/remove_tags, VM.set_/add_to_/remove_from_
 *   other_config, blocked_operations, NVRAM, platform, xenstore_data, HVM_boot_params, VCPUs_params; VBD, VIF:
 *   create/destroy and readers; VTPM.create(vm, is_unique)/destroy/get_contents/set_contents (the last two for
 *   the local superuser only: the read-only account gets RBAC_PERMISSION_DENIED) and readers; network, PIF and
 *   VLAN readers; host.get_resident_VMs/get_PIFs/get_control_domain.
 *
 * Deliberate choices where the real host cannot be copied exactly:
 * - HOST_IS_SLAVE carries `127.0.0.1:<masterPort>` (real xapi: the master's address alone), since both
 *   hosts share the loopback address.
 * - VDI.create rounds virtual_size up to 2 MiB as VHD-based SRs do; addVdi keeps any multiple of 512.
 * - An import VHD bigger than the VDI fails the task with VDI_TOO_LARGE [vdi, vdi size] before any write.
 * - Malformed import bodies fail the task with VDI_IO_ERROR ["Device I/O errors", "<parser code>: ..."].
 * - A missing Content-Length on import: task failed, plain 400 (vhd, raw). A qcow2 import needs none, but
 *   without one Node frames an empty body, where the real host reads to the close.
 * - qcow2 transfers (qcow2-host.ts): the export is the host exporter's layout byte for byte; the import
 *   is qcow-stream-tool's reader, and its errors name the OCaml exception the tool would print (the texts
 *   of its header refusals are the simulator's own). The truncated-body success (cut after the header,
 *   before the data clusters) holds for any cut in the tables. Clusters are written whole, so a last
 *   cluster that straddles the end of a VDI whose size is no multiple of 64 KiB fails with ENOSPC, as a
 *   pwrite past a block device's end does (VDIs that VDI.create makes are 2 MiB multiples).
 * - VDI.create rounds every format's size up to 2 MiB.
 * - VM: metrics and guest_metrics are NULL refs (no VM_metrics class); snapshot_metadata is the source's record
 *   as JSON (xapi: its own serialisation); allowed_operations assume PV drivers; blocked_operations keys and the
 *   values of enum fields other than the constructors' are not checked against xapi's enums.
 * - VBD.create: autodetect picks among 16 slots; a non-empty CD is not checked to be an ISO.
 * - OPERATION_BLOCKED carries [vm, the blocked_operations value] as xapi does (the value is the reason, e.g.
 *   "true"). VTPM.set_contents stores any string: xapi decodes it as base64 but ignores the outcome.
 * - VM.snapshot of a running VM with a vTPM copies its contents (xapi may answer NOT_IMPLEMENTED there, per its
 *   ignore-vtpm-unimplemented setting).
 * - Enum values in a constructor record that match none fail with ENUM_INVALID [field, value].
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Fault, FaultHandle } from './faults.ts';
import { startHostServer } from './host-server.ts';
import { addVdiToPool, destroyVdi, snapshotVdi } from './methods-vdi.ts';
import { newRef, PoolState } from './pool.ts';
import type { HostState, ImageFormat, SrState, VdiState } from './pool.ts';
import { taskRecord, vdiRecord } from './records.ts';
import { toJsonValue } from './rpc-values.ts';
import { BLOCK_SIZE, CLUSTER_SIZE, CLUSTERS_PER_BLOCK, mixSeed, SparseDisk } from './sparse-disk.ts';
import { MAX_VHD_SIZE, newVdiImageFormat } from './image-format.ts';
import { selfSignedCertificate } from './tls.ts';
import { vbdRecord, vifRecord, vmRecord } from './records-vm.ts';
import { setVmPowerState, vbdsOfVm, vifsOfVm, vmByUuid, vmTables, vtpmsOfVm } from './vm-state.ts';
import type { PowerState } from './vm-state.ts';
import { addNetwork, addVm, seedVmWorld } from './vm-world.ts';
import type { AddNetworkOptions, AddVmOptions } from './vm-world.ts';

export type { Fault, FaultHandle, TransferFault } from './faults.ts';
export { MAX_VHD_EXPORT_SIZE } from './transfer-export.ts';
export { MAX_QCOW2_SIZE, MAX_VHD_SIZE } from './image-format.ts';
export { DEFAULT_XAPI_VERSION } from './pool.ts';
export type { ImageFormat } from './pool.ts';
export type { PowerState } from './vm-state.ts';
export type { AddNetworkOptions, AddVmDisk, AddVmOptions, AddVmVif } from './vm-world.ts';
export { BLOCK_SIZE } from './sparse-disk.ts';

export interface XapiSimulatorOptions {
  /** Serve HTTPS with a self-signed certificate (sim.caPem). Default false. */
  tls?: boolean;
  /** Master port; default 0 (any free port). */
  port?: number;
  memberPort?: number;
  /** Pool admin; defaults `root` and a random password. */
  username?: string;
  password?: string;
  /** Read-only role account; defaults `auditor` and a random password. */
  readOnlyUsername?: string;
  readOnlyPassword?: string;
  /** An export dies with VDI_IO_ERROR when the client stops reading for this long ("a few seconds" on a real host). Default 10 s. */
  readerStallTimeoutMs?: number;
  seedVdis?: AddVdiOptions[];
  /** A folder for recorded transfers: each import body is saved there and each export keeps its content. */
  recordTransfersIn?: string;
  /** Where the servers log (default: nowhere). */
  log?: (line: string) => void;
  /** host.software_version.xapi; decides qcow2 support and its allocation mode. Default DEFAULT_XAPI_VERSION. */
  xapiVersion?: string;
}

export interface AddSrOptions {
  nameLabel?: string;
  type?: string;
  /** Default false; shared SRs are seen by both hosts. */
  shared?: boolean;
  /** For a local SR: the member's (true) or the master's (default). */
  onMember?: boolean;
  /** Default true. False models a thick-provisioned SR that refuses vhd imports. */
  prezeroed?: boolean;
  physicalSize?: number;
  /** `device-config:preferred-image-formats`: new VDIs without an image format take the first. */
  preferredImageFormats?: ImageFormat[];
}

export interface AddVdiOptions {
  /** Bytes, a positive multiple of 512. */
  virtualSize: number;
  nameLabel?: string;
  nameDescription?: string;
  /** Place it on the member's local SR. */
  onMember?: boolean;
  /** Place it on this SR (default: the shared SR). */
  srUuid?: string;
  populate?: 'none' | 'scattered' | 'generated';
  /** Content seed for populate (default: a per-simulator counter, so runs are repeatable). */
  seed?: number;
  otherConfig?: Record<string, string>;
  tags?: string[];
  /** Default: the SR's preferred format, or qcow2 over 2040 GiB, else vhd. */
  imageFormat?: ImageFormat;
}

export interface SimRef {
  uuid: string;
  ref: string;
}

export type SimRecord = Record<string, unknown> & { ref: string; uuid: string };

export interface SimTransfer {
  readonly direction: 'export' | 'import';
  readonly vdiUuid: string;
  /** For a snapshot: the VDI it is a snapshot of. */
  readonly snapshotOfUuid: string | undefined;
  readonly format: 'vhd' | 'raw' | 'qcow2';
  readonly baseUuid: string | undefined;
  readonly bytes: number;
  readonly outcome: 'running' | 'success' | 'failure';
  /** The import body as received (recording on). */
  readonly bodyPath?: string;
  /** The content the export read, block by block (recording on). */
  readonly exportedContent?: SimDiskContent;
}

/** A disk's content as the host holds it: BLOCK_SIZE blocks, absent ones read as zeros. */
export interface SimDiskContent {
  readonly virtualSize: number;
  allocatedBlocks(): number[];
  readBlock(index: number): Uint8Array;
  sha256(): string;
}

export interface SimSessionHistoryEntry {
  readonly ref: string;
  readonly username: string;
  readonly originator: string;
  readonly created: Date;
  readonly ended: { readonly how: 'logout' | 'expired' | 'transfer'; readonly at: Date } | undefined;
}

export interface XapiSimulator {
  readonly url: string;
  readonly memberUrl: string;
  readonly username: string;
  readonly password: string;
  readonly readOnlyUsername: string;
  readonly readOnlyPassword: string;
  readonly caPem: string | undefined;
  /** `127.0.0.1:<port>`: what HOST_IS_SLAVE names. */
  readonly masterAddress: string;
  readonly srs: { shared: SimRef; masterLocal: SimRef; memberLocal: SimRef };
  addSr(options?: AddSrOptions): SimRef;
  addVdi(options: AddVdiOptions): SimRef & { srUuid: string };
  writeDisk(vdiUuid: string, offset: number, bytes: Uint8Array): void;
  readDisk(vdiUuid: string, offset: number, length: number): Uint8Array;
  diskSha256(vdiUuid: string): string;
  sparseSha256(vdiUuid: string): string;
  allocatedBlocks(vdiUuid: string): number[];
  allocatedClusters(vdiUuid: string): number[];
  readonly xapiVersion: string;
  setXapiVersion(version: string): void;
  snapshotVdi(vdiUuid: string): SimRef;
  snapshotsOf(vdiUuid: string): SimRecord[];
  vdiRecord(vdiUuid: string): SimRecord | undefined;
  deleteVdi(vdiUuid: string): void;
  openTasks(): SimRecord[];
  openSessions(): { ref: string; username: string; originator: string }[];
  expireSessions(): number;
  expiredSessions(): { ref: string; username: string; originator: string; created: Date; expiredAt: Date }[];
  sessionCounts(): { logins: number; logouts: number; expired: number };
  sessionHistory(): SimSessionHistoryEntry[];
  transfers(): SimTransfer[];
  /** The VDI's content now (a copy: later writes do not show). */
  diskContent(vdiUuid: string): SimDiskContent;
  setHostDown(role: 'master' | 'member', down: boolean): void;
  injectFault(fault: Fault): FaultHandle;
  clearFaults(): void;
  setReaderStallTimeout(ms: number): void;
  readonly managementNetwork: SimRef;
  controlDomain(role: 'master' | 'member'): SimRef;
  addNetwork(options: AddNetworkOptions): SimRef;
  addVm(options: AddVmOptions): SimRef;
  vmRecord(vmUuid: string): SimRecord | undefined;
  allVms(): SimRecord[];
  vmsOf(): SimRecord[];
  vmSnapshotsOf(vmUuid: string): SimRecord[];
  setVmPowerState(vmUuid: string, state: PowerState): void;
  addVmTags(vmUuid: string, tags: string[]): void;
  vbdsOf(vmUuid: string): SimRecord[];
  vifsOf(vmUuid: string): SimRecord[];
  vtpmContents(vmUuid: string): string | undefined;
  close(): Promise<void>;
}

export async function startXapiSimulator(options: XapiSimulatorOptions = {}): Promise<XapiSimulator> {
  const log = options.log ?? (() => undefined);
  const username = options.username ?? 'root';
  const password = options.password ?? `sim-${randomBytes(6).toString('hex')}`;
  const readOnlyUsername = options.readOnlyUsername ?? 'auditor';
  const readOnlyPassword = options.readOnlyPassword ?? `ro-${randomBytes(6).toString('hex')}`;
  const pool = new PoolState(
    [
      { username, password, readOnly: false },
      { username: readOnlyUsername, password: readOnlyPassword, readOnly: true },
    ],
    options.readerStallTimeoutMs ?? 10_000,
  );
  pool.recordTransfersIn = options.recordTransfersIn;
  if (options.xapiVersion !== undefined) pool.xapiVersion = options.xapiVersion;
  const tls = options.tls === true ? await selfSignedCertificate() : undefined;
  const scheme = tls === undefined ? 'http' : 'https';

  const makeHost = (role: 'master' | 'member', nameLabel: string): HostState => {
    const host: HostState = { uuid: randomUUID(), ref: newRef(), role, nameLabel, address: '', baseUrl: '' };
    pool.hosts.push(host);
    return host;
  };
  const master = makeHost('master', 'xcp-master');
  const member = makeHost('member', 'xcp-member');
  const servers: Server[] = [];
  for (const [host, port] of [
    [master, options.port ?? 0],
    [member, options.memberPort ?? 0],
  ] as const) {
    const started = await startHostServer(pool, host, { port, tls, log });
    servers.push(started.server);
    host.address = `127.0.0.1:${started.port}`;
    host.baseUrl = `${scheme}://${host.address}`;
  }

  const addSr = (srOptions: AddSrOptions = {}): SrState => {
    const shared = srOptions.shared ?? false;
    const sr: SrState = {
      uuid: randomUUID(),
      ref: newRef(),
      nameLabel: srOptions.nameLabel ?? (shared ? 'Shared NFS' : 'Local storage'),
      type: srOptions.type ?? (shared ? 'nfs' : 'ext'),
      shared,
      host: shared ? undefined : srOptions.onMember === true ? member : master,
      physicalSize: srOptions.physicalSize ?? 4 * 1024 ** 4,
      prezeroed: srOptions.prezeroed ?? true,
      otherConfig: {},
      preferredImageFormats: [...(srOptions.preferredImageFormats ?? [])],
    };
    pool.srs.set(sr.ref, sr);
    return sr;
  };
  const sharedSr = addSr({ shared: true, nameLabel: 'Shared NFS storage' });
  const masterLocalSr = addSr({ nameLabel: 'Local storage on xcp-master' });
  const memberLocalSr = addSr({ nameLabel: 'Local storage on xcp-member', onMember: true });

  const { managementNetwork } = seedVmWorld(pool);

  let seedCounter = 0;
  const vdiByUuid = (uuid: string): VdiState => pool.vdiByUuid(uuid);
  const withRef = (ref: string, record: Record<string, unknown>): SimRecord =>
    ({ ref, ...(toJsonValue(record as never) as Record<string, unknown>) }) as SimRecord;

  const addVdi = (vdiOptions: AddVdiOptions): SimRef & { srUuid: string } => {
    const { virtualSize } = vdiOptions;
    if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0 || virtualSize % 512 !== 0) {
      throw new RangeError(`virtualSize must be a positive multiple of 512, got ${virtualSize}`);
    }
    const sr =
      vdiOptions.srUuid !== undefined
        ? pool.srByUuid(vdiOptions.srUuid)
        : vdiOptions.onMember === true
          ? memberLocalSr
          : sharedSr;
    const imageFormat = newVdiImageFormat(sr, virtualSize, vdiOptions.imageFormat);
    // The host makes no VHD over 2040 GiB; bigger sizes of the other formats are left to the test.
    if (imageFormat === 'vhd' && virtualSize > MAX_VHD_SIZE) {
      throw new RangeError(`a vhd VDI holds at most ${MAX_VHD_SIZE} bytes, got ${virtualSize}`);
    }
    const disk = new SparseDisk(virtualSize);
    const seed = vdiOptions.seed ?? ++seedCounter;
    populate(disk, vdiOptions.populate ?? 'none', seed);
    const vdi = addVdiToPool(pool, {
      sr,
      virtualSize,
      nameLabel: vdiOptions.nameLabel ?? 'test disk',
      nameDescription: vdiOptions.nameDescription ?? '',
      otherConfig: vdiOptions.otherConfig ?? {},
      tags: vdiOptions.tags ?? [],
      disk,
      imageFormat,
    });
    return { uuid: vdi.uuid, ref: vdi.ref, srUuid: sr.uuid };
  };
  for (const seed of options.seedVdis ?? []) addVdi(seed);

  const ref = (sr: SrState): SimRef => ({ uuid: sr.uuid, ref: sr.ref });
  return {
    url: master.baseUrl,
    memberUrl: member.baseUrl,
    username,
    password,
    readOnlyUsername,
    readOnlyPassword,
    caPem: tls?.cert,
    masterAddress: master.address,
    srs: { shared: ref(sharedSr), masterLocal: ref(masterLocalSr), memberLocal: ref(memberLocalSr) },
    addSr: (srOptions) => ref(addSr(srOptions)),
    addVdi,
    writeDisk: (uuid, offset, bytes) => vdiByUuid(uuid).disk.write(offset, bytes),
    readDisk: (uuid, offset, length) => vdiByUuid(uuid).disk.read(offset, length),
    diskSha256: (uuid) => vdiByUuid(uuid).disk.sha256(),
    sparseSha256: (uuid) => vdiByUuid(uuid).disk.sparseSha256(),
    allocatedBlocks: (uuid) => vdiByUuid(uuid).disk.allocatedIndexes(),
    allocatedClusters: (uuid) => allocatedClusters(vdiByUuid(uuid).disk),
    get xapiVersion() {
      return pool.xapiVersion;
    },
    setXapiVersion: (version) => {
      pool.xapiVersion = version;
    },
    snapshotVdi: (uuid) => {
      const snapshot = snapshotVdi(pool, vdiByUuid(uuid));
      return { uuid: snapshot.uuid, ref: snapshot.ref };
    },
    snapshotsOf: (uuid) =>
      vdiByUuid(uuid)
        .snapshots.map((snapshotRef) => pool.vdis.get(snapshotRef))
        .filter((vdi) => vdi !== undefined)
        .map((vdi) => withRef(vdi.ref, vdiRecord(pool, vdi))),
    vdiRecord: (uuid) => {
      const vdi = [...pool.vdis.values()].find((candidate) => candidate.uuid === uuid);
      return vdi === undefined ? undefined : withRef(vdi.ref, vdiRecord(pool, vdi));
    },
    deleteVdi: (uuid) => destroyVdi(pool, vdiByUuid(uuid)),
    openTasks: () =>
      [...pool.tasks.values()]
        .filter((task) => !pool.hostTasks.has(task.ref))
        .map((task) => withRef(task.ref, taskRecord(pool, task))),
    openSessions: () =>
      [...pool.sessions.values()].map((session) => ({
        ref: session.ref,
        username: session.username,
        originator: session.originator,
      })),
    expireSessions: () => pool.expireSessions(),
    expiredSessions: () => pool.expiredSessions.map((session) => ({ ...session })),
    sessionCounts: () => ({ ...pool.sessionCounts, expired: pool.expiredSessions.length }),
    sessionHistory: () => [...pool.sessionHistory.values()].map((entry) => ({ ...entry })),
    diskContent: (uuid) => diskContent(vdiByUuid(uuid).disk.clone()),
    transfers: () =>
      pool.transfers.map(({ exportedDisk, ...record }) => ({
        ...record,
        ...(exportedDisk === undefined ? {} : { exportedContent: diskContent(exportedDisk) }),
      })),
    setHostDown: (role, down) => {
      for (const host of pool.hosts) if (host.role === role) host.down = down;
    },
    injectFault: (fault) => pool.faults.inject(fault),
    clearFaults: () => pool.faults.clear(),
    setReaderStallTimeout: (ms) => {
      pool.readerStallTimeoutMs = ms;
    },
    managementNetwork: { uuid: managementNetwork.uuid, ref: managementNetwork.ref },
    controlDomain: (role) => {
      const host = pool.hosts.find((candidate) => candidate.role === role)!;
      const dom0 = [...vmTables(pool).vms.values()].find(
        (vm) => vm.fields.is_control_domain && vm.fields.resident_on === host.ref,
      )!;
      return { uuid: dom0.uuid, ref: dom0.ref };
    },
    addNetwork: (networkOptions) => {
      const network = addNetwork(pool, networkOptions);
      return { uuid: network.uuid, ref: network.ref };
    },
    addVm: (vmOptions) => {
      const vm = addVm(pool, vmOptions);
      return { uuid: vm.uuid, ref: vm.ref };
    },
    vmRecord: (uuid) => {
      const vm = [...vmTables(pool).vms.values()].find((candidate) => candidate.uuid === uuid);
      return vm === undefined ? undefined : withRef(vm.ref, vmRecord(pool, vm));
    },
    allVms: () => [...vmTables(pool).vms.values()].map((vm) => withRef(vm.ref, vmRecord(pool, vm))),
    vmsOf: () =>
      [...vmTables(pool).vms.values()]
        .filter((vm) => !vm.fields.is_a_template && !vm.fields.is_a_snapshot && !vm.fields.is_control_domain)
        .map((vm) => withRef(vm.ref, vmRecord(pool, vm))),
    vmSnapshotsOf: (uuid) => {
      const vm = vmByUuid(pool, uuid);
      return [...vmTables(pool).vms.values()]
        .filter((candidate) => candidate.fields.snapshot_of === vm.ref)
        .map((snapshot) => withRef(snapshot.ref, vmRecord(pool, snapshot)));
    },
    setVmPowerState: (uuid, state) => setVmPowerState(pool, vmByUuid(pool, uuid), state),
    addVmTags: (uuid, tags) => {
      const vm = vmByUuid(pool, uuid);
      vm.fields.tags = [...new Set([...vm.fields.tags, ...tags])];
    },
    vbdsOf: (uuid) =>
      vbdsOfVm(pool, vmByUuid(pool, uuid)).map((vbd) => withRef(vbd.ref, vbdRecord(pool, vbd))),
    vifsOf: (uuid) =>
      vifsOfVm(pool, vmByUuid(pool, uuid)).map((vif) => withRef(vif.ref, vifRecord(pool, vif))),
    vtpmContents: (uuid) => vtpmsOfVm(pool, vmByUuid(pool, uuid))[0]?.contents,
    close: async () => {
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}

function allocatedClusters(disk: SparseDisk): number[] {
  const clusters: number[] = [];
  const last = Math.ceil(disk.virtualSize / CLUSTER_SIZE);
  for (const index of disk.allocatedIndexes()) {
    const versions = disk.clusterVersions(index)!;
    for (let c = 0; c < CLUSTERS_PER_BLOCK; c++) {
      const cluster = index * CLUSTERS_PER_BLOCK + c;
      if (versions[c] !== 0 && cluster < last) clusters.push(cluster);
    }
  }
  return clusters;
}

function diskContent(disk: SparseDisk): SimDiskContent {
  return {
    virtualSize: disk.virtualSize,
    allocatedBlocks: () => disk.allocatedIndexes(),
    readBlock: (index) => disk.readBlock(index),
    sha256: () => disk.sha256(),
  };
}

/** Fills a disk with generated blocks: deterministic from the seed, stored as patterns (no memory). */
function populate(disk: SparseDisk, mode: 'none' | 'scattered' | 'generated', seed: number): void {
  if (mode === 'none') return;
  const last = disk.blockCount - 1;
  for (let index = 0; index <= last; index++) {
    const mix = mixSeed('xapi-sim', seed, index);
    if (mode === 'scattered' && index !== 0 && index !== last && mix % 3 !== 0) continue;
    // Some blocks are only partly used, like a filesystem's: their tail reads as zeros.
    const filled = mode === 'scattered' && (mix >>> 8) % 4 === 0 ? 64 * 1024 : BLOCK_SIZE;
    disk.fillBlockWithPattern(index, { seed: mix, filled });
  }
}
