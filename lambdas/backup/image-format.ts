import type { ImageFormat } from '../catalog/manifest.ts';
import type { VdiRecord } from '../xapi/index.ts';

const GiB = 1024 ** 3;

/** The largest VHD a host makes or exports (2040 GiB): a bigger VDI is qcow2 on XCP-ng, and only qcow2 exports it. */
export const MAX_VHD_VIRTUAL_SIZE = 2040 * GiB;
/** xapi accepts `format=qcow2` on export_raw_vdi and import_raw_vdi from this version. */
export const QCOW2_MIN_XAPI_VERSION = '25.27.0';

/**
 * The format a VDI's backups travel in: qcow2 when the VDI is qcow2-backed (`sm_config["image-format"]`)
 * or larger than a VHD can be; vhd otherwise (a qcow2 export of a VHD-backed VDI reads the whole device,
 * so vhd stays cheaper there). `reason` says which, for a chain that changes format.
 */
export function imageFormatOf(vdi: Pick<VdiRecord, 'sm_config' | 'virtual_size'>): {
  readonly format: ImageFormat;
  readonly reason: string;
} {
  if (vdi.sm_config?.['image-format'] === 'qcow2')
    return { format: 'qcow2', reason: 'the VDI is qcow2-backed' };
  if (vdi.virtual_size > MAX_VHD_VIRTUAL_SIZE) {
    return { format: 'qcow2', reason: `the VDI is larger than ${MAX_VHD_VIRTUAL_SIZE} bytes (2040 GiB)` };
  }
  return { format: 'vhd', reason: 'the VDI is not qcow2-backed' };
}

/** Compares dotted versions numerically (`25.27.0` ≥ `25.9.1`); a part that is no number counts as 0. */
export function versionAtLeast(version: string, minimum: string): boolean {
  const parts = (text: string) => text.split('.').map((part) => Number.parseInt(part, 10) || 0);
  const have = parts(version);
  const need = parts(minimum);
  for (let i = 0; i < Math.max(have.length, need.length); i++) {
    const a = have[i] ?? 0;
    const b = need[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

/** The pool's xapi cannot transfer qcow2: a VDI that needs it cannot be backed up there. */
export class UnsupportedImageFormatError extends Error {
  override readonly name = 'UnsupportedImageFormatError';
}

/** Throws UnsupportedImageFormatError unless the pool master's xapi speaks `format=qcow2`. */
export function checkQcow2Support(xapiVersion: string | undefined, vdiUuid: string, why: string): void {
  if (xapiVersion !== undefined && versionAtLeast(xapiVersion, QCOW2_MIN_XAPI_VERSION)) return;
  throw new UnsupportedImageFormatError(
    `VDI ${vdiUuid} needs a qcow2 backup (${why}), and qcow2 exports need xapi ${QCOW2_MIN_XAPI_VERSION} ` +
      `or later on the pool master, which runs xapi ${xapiVersion ?? '(unknown version)'}: update the pool ` +
      `(XCP-ng 8.3 with qcow2 support) to back this VDI up`,
  );
}
