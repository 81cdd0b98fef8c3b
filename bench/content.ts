import { createHash } from 'node:crypto';

/** A VHD footer's fields that differ between two exports of the same disk: timestamp, checksum, unique id. */
const IDENTITY_FIELDS: readonly (readonly [number, number])[] = [
  [24, 28],
  [64, 84],
];
const FOOTER = 512;

/**
 * A sha256 of a VHD stream of `length` bytes with its footers' (the copy at the start, the footer at the
 * end) timestamp, checksum and unique id zeroed: two exports of the same disk content, by the host, by
 * ours or by the peer, then hash alike, and any other byte that differs shows.
 */
export function vhdContentDigest(length: number) {
  const hash = createHash('sha256');
  let position = 0;
  const blanked = new Set<number>();
  for (const base of [0, length - FOOTER]) {
    for (const [from, to] of IDENTITY_FIELDS)
      for (let at = base + from; at < base + to; at++) blanked.add(at);
  }
  return {
    update(chunk: Uint8Array): void {
      const end = position + chunk.length;
      const touches = position < FOOTER || end > length - FOOTER;
      if (touches) {
        const copy = Buffer.from(chunk);
        for (let at = position; at < end; at++) if (blanked.has(at)) copy[at - position] = 0;
        hash.update(copy);
      } else hash.update(chunk);
      position = end;
    },
    digest(): string {
      if (position !== length) throw new Error(`the stream held ${position} bytes, not ${length}`);
      return hash.digest('hex');
    },
  };
}
