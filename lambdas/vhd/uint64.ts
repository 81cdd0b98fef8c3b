/** Reads a 64-bit big-endian field as a number, or undefined when it exceeds 2^53 - 1. */
export function readSafeUint64(bytes: Uint8Array, offset: number): number | undefined {
  const value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readBigUInt64BE(offset);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

export function writeUint64(bytes: Uint8Array, offset: number, value: number): void {
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).writeBigUInt64BE(BigInt(value), offset);
}
