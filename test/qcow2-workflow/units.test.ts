import { describe, expect, it } from 'vitest';
import {
  checkQcow2Support,
  imageFormatOf,
  MAX_VHD_VIRTUAL_SIZE,
  UnsupportedImageFormatError,
  versionAtLeast,
} from '../../lambdas/backup/image-format.ts';
import { objectKey } from '../../lambdas/catalog/keys.ts';
import { CatalogError, formatOf, parseManifest } from '../../lambdas/catalog/manifest.ts';
import {
  exportUpperBound,
  qcow2ExportUpperBound,
  vhdExportUpperBound,
} from '../../lambdas/export/part-size.ts';
import { CLUSTER_SIZE, qcow2ByteLength } from '../../lambdas/qcow2/index.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('qcow2 units of the workflows', () => {
  it('chooses qcow2 for qcow2-backed VDIs and for VDIs over 2040 GiB, vhd otherwise', () => {
    expect(imageFormatOf({ virtual_size: GiB, sm_config: { 'image-format': 'qcow2' } }).format).toBe('qcow2');
    expect(imageFormatOf({ virtual_size: GiB, sm_config: { 'image-format': 'vhd' } }).format).toBe('vhd');
    expect(imageFormatOf({ virtual_size: GiB, sm_config: {} }).format).toBe('vhd');
    expect(imageFormatOf({ virtual_size: GiB }).format).toBe('vhd');
    expect(MAX_VHD_VIRTUAL_SIZE).toBe(2_190_433_320_960);
    expect(imageFormatOf({ virtual_size: MAX_VHD_VIRTUAL_SIZE, sm_config: {} }).format).toBe('vhd');
    expect(imageFormatOf({ virtual_size: MAX_VHD_VIRTUAL_SIZE + 512, sm_config: {} }).format).toBe('qcow2');
  });

  it('compares xapi versions numerically and names both versions and the VDI when qcow2 is unsupported', () => {
    expect(versionAtLeast('25.27.0', '25.27.0')).toBe(true);
    expect(versionAtLeast('26.1.3', '25.27.0')).toBe(true);
    expect(versionAtLeast('25.100', '25.27.0')).toBe(true);
    expect(versionAtLeast('25.9.9', '25.27.0')).toBe(false);
    expect(versionAtLeast('24.39.1', '25.27.0')).toBe(false);
    expect(() => checkQcow2Support('26.1.3', 'v', 'why')).not.toThrow();
    const refuse = () => checkQcow2Support('25.20.1', 'vdi-1', 'the VDI is qcow2-backed');
    expect(refuse).toThrow(UnsupportedImageFormatError);
    expect(refuse).toThrow(/VDI vdi-1 .*xapi 25\.27\.0 or later.*runs xapi 25\.20\.1/);
    expect(() => checkQcow2Support(undefined, 'vdi-1', 'why')).toThrow(/unknown version/);
  });

  it('bounds a qcow2 export by every cluster present, metadata included', () => {
    for (const size of [0, 512, CLUSTER_SIZE, 64 * MiB + 512, 5 * GiB + 3 * CLUSTER_SIZE]) {
      const all = Array.from({ length: Math.ceil(size / CLUSTER_SIZE) }, (_, i) => i);
      expect(qcow2ExportUpperBound(size)).toBe(qcow2ByteLength(size, all));
    }
    expect(qcow2ExportUpperBound(3 * 1024 * GiB)).toBeGreaterThan(3 * 1024 * GiB);
    expect(exportUpperBound('qcow2', GiB)).toBe(qcow2ExportUpperBound(GiB));
    expect(exportUpperBound('vhd', GiB)).toBe(vhdExportUpperBound(GiB));
  });

  it('records the format in manifests and keys; a manifest without one is vhd', () => {
    const location = { bucket: 'b', prefix: 'p' };
    expect(objectKey(location, 'lab', 'u', 'id')).toBe('p/lab/u/id.vhd');
    expect(objectKey(location, 'lab', 'u', 'id', 'qcow2')).toBe('p/lab/u/id.qcow2');
    const manifest = {
      formatVersion: 1,
      backupId: 'id',
      kind: 'full',
      parentBackupId: null,
      pool: 'lab',
      vdiUuid: 'u',
      snapshotUuid: 's',
      objectKey: 'p/lab/u/id.vhd',
      sha256: 'x',
      virtualSize: MiB,
      bytes: 10,
      presentBlocks: 1,
    };
    expect(formatOf(parseManifest(JSON.stringify(manifest), 'k'))).toBe('vhd');
    expect(formatOf(parseManifest(JSON.stringify({ ...manifest, format: 'qcow2' }), 'k'))).toBe('qcow2');
    expect(() => parseManifest(JSON.stringify({ ...manifest, format: 'raw' }), 'k')).toThrow(CatalogError);
  });
});
