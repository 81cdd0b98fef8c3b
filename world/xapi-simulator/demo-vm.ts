import type { XapiSimulator } from './index.ts';

/**
 * The one VM `npm run sim` seeds and `npm start` backs up and restores whole ("demo vm", halted, UEFI with
 * NVRAM): `bootVdiUuid` as its boot disk, a 64 MiB second disk made here, an empty CD drive, and two VIFs,
 * on the management network and on a VLAN 42 "storage" network.
 */
export function addDemoVm(
  sim: XapiSimulator,
  bootVdiUuid: string,
  options: { readonly onMember?: boolean } = {},
): { readonly uuid: string; readonly nameLabel: string; readonly disks: readonly string[] } {
  const second = sim.addVdi({
    virtualSize: 64 * 1024 * 1024,
    nameLabel: 'demo data disk',
    populate: 'scattered',
    ...(options.onMember ? { onMember: true } : {}),
    seed: 2,
  });
  const storage = sim.addNetwork({ nameLabel: 'storage', vlan: 42, mtu: 9000 });
  const nameLabel = 'demo vm';
  const vm = sim.addVm({
    nameLabel,
    hvmBootParams: { order: 'c', firmware: 'uefi' },
    nvram: { 'EFI-variables': Buffer.from('demo vm EFI variables').toString('base64') },
    disks: [
      { vdiUuid: bootVdiUuid, userdevice: '0', bootable: true },
      { vdiUuid: second.uuid, userdevice: '1' },
    ],
    cdDrives: ['3'],
    vifs: [
      { networkUuid: sim.managementNetwork.uuid, device: '0' },
      { networkUuid: storage.uuid, device: '1', mtu: 9000 },
    ],
  });
  return { uuid: vm.uuid, nameLabel, disks: [bootVdiUuid, second.uuid] };
}
