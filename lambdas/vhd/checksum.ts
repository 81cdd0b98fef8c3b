/** VHD checksum: one's complement of the byte sum, with the checksum field's own 4 bytes taken as zero. */
export function vhdChecksum(structure: Uint8Array, checksumFieldOffset: number): number {
  let sum = 0;
  for (let i = 0; i < structure.length; i++) {
    if (i < checksumFieldOffset || i >= checksumFieldOffset + 4) sum += structure[i]!;
  }
  return ~sum >>> 0;
}
