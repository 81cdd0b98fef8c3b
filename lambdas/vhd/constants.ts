export const SECTOR_SIZE = 512;
/** Bytes of data per block in every VHD the host exports and qemu-img writes. */
export const VHD_BLOCK_SIZE = 2 * 1024 * 1024;
export const FOOTER_SIZE = 512;
export const DYNAMIC_HEADER_SIZE = 1024;
/** Where the host's exports put the BAT: after the footer copy, the header and one zero sector. */
export const HOST_TABLE_OFFSET = 2048;
/** BAT entry of a block that is not present. */
export const ABSENT_BLOCK = 0xffffffff;

export const FOOTER_COOKIE = 'conectix';
export const DYNAMIC_HEADER_COOKIE = 'cxsparse';
export const FILE_FORMAT_VERSION = 0x00010000;
export const DYNAMIC_HEADER_VERSION = 0x00010000;
/** Creator application written by xapi's VHD tooling; qemu-img trusts the footer's size for it. */
export const CREATOR_APPLICATION = 'tap\0';
export const CREATOR_VERSION = 0x00010003;
export const CREATOR_HOST_OS = 'Wi2k';

// Bounds checked before anything is allocated from a size read out of an untrusted stream.
/** VHD exports stop at 2040 GiB; twice that leaves room for other writers' rounding. */
export const MAX_VIRTUAL_SIZE = 2 * 2040 * 1024 ** 3;
export const MAX_TABLE_ENTRIES = 2 ** 24;
/** Most blocks a disk may have (16 MiB of BAT in memory at worst; 4080 GiB of 2 MiB blocks needs 2^21). */
export const MAX_BLOCK_COUNT = 2 ** 22;
export const MIN_BLOCK_SIZE = SECTOR_SIZE;
export const MAX_BLOCK_SIZE = 32 * 1024 * 1024;
/** Longest run of unused bytes skipped between structures (other writers align or leave holes). */
export const MAX_GAP_BYTES = 64 * 1024 * 1024;
