import { describe, expect, it } from 'vitest';
import {
  parseVmManifest,
  vmManifestKey,
  vmSeriesPrefix,
  VM_MANIFEST_FORMAT_VERSION,
  type VmManifest,
} from '../../lambdas/catalog/vm-manifest.ts';
import { CatalogError } from '../../lambdas/catalog/manifest.ts';
import { isExcludedDisk, EXCLUDE_DISK_TAG } from '../../lambdas/vm/describe.ts';

const VM = '0b3d0a6e-5c1f-4a8e-9d2b-7f6e5d4c3b2a';
const DISK = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';

const manifest: VmManifest = {
  formatVersion: VM_MANIFEST_FORMAT_VERSION,
  vmBackupId: '20261201T120000.000Z-vm',
  pool: 'lab',
  vmUuid: VM,
  startedAt: '2026-12-01T12:00:00.000Z',
  endedAt: '2026-12-01T12:01:00.000Z',
  record: { name_label: 'web', memory_static_max: 2 ** 31, VCPUs_max: 2 },
  nvram: { 'EFI-variables': 'AAAA' },
  disks: [
    {
      userdevice: '0',
      bootable: true,
      mode: 'RW',
      vdiUuid: DISK,
      nameLabel: 'root',
      virtualSize: 2 ** 30,
      backupId: '20261201T120000.500Z-full',
    },
  ],
  excludedDisks: [],
  removableDrives: [{ userdevice: '3', type: 'CD', bootable: false }],
  vifs: [
    {
      device: '0',
      mac: 'aa:bb:cc:dd:ee:ff',
      mtu: 1500,
      network: { uuid: DISK, nameLabel: 'Pool-wide network', vlan: -1 },
    },
  ],
  vtpm: null,
};

describe('VM restore points', () => {
  it('live beside the disk series, under vms/<vm uuid>/', () => {
    expect(vmSeriesPrefix({ bucket: 'b', prefix: 'backups' }, 'lab', VM)).toBe(`backups/lab/vms/${VM}/`);
    expect(vmManifestKey({ bucket: 'b', prefix: '' }, 'lab', VM, 'id')).toBe(`lab/vms/${VM}/id.json`);
  });

  it('parse back what was written, and refuse a manifest a restore could not use, naming each problem', () => {
    expect(parseVmManifest(JSON.stringify(manifest), 'k')).toEqual(manifest);
    expect(() => parseVmManifest('{', 'k')).toThrow(new CatalogError('VM manifest k is not JSON'));
    const broken = { ...manifest, formatVersion: 9, vmUuid: '', disks: [{ userdevice: 0 }], vifs: undefined };
    expect(() => parseVmManifest(JSON.stringify(broken), 'k')).toThrow(
      'VM manifest k is invalid: formatVersion 9, vmUuid missing, disks[0] without vdiUuid and backupId, ' +
        'disks[0] without userdevice, vifs missing',
    );
    expect(() => parseVmManifest(JSON.stringify({ ...manifest, disks: [] }), 'k')).toThrow(/no disks/);
  });

  it('exclude a disk by its tag or by other_config', () => {
    expect(isExcludedDisk({ other_config: {}, tags: [EXCLUDE_DISK_TAG] })).toBe(true);
    expect(isExcludedDisk({ other_config: { [EXCLUDE_DISK_TAG]: 'true' } })).toBe(true);
    expect(isExcludedDisk({ other_config: { [EXCLUDE_DISK_TAG]: 'false' }, tags: ['other'] })).toBe(false);
  });
});
