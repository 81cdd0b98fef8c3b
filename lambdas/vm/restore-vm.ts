/**
 * Restoring a whole VM (docs/design.md § VM restores): ResolveVm checks the point, every disk's chain, the
 * SRs and the networks before anything is made; CreateVm makes the VM blocked from starting, with its
 * NVRAM, vTPM, VIFs and empty drives; each disk then goes through the disk restore steps (its own chain,
 * merged into one stream) and is attached in its slot; FinishVm unblocks and renames it. A failure
 * destroys the VM and every VDI made for it (marked `vdi-vault-restore-vm`) unless keepPartial.
 */
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { CatalogLocation } from '../catalog/keys.ts';
import { listVmManifests, parseVmManifest, vmManifestKey, type VmManifest } from '../catalog/vm-manifest.ts';
import { CleanupLog, required } from '../shared/cleanup-log.ts';
import { failureMessage } from '../shared/failure.ts';
import { InputValidationError } from '../shared/input-error.ts';
import type { Log } from '../shared/log.ts';
import type { PoolDirectory } from '../shared/pools.ts';
import { chainDocumentKey, choosePoint, resolveChain, restoreTransferId } from '../restore/chain.ts';
import { isVmBackupId, type RestoreRequest, type VmRestoreRequest } from '../restore/input.ts';
import {
  RESTORE_STATE_TAG,
  RESTORED_FROM_TAG,
  type ImportedLayer,
  type RestoreExecution,
  type RestoreFailure,
} from '../restore/state.ts';
import { isXapiError, NULL_REF, XapiSession, type Ref, type XapiSessionHandle } from '../xapi/index.ts';
import type { SessionState } from '../shared/pool-session.ts';

/** On every VDI a VM restore makes (`other_config`): the new VM's uuid, so a failure finds them all. */
export const RESTORE_VM_TAG = 'vdi-vault-restore-vm';
/** Why the restored VM cannot start until FinishVm (`blocked_operations`). */
const BLOCKED_WHILE_RESTORING = 'vdi-vault: restore in progress';
const START_OPERATIONS = ['start', 'start_on', 'resume', 'resume_on'] as const;

/** A disk of the VM point, as the disk Map gets it: a disk restore request and its slot. */
export interface VmDiskItem {
  readonly request: RestoreRequest;
  readonly userdevice: string;
  readonly bootable: boolean;
  readonly mode: 'RO' | 'RW';
  readonly sourceVdiUuid: string;
}

/** A VIF to make, with the target pool's network already chosen. */
export interface VifPlan {
  readonly device: string;
  readonly mac: string;
  readonly mtu: number;
  readonly networkRef: Ref;
  readonly networkUuid: string;
  readonly sourceNetworkUuid: string;
  readonly lockingMode?: string;
}

export interface VmPointInState {
  readonly vmBackupId: string;
  readonly manifestKey: string;
  readonly nameLabel: string;
  readonly disks: readonly VmDiskItem[];
  readonly vifs: readonly VifPlan[];
  readonly excludedSlots: readonly string[];
}

/** What the restore workflow carries for a VM restore (ids and small lists only: NVRAM stays in S3). */
export interface VmRestoreState extends SessionState {
  readonly vmRequest: VmRestoreRequest;
  readonly pool: string;
  readonly startedAt: string;
  readonly execution?: RestoreExecution;
  readonly session?: XapiSessionHandle;
  readonly vmPoint?: VmPointInState;
  readonly vm?: { readonly ref: string; readonly uuid: string };
  readonly vmDisks?: readonly AttachedDisk[];
  readonly vmResult?: VmRestoreResult;
  readonly failure?: { readonly Error?: string; readonly Cause?: string };
}

/** One disk Map item's state once its disk steps ran. */
export interface VmDiskState extends SessionState {
  readonly disk: VmDiskItem;
  readonly vm: { readonly ref: string; readonly uuid: string };
  readonly vdi?: { readonly ref: string; readonly uuid: string };
  readonly imported?: readonly ImportedLayer[];
}

export interface AttachedDisk {
  readonly userdevice: string;
  readonly vdiUuid: string;
  readonly sourceVdiUuid: string;
  readonly backupId: string;
  readonly bytesMoved: number;
}

export interface VmRestoreResult {
  readonly vmUuid: string;
  readonly sourceVmUuid: string;
  readonly restorePoint: string;
  readonly nameLabel: string;
  readonly disks: readonly AttachedDisk[];
  /** Slots the point left out (excluded disks): the restored VM has nothing there. */
  readonly excludedSlots: readonly string[];
  readonly vifs: readonly { readonly device: string; readonly mac: string; readonly networkUuid: string }[];
  readonly durationMs: number;
}

export interface VmRestoreDeps {
  readonly s3: S3Client;
  readonly catalog: CatalogLocation;
  readonly pools: PoolDirectory;
  readonly log: Log;
  readonly now: () => Date;
  readonly withSession: <T>(state: SessionState, work: (session: XapiSession) => Promise<T>) => Promise<T>;
}

/** The chain document key the disk steps use for one disk of this VM restore (see resolveChain). */
function diskChainKey(catalog: CatalogLocation, state: VmRestoreState, vdiUuid: string): string {
  return chainDocumentKey(catalog, restoreTransferId(state.pool, vdiUuid, state.startedAt));
}

/** Which SR each disk goes to: `srMap` by slot, then by source VDI uuid, then `srUuid`. */
export function srForDisk(request: VmRestoreRequest, userdevice: string, vdiUuid: string): string {
  const sr = request.srMap?.[userdevice] ?? request.srMap?.[vdiUuid] ?? request.srUuid;
  if (sr === undefined) {
    throw new InputValidationError(
      'srMap',
      `has no SR for disk ${userdevice} (VDI ${vdiUuid})`,
      `Add "${userdevice}": "<SR uuid>" to srMap, or give srUuid for the disks srMap leaves out.`,
    );
  }
  return sr;
}

interface TargetNetwork {
  readonly ref: Ref;
  readonly uuid: string;
  readonly nameLabel: string;
  readonly vlan: number;
}

/**
 * The target pool's network for a VIF: `networkMap` first (the operator's word), then the same uuid (the
 * same pool), then the one network with the same name and VLAN; else an error listing the pool's networks.
 */
export function chooseNetwork(
  vif: VmManifest['vifs'][number],
  networks: readonly TargetNetwork[],
  networkMap: Readonly<Record<string, string>> | undefined,
  pool: string,
): TargetNetwork {
  const source = vif.network;
  const listed = () =>
    networks.map((n) => `${n.nameLabel} (${n.uuid}${n.vlan >= 0 ? `, VLAN ${n.vlan}` : ''})`).join('; ');
  const mapped = networkMap?.[source.uuid];
  if (mapped !== undefined) {
    const target = networks.find((n) => n.uuid === mapped);
    if (!target) {
      throw new InputValidationError(
        `networkMap.${source.uuid}`,
        `names network ${mapped}, which pool ${pool} does not have`,
        `Use one of the pool's networks: ${listed()}.`,
      );
    }
    return target;
  }
  const same = networks.find((n) => n.uuid === source.uuid);
  if (same) return same;
  const alike = networks.filter((n) => n.nameLabel === source.nameLabel && n.vlan === source.vlan);
  if (alike.length === 1) return alike[0]!;
  const vlan = source.vlan >= 0 ? `, VLAN ${source.vlan}` : '';
  throw new InputValidationError(
    'networkMap',
    `VIF ${vif.device}'s network "${source.nameLabel}" (${source.uuid}${vlan}) is not in pool ${pool}` +
      (alike.length > 1 ? ` and ${alike.length} networks there share its name and VLAN` : ''),
    `Map it to one of the pool's networks, e.g. "networkMap": {"${source.uuid}": "<network uuid>"}; the pool has: ${listed()}.`,
  );
}

async function targetNetworks(session: XapiSession): Promise<TargetNetwork[]> {
  const networks: TargetNetwork[] = [];
  for (const [ref, network] of Object.entries(await session.getAllNetworkRecords())) {
    let vlan = -1;
    for (const pifRef of network.PIFs) {
      const pif = await session.getPifRecord(pifRef);
      if (pif.VLAN >= 0) vlan = pif.VLAN;
    }
    networks.push({ ref, uuid: network.uuid, nameLabel: network.name_label, vlan });
  }
  return networks;
}

async function readVmManifest(s3: S3Client, bucket: string, key: string): Promise<VmManifest> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return parseVmManifest((await object.Body?.transformToString('utf8')) ?? '', key);
}

/** Fields VM.create requires that a backup does not keep (a restored VM is a plain VM of its own). */
const VM_CREATE_DEFAULTS = {
  name_description: '',
  user_version: 1,
  is_a_template: false,
  affinity: NULL_REF,
  VCPUs_params: {},
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
  platform: {},
  PCI_bus: '',
  other_config: {},
  recommendations: '',
} as const;

export function createVmRestoreSteps(deps: VmRestoreDeps) {
  const { s3, catalog, log, now, withSession } = deps;

  async function destroyVmAndDisks(state: VmRestoreState, cleanup: CleanupLog): Promise<void> {
    const vm = state.vm;
    if (!vm) return;
    await cleanup.attempt(`destroyed the partially restored VM ${vm.uuid}`, () =>
      withSession(state, (session) => session.destroyVm(vm.ref)),
    );
    // VM.destroy leaves VDIs: every one made for this VM carries its uuid.
    const vdis = await withSession(state, (session) => session.getAllVdiRecords());
    for (const [ref, vdi] of Object.entries(vdis)) {
      if (vdi.other_config[RESTORE_VM_TAG] !== vm.uuid) continue;
      await cleanup.attempt(`destroyed the restored disk ${vdi.uuid}`, () =>
        withSession(state, (session) => session.destroyVdi(ref)),
      );
    }
  }

  return {
    /**
     * Picks the VM point, checks every disk's chain (objects and sizes), the SRs and the target networks:
     * a point that cannot be restored is refused before anything is made on the host.
     */
    async resolveVm(state: VmRestoreState): Promise<VmPointInState> {
      const request = state.vmRequest;
      const points = await listVmManifests(s3, catalog, state.pool, request.vmUuid);
      const point = choosePoint(points, (p) => p.vmBackupId, request.restorePoint, {
        field: 'vmUuid',
        subject: `VM ${request.vmUuid}`,
        isId: isVmBackupId,
      });
      const disks: VmDiskItem[] = [];
      for (const disk of point.disks) {
        const srUuid = srForDisk(request, disk.userdevice, disk.vdiUuid);
        // Refuses a missing point or a broken chain now, naming the disk.
        await resolveChain(s3, catalog, state.pool, disk.vdiUuid, disk.backupId).catch((error: unknown) => {
          if (error instanceof Error) error.message = `disk ${disk.userdevice}: ${error.message}`;
          throw error;
        });
        disks.push({
          request: {
            vdiUuid: disk.vdiUuid,
            restorePoint: disk.backupId,
            srUuid,
            // One stream per disk: the fewest state transitions in the disk Map.
            strategy: 'merge',
            keepPartial: request.keepPartial,
            nameLabel: disk.nameLabel,
            ...(request.pool ? { pool: request.pool } : {}),
          },
          userdevice: disk.userdevice,
          bootable: disk.bootable,
          mode: disk.mode,
          sourceVdiUuid: disk.vdiUuid,
        });
      }
      const vifs = await withSession(state, async (session) => {
        for (const srUuid of new Set(disks.map((disk) => disk.request.srUuid))) {
          await session.getSrByUuid(srUuid).catch((error: unknown) => {
            if (!isXapiError(error, 'UUID_INVALID')) throw error;
            const field = request.srUuid === srUuid ? 'srUuid' : 'srMap';
            throw new InputValidationError(
              field,
              `no SR ${srUuid} in pool ${state.pool}`,
              'Give the uuid of an SR the pool has (`xe sr-list`).',
            );
          });
        }
        const networks = await targetNetworks(session);
        return point.vifs.map((vif): VifPlan => {
          const network = chooseNetwork(vif, networks, request.networkMap, state.pool);
          return {
            device: vif.device,
            mac: vif.mac,
            mtu: vif.mtu,
            networkRef: network.ref,
            networkUuid: network.uuid,
            sourceNetworkUuid: vif.network.uuid,
            ...(vif.lockingMode ? { lockingMode: vif.lockingMode } : {}),
          };
        });
      });
      return {
        vmBackupId: point.vmBackupId,
        manifestKey: vmManifestKey(catalog, state.pool, request.vmUuid, point.vmBackupId),
        nameLabel: point.record.name_label ?? request.vmUuid,
        disks,
        vifs,
        excludedSlots: point.excludedDisks.map((disk) => disk.userdevice),
      };
    },

    /**
     * Makes the VM from its recorded fields, blocked from starting and named as being restored, with its
     * NVRAM, vTPM, VIFs and empty drives. A failure here destroys what it made before going on.
     */
    async createVm(state: VmRestoreState): Promise<{ ref: string; uuid: string }> {
      const point = required(state.vmPoint, 'vmPoint');
      const manifest = await readVmManifest(s3, catalog.bucket, point.manifestKey);
      const request = state.vmRequest;
      return withSession(state, async (session) => {
        // A new VM gets its own mac_seed (VM.create adds one), so generated MACs differ from the source's.
        const { mac_seed: _seed, ...otherConfig } = manifest.record.other_config ?? {};
        const ref = await session.createVm({
          ...VM_CREATE_DEFAULTS,
          ...manifest.record,
          name_label: `${request.nameLabel ?? point.nameLabel} (restoring from vdi-vault ${point.vmBackupId})`,
          is_a_template: false,
          other_config: {
            ...otherConfig,
            [RESTORE_STATE_TAG]: 'in-progress',
            [RESTORED_FROM_TAG]: `${state.pool}/vms/${request.vmUuid}/${point.vmBackupId}`,
          },
          blocked_operations: Object.fromEntries(START_OPERATIONS.map((op) => [op, BLOCKED_WHILE_RESTORING])),
        });
        try {
          const uuid = (await session.getVmRecord(ref)).uuid;
          if (Object.keys(manifest.nvram).length) await session.setVmNvram(ref, manifest.nvram);
          if (manifest.vtpm) {
            const vtpm = await session.createVtpm(ref, manifest.vtpm.isUnique);
            await session.setVtpmContents(vtpm, manifest.vtpm.contents);
          }
          for (const vif of point.vifs) {
            await session.createVif({
              device: vif.device,
              network: vif.networkRef,
              VM: ref,
              // Empty: the host makes one from the VM's mac_seed.
              MAC: request.newMacs ? '' : vif.mac,
              MTU: vif.mtu,
              other_config: {},
              qos_algorithm_type: '',
              qos_algorithm_params: {},
              ...(vif.lockingMode ? { locking_mode: vif.lockingMode } : {}),
            });
          }
          for (const drive of manifest.removableDrives) {
            await session.createVbd({
              VM: ref,
              VDI: NULL_REF,
              userdevice: drive.userdevice,
              bootable: drive.bootable,
              mode: 'RO',
              type: drive.type,
              unpluggable: true,
              empty: true,
              other_config: {},
              qos_algorithm_type: '',
              qos_algorithm_params: {},
            });
          }
          return { ref, uuid };
        } catch (error) {
          await session
            .destroyVm(ref)
            .catch((destroyError: unknown) =>
              log.error('could not destroy the VM whose creation failed', { error: String(destroyError) }),
            );
          throw error;
        }
      });
    },

    /** Puts a restored disk (marked complete by the disk steps) into its slot. */
    async attachVmDisk(state: VmDiskState): Promise<AttachedDisk> {
      const vdi = required(state.vdi, 'vdi');
      await withSession(state, (session) =>
        session.createVbd({
          VM: state.vm.ref,
          VDI: vdi.ref,
          userdevice: state.disk.userdevice,
          bootable: state.disk.bootable,
          mode: state.disk.mode,
          type: 'Disk',
          unpluggable: false,
          empty: false,
          other_config: {},
          qos_algorithm_type: '',
          qos_algorithm_params: {},
        }),
      );
      return {
        userdevice: state.disk.userdevice,
        vdiUuid: vdi.uuid,
        sourceVdiUuid: state.disk.sourceVdiUuid,
        backupId: state.disk.request.restorePoint,
        bytesMoved: (state.imported ?? []).reduce((sum, layer) => sum + layer.bytes, 0),
      };
    },

    /** Every disk is in: the VM may start (we never start it), under its own name. */
    async finishVm(state: VmRestoreState): Promise<VmRestoreResult> {
      const point = required(state.vmPoint, 'vmPoint');
      const vm = required(state.vm, 'vm');
      const nameLabel = state.vmRequest.nameLabel ?? point.nameLabel;
      const vifs = await withSession(state, async (session) => {
        const record = await session.getVmRecord(vm.ref);
        await session.setVmBlockedOperations(vm.ref, {});
        await session.setVmOtherConfig(vm.ref, { ...record.other_config, [RESTORE_STATE_TAG]: 'complete' });
        await session.setVmNameLabel(vm.ref, nameLabel);
        const made = [];
        for (const vifRef of record.VIFs) {
          const vif = await session.getVifRecord(vifRef);
          const network = await session.getNetworkRecord(vif.network);
          made.push({ device: vif.device, mac: vif.MAC, networkUuid: network.uuid });
        }
        return made.sort((a, b) => Number(a.device) - Number(b.device));
      });
      return {
        vmUuid: vm.uuid,
        sourceVmUuid: state.vmRequest.vmUuid,
        restorePoint: point.vmBackupId,
        nameLabel,
        disks: state.vmDisks ?? [],
        excludedSlots: point.excludedSlots,
        vifs,
        durationMs: now().getTime() - Date.parse(state.startedAt),
      };
    },

    /**
     * After any failure of a VM restore past login: destroys the VM (its VBDs, VIFs and vTPM go with it)
     * and every VDI made for it, unless keepPartial; removes the disks' chain documents; logs out.
     */
    async vmFailureCleanup(state: VmRestoreState): Promise<RestoreFailure> {
      const cleanup = new CleanupLog(log);
      if (state.session) {
        if (state.vm && !state.vmRequest.keepPartial) await destroyVmAndDisks(state, cleanup);
        else if (state.vm) cleanup.note(`kept the partial VM ${state.vm.uuid} and its disks (keepPartial)`);
        const session = XapiSession.resume({ ...deps.pools.get(state.pool).connection, log }, state.session);
        await cleanup.attempt('logged out', () => session.logout());
      }
      for (const disk of state.vmPoint?.disks ?? []) {
        const key = diskChainKey(catalog, state, disk.sourceVdiUuid);
        await cleanup.attempt(`removed the chain document of disk ${disk.userdevice}`, () =>
          s3.send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: key })),
        );
      }
      const { error, cause } = failureMessage(state.failure);
      log.error('VM restore failed', { error, cause, cleanup: cleanup.actions });
      return { error, cause, cleanup: cleanup.actions };
    },
  };
}

export type VmRestoreSteps = ReturnType<typeof createVmRestoreSteps>;
