/** Bodies for the S3 server tests (Swift and the embedded server alike). */
import { Readable } from 'node:stream';

/** Deterministic, non-repeating-looking bytes (zeros would hide offset mistakes). */
export function patternBytes(length: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    bytes.writeUInt32LE(x, Math.min(i, length - 4));
  }
  return bytes;
}

/** Streams `data` in uneven chunks, like a network body with no known length. */
export function streamOf(data: Buffer, chunk = 64 * 1024 + 7): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < data.length; offset += chunk) yield data.subarray(offset, offset + chunk);
    })(),
  );
}
