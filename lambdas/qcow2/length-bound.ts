import { CLUSTER_SIZE, ENTRIES_PER_CLUSTER, REFCOUNTS_PER_BLOCK } from './constants.ts';
import { decodeHeader } from './header.ts';

/** Bytes one refcount block of the host's layout accounts for: 32,768 clusters of 64 KiB (2 GiB). */
export const BYTES_PER_REFCOUNT_BLOCK = REFCOUNTS_PER_BLOCK * CLUSTER_SIZE;

/**
 * How long a stream of the host's layout can be, from its first bytes: the header names the refcount
 * table's clusters, which directly follow it, and every refcount block the table points to counts the
 * clusters of 2 GiB of the file, the last one partly (docs/design.md § QCOW2 stream). So once
 * `bytesNeeded` are in, the stream is at most `bound` bytes, within 2 GiB, whatever the virtual size.
 *
 * `needMore` asks for more bytes; `unknown` is a prefix this layout does not explain: the stream parser,
 * which reads the same bytes next, names the defect.
 */
export function qcow2LengthBound(
  prefix: Uint8Array,
):
  | { readonly kind: 'bound'; readonly bound: number }
  | { readonly kind: 'needMore'; readonly bytesNeeded: number }
  | { readonly kind: 'unknown' } {
  if (prefix.length < CLUSTER_SIZE) return { kind: 'needMore', bytesNeeded: CLUSTER_SIZE };
  let tableClusters: number;
  try {
    tableClusters = decodeHeader(prefix.subarray(0, CLUSTER_SIZE)).refcountTableClusters;
  } catch {
    return { kind: 'unknown' };
  }
  const bytesNeeded = (1 + tableClusters) * CLUSTER_SIZE;
  if (prefix.length < bytesNeeded) return { kind: 'needMore', bytesNeeded };
  const table = Buffer.from(prefix.buffer, prefix.byteOffset + CLUSTER_SIZE, tableClusters * CLUSTER_SIZE);
  let blocks = 0;
  for (let entry = 0; entry < tableClusters * ENTRIES_PER_CLUSTER; entry++) {
    if (table.readBigUInt64BE(entry * 8) !== 0n) blocks++;
  }
  return blocks === 0 ? { kind: 'unknown' } : { kind: 'bound', bound: blocks * BYTES_PER_REFCOUNT_BLOCK };
}
