import type { RangeReader } from '../vhd/index.ts';
import { CLUSTER_SIZE } from './constants.ts';
import { Qcow2TruncatedError } from './errors.ts';
import { decodeHeader } from './header.ts';

/**
 * The virtual size a stored qcow2's header declares, from one ranged read of its first cluster (checked as
 * the parser checks a header). The host's qcow2 importer writes whatever fits without comparing sizes, so
 * this is what a restore compares with the target VDI before sending a byte.
 */
export async function readQcow2VirtualSize(read: RangeReader, fileSize: number): Promise<number> {
  if (fileSize < CLUSTER_SIZE) {
    throw new Qcow2TruncatedError(`the header: the object ends at ${fileSize}`, fileSize);
  }
  return decodeHeader(await read(0, CLUSTER_SIZE)).virtualSize;
}
