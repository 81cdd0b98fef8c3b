import {
  isXapiError,
  NULL_REF,
  XapiError,
  type Ref,
  type VdiRecord,
  type VmRecord,
  type XapiSession,
} from '../xapi/index.ts';

/**
 * A disk whose VDI carries this tag (or `other_config` key set to `true`) stays out of VM backups:
 * `VM.snapshot` gets it in `ignore_vdis`, and the VM restore point records its slot as excluded.
 */
export const EXCLUDE_DISK_TAG = 'vdi-vault-exclude';

export function isExcludedDisk(vdi: Pick<VdiRecord, 'other_config' | 'tags'>): boolean {
  return (vdi.tags ?? []).includes(EXCLUDE_DISK_TAG) || vdi.other_config[EXCLUDE_DISK_TAG] === 'true';
}

/** The VM fields a restore passes back to `VM.create` and the setters (datamodel_vm.ml names). */
export const VM_FIELDS_KEPT = [
  'name_label',
  'name_description',
  'user_version',
  'memory_static_max',
  'memory_dynamic_max',
  'memory_dynamic_min',
  'memory_static_min',
  'VCPUs_max',
  'VCPUs_at_startup',
  'VCPUs_params',
  'actions_after_shutdown',
  'actions_after_reboot',
  'actions_after_crash',
  'PV_bootloader',
  'PV_kernel',
  'PV_ramdisk',
  'PV_args',
  'PV_bootloader_args',
  'PV_legacy_args',
  'HVM_boot_policy',
  'HVM_boot_params',
  'HVM_shadow_multiplier',
  'platform',
  'PCI_bus',
  'recommendations',
  'domain_type',
  'has_vendor_device',
  'other_config',
  'tags',
] as const satisfies readonly (keyof VmRecord)[];

export type KeptVmFields = Partial<Pick<VmRecord, (typeof VM_FIELDS_KEPT)[number]>>;

export interface DescribedDisk {
  readonly userdevice: string;
  readonly bootable: boolean;
  readonly mode: 'RO' | 'RW';
  /** The VDI the VBD holds: in a snapshot VM, the disk's snapshot. */
  readonly vdiRef: Ref;
  readonly vdiUuid: string;
  /** The VM's own disk the snapshot was taken of (its backup series). */
  readonly sourceVdiUuid: string;
  readonly nameLabel: string;
  readonly virtualSize: number;
}

export interface DescribedVif {
  readonly device: string;
  readonly mac: string;
  readonly mtu: number;
  readonly network: { readonly uuid: string; readonly nameLabel: string; readonly vlan: number };
  readonly lockingMode?: string;
}

/** What recreating the VM needs, read from the snapshot VM (docs/design.md § VM backups). */
export interface VmDescription {
  readonly record: KeptVmFields;
  /** UEFI variables as XAPI holds them (`EFI-variables`: base64). */
  readonly nvram: Record<string, string>;
  readonly disks: readonly DescribedDisk[];
  /** Disks left out: their slots, so a restore can say what it did not bring back. */
  readonly excludedDisks: readonly { readonly userdevice: string; readonly vdiUuid: string }[];
  /** CD and floppy drives: empty on restore whatever they held (an ISO is not backed up). */
  readonly removableDrives: readonly {
    readonly userdevice: string;
    readonly type: 'CD' | 'Floppy';
    readonly bootable: boolean;
  }[];
  readonly vifs: readonly DescribedVif[];
  /** The VM's vTPM and its state (base64), read when the VM was snapshotted; null: it has none. */
  readonly vtpm: { readonly isUnique: boolean; readonly contents: string } | null;
}

/** The disks of a VM to leave out of its backup: their refs go into `VM.snapshot`'s `ignore_vdis`. */
export async function excludedDisks(
  session: XapiSession,
  vm: VmRecord,
): Promise<{ readonly ref: Ref; readonly userdevice: string; readonly vdiUuid: string }[]> {
  const excluded: { ref: Ref; userdevice: string; vdiUuid: string }[] = [];
  for (const vbdRef of vm.VBDs) {
    const vbd = await session.getVbdRecord(vbdRef);
    if (vbd.type !== 'Disk' || vbd.empty || vbd.VDI === NULL_REF) continue;
    const vdi = await session.getVdiRecord(vbd.VDI);
    if (isExcludedDisk(vdi)) excluded.push({ ref: vbd.VDI, userdevice: vbd.userdevice, vdiUuid: vdi.uuid });
  }
  return excluded;
}

/**
 * What a restore of this VM needs: the source VM's record as read at its snapshot (the fields
 * VM_FIELDS_KEPT: a snapshot VM has its own name, and is a template), NVRAM and vTPM, and from the
 * snapshot VM its disks in slot order (each with the VDI it is a snapshot of), removable drives and VIFs
 * with their network's uuid, name and VLAN (so a restore into another pool can find the same network).
 * `excluded` are the source VM's disks left out of the snapshot, by slot.
 */
export async function describeSnapshotVm(
  session: XapiSession,
  source: VmRecord,
  snapshotRef: Ref,
  excluded: readonly { readonly userdevice: string; readonly vdiUuid: string }[],
): Promise<VmDescription> {
  const vm = await session.getVmRecord(snapshotRef);
  const record: Record<string, unknown> = {};
  for (const field of VM_FIELDS_KEPT) if (source[field] !== undefined) record[field] = source[field];
  const disks: DescribedDisk[] = [];
  const removableDrives: { userdevice: string; type: 'CD' | 'Floppy'; bootable: boolean }[] = [];
  for (const vbdRef of vm.VBDs) {
    const vbd = await session.getVbdRecord(vbdRef);
    if (vbd.type !== 'Disk') {
      removableDrives.push({ userdevice: vbd.userdevice, type: vbd.type, bootable: vbd.bootable });
      continue;
    }
    if (vbd.empty || vbd.VDI === NULL_REF) continue;
    const vdi = await session.getVdiRecord(vbd.VDI);
    const source = vdi.is_a_snapshot ? await session.getVdiRecord(vdi.snapshot_of) : vdi;
    disks.push({
      userdevice: vbd.userdevice,
      bootable: vbd.bootable,
      mode: vbd.mode,
      vdiRef: vbd.VDI,
      vdiUuid: vdi.uuid,
      sourceVdiUuid: source.uuid,
      nameLabel: source.name_label,
      virtualSize: vdi.virtual_size,
    });
  }
  const vifs: DescribedVif[] = [];
  for (const vifRef of vm.VIFs) {
    const vif = await session.getVifRecord(vifRef);
    const network = await session.getNetworkRecord(vif.network);
    let vlan = -1;
    for (const pifRef of network.PIFs) {
      const pif = await session.getPifRecord(pifRef);
      if (pif.VLAN >= 0) vlan = pif.VLAN;
    }
    vifs.push({
      device: vif.device,
      mac: vif.MAC,
      mtu: vif.MTU,
      network: { uuid: network.uuid, nameLabel: network.name_label, vlan },
      ...(vif.locking_mode ? { lockingMode: vif.locking_mode } : {}),
    });
  }
  const bySlot = (a: { userdevice: string }, b: { userdevice: string }) =>
    Number(a.userdevice) - Number(b.userdevice) || a.userdevice.localeCompare(b.userdevice);
  return {
    record: record as KeptVmFields,
    nvram: { ...(source.NVRAM ?? {}) },
    vtpm: await readVtpm(session, source),
    disks: disks.sort(bySlot),
    excludedDisks: [...excluded].sort(bySlot),
    removableDrives: removableDrives.sort(bySlot),
    vifs: vifs.sort((a, b) => Number(a.device) - Number(b.device)),
  };
}

/** The VM's vTPM state. xapi hands it to the local root account only: anything else cannot back it up. */
async function readVtpm(session: XapiSession, vm: VmRecord): Promise<VmDescription['vtpm']> {
  const [ref] = vm.VTPMs ?? [];
  if (ref === undefined) return null;
  const vtpm = await session.getVtpmRecord(ref);
  const contents = await session.getVtpmContents(ref).catch((error: unknown) => {
    if (isXapiError(error, 'RBAC_PERMISSION_DENIED')) {
      throw new XapiError('VTPM.get_contents', 'RBAC_PERMISSION_DENIED', [
        vm.uuid,
        `VM ${vm.name_label} has a vTPM, whose state xapi gives only to the pool's root account: ` +
          "use root's credentials in the pool's secret, or back up its disks by vdiUuids instead",
      ]);
    }
    throw error;
  });
  return { isUnique: vtpm.is_unique, contents };
}
