import { EXCLUDE_DISK_TAG } from '../../lambdas/vm/describe.ts';
import type { BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;

/**
 * The VM the VM tests back up and restore: "web-1", running, UEFI with NVRAM and a vTPM, three disks (the
 * root disk is the world's own VDI; the scratch disk carries the exclude tag), a CD drive, and two VIFs:
 * one on the management network, one on a VLAN 42 "storage" network with MTU 9000.
 */
export function addWebVm(world: BackupWorld) {
  const sr = world.sim.srs.shared.uuid;
  const data = world.sim.addVdi({
    virtualSize: 12 * MiB,
    populate: 'scattered',
    nameLabel: 'data',
    srUuid: sr,
  });
  const scratch = world.sim.addVdi({
    virtualSize: 4 * MiB,
    populate: 'scattered',
    nameLabel: 'scratch',
    srUuid: sr,
    tags: [EXCLUDE_DISK_TAG],
  });
  const disks = { root: world.vdiUuid, data: data.uuid, scratch: scratch.uuid };
  const networks = {
    lan: world.sim.managementNetwork.uuid,
    storage: world.sim.addNetwork({ nameLabel: 'storage', vlan: 42, mtu: 9000 }).uuid,
  };
  const nvram = { 'EFI-variables': Buffer.from('efi vars of web-1').toString('base64') };
  const vtpm = Buffer.from('vtpm state of web-1').toString('base64');
  const vmUuid = world.sim.addVm({
    nameLabel: 'web-1',
    nameDescription: 'the web server',
    powerState: 'Running',
    memory: 4 * 1024 * MiB,
    vcpus: 4,
    hvmBootParams: { order: 'c', firmware: 'uefi' },
    nvram,
    vtpm: { contents: vtpm },
    disks: [
      { vdiUuid: disks.root, userdevice: '0', bootable: true },
      { vdiUuid: disks.data, userdevice: '1' },
      { vdiUuid: disks.scratch, userdevice: '2' },
    ],
    cdDrives: ['3'],
    vifs: [
      { networkUuid: networks.lan, device: '0', mac: 'aa:bb:cc:00:00:01' },
      { networkUuid: networks.storage, device: '1', mac: 'aa:bb:cc:00:00:02', mtu: 9000 },
    ],
  }).uuid;
  return { vmUuid, disks, networks, nvram, vtpm };
}

/** The root disk's options for startBackupWorld: 8 MiB, scattered blocks. */
export const WEB_VM_ROOT_DISK = { virtualSize: 8 * MiB, populate: 'scattered', nameLabel: 'root' } as const;
