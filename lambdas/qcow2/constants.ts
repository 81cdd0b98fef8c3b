// The host's qcow2 layout (docs/design.md § QCOW2 stream). All integers are big-endian.
export const CLUSTER_BITS = 16;
/** Bytes per cluster: every structure of the host's layout fills whole clusters. */
export const CLUSTER_SIZE = 1 << CLUSTER_BITS;
/** 8-byte entries per L1, L2 or refcount table cluster. */
export const ENTRIES_PER_CLUSTER = CLUSTER_SIZE / 8;
export const REFCOUNT_ORDER = 4;
/** 16-bit refcounts per refcount block. */
export const REFCOUNTS_PER_BLOCK = (CLUSTER_SIZE * 8) / (1 << REFCOUNT_ORDER);
export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const QCOW2_VERSION = 3;
export const HEADER_LENGTH = 112;
/** L1 and L2 entries of the host set this bit ("refcount is exactly one") beside every offset. */
export const COPIED_FLAG = 1n << 63n;
/** Sizes are whole sectors, as the host's exporter rounds them. */
export const SECTOR_SIZE = 512;

// Bounds checked before anything is allocated from a size read out of an untrusted stream.
/** XCP-ng's qcow2 VDIs stop at 16,381 GiB; twice that bounds the one-bit-per-cluster map at 64 MiB. */
export const MAX_VIRTUAL_SIZE = 2 ** 45;
