import { isXapiError, XapiError, type Ref, type VmRecord, type XapiSession } from '../xapi/index.ts';

/** A VM chosen for backup, and why it was chosen. */
export interface SelectedVm {
  readonly uuid: string;
  readonly ref: Ref;
  readonly nameLabel: string;
  /** `uuid`, or the tags of the selection it carries. */
  readonly selectedBy: 'uuid' | readonly string[];
}

/** The selection matched no VM: never a silent success, since a job that backs up nothing protects nothing. */
export class NothingToBackUpError extends Error {
  override readonly name = 'NothingToBackUp';
}

/** What a VM backup cannot take: templates, snapshots and the control domain are not VMs to protect. */
function notBackable(vm: VmRecord): string | undefined {
  if (vm.is_control_domain) return 'is the control domain (dom0)';
  if (vm.is_a_snapshot) return 'is a snapshot; back up the VM itself';
  if (vm.is_a_template) return 'is a template';
  return undefined;
}

/**
 * The VMs a backup takes: each of `vmUuids` (an unknown one or one that is not a VM to back up fails the
 * selection, naming it), then every VM carrying one of `tags` when the run starts, read from the pool
 * then, so a VM tagged after the job was deployed is taken. Each VM once, uuids first.
 */
export async function selectVms(
  session: XapiSession,
  selection: { readonly vmUuids: readonly string[]; readonly tags: readonly string[] },
  pool: string,
): Promise<SelectedVm[]> {
  const selected: SelectedVm[] = [];
  for (const uuid of selection.vmUuids) {
    const ref = await session.getVmByUuid(uuid).catch((error: unknown) => {
      if (isXapiError(error, 'UUID_INVALID')) {
        throw new XapiError('VM.get_by_uuid', 'UUID_INVALID', ['VM', uuid, `no such VM in pool ${pool}`]);
      }
      throw error;
    });
    const vm = await session.getVmRecord(ref);
    const problem = notBackable(vm);
    if (problem) throw new XapiError('select', 'VM_NOT_BACKABLE', [uuid, `${vm.name_label} ${problem}`]);
    selected.push({ uuid, ref, nameLabel: vm.name_label, selectedBy: 'uuid' });
  }
  if (selection.tags.length === 0) return selected;
  const wanted = new Set(selection.tags);
  const all = await session.getAllVmRecords();
  const seen = new Set(selected.map((vm) => vm.uuid));
  const tagsInPool = new Set<string>();
  const byTag = Object.entries(all)
    .filter(([, vm]) => notBackable(vm) === undefined)
    .map(([ref, vm]) => {
      vm.tags.forEach((tag) => tagsInPool.add(tag));
      return { ref, vm, matched: vm.tags.filter((tag) => wanted.has(tag)) };
    })
    .filter(({ matched }) => matched.length > 0)
    .sort((a, b) => a.vm.name_label.localeCompare(b.vm.name_label) || a.vm.uuid.localeCompare(b.vm.uuid));
  if (byTag.length === 0 && selected.length === 0) {
    const known = [...tagsInPool].sort();
    throw new NothingToBackUpError(
      `no VM of pool ${pool} carries ${selection.tags.map((tag) => JSON.stringify(tag)).join(' or ')}` +
        (known.length
          ? `; its VMs carry ${known.map((tag) => JSON.stringify(tag)).join(', ')}`
          : '; no VM of it has a tag') +
        '. Tag the VMs to protect (xe vm-param-add param-name=tags param-key=<tag> uuid=<vm>), or fix the tag.',
    );
  }
  for (const { ref, vm, matched } of byTag) {
    if (seen.has(vm.uuid)) continue;
    seen.add(vm.uuid);
    selected.push({ uuid: vm.uuid, ref, nameLabel: vm.name_label, selectedBy: matched });
  }
  return selected;
}
