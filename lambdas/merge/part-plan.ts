/**
 * How a synthetic full is assembled from S3 multipart parts (docs/design.md § Forever incremental): a
 * run of bytes that sits contiguously in one stored object and is long enough for a part of its own is
 * copied inside S3 (`UploadPartCopy` with a range); everything else (the new head and footer, runs too
 * short for a part) is read and uploaded, together with its neighbours, through our compute.
 */

/** A piece of the new object: bytes we write, or a range of an existing object. */
export type Piece =
  | { readonly kind: 'bytes'; readonly data: Uint8Array }
  | { readonly kind: 'range'; readonly key: string; readonly start: number; readonly length: number };

/** One part of the multipart upload, in order. */
export type PlannedPart =
  | { readonly kind: 'copy'; readonly key: string; readonly start: number; readonly length: number }
  | { readonly kind: 'upload'; readonly pieces: readonly Piece[]; readonly length: number };

/** S3's multipart rules (design.md, AWS limits). */
export const S3_PART_RULES = {
  minPartBytes: 5 * 1024 * 1024,
  maxPartBytes: 5 * 1024 * 1024 * 1024,
  maxParts: 10_000,
} as const;

export interface PartPlanLimits {
  readonly minPartBytes: number;
  readonly maxPartBytes: number;
  readonly maxParts: number;
  /** The size an uploaded part grows to before it is sent (bounds memory). Default 4 × minPartBytes. */
  readonly uploadPartBytes?: number;
}

export function pieceLength(piece: Piece): number {
  return piece.kind === 'bytes' ? piece.data.length : piece.length;
}

/**
 * Plans the parts: every part but the last at least `minPartBytes`, none above `maxPartBytes`, at most
 * `maxParts`. A range becomes copy parts when it is at least the copy threshold; a shorter one joins the
 * uploaded part being gathered. When a disk is so fragmented that the parts would exceed `maxParts`, the
 * threshold and the uploaded part size double until they fit (more bytes then pass through compute).
 */
export function planParts(pieces: readonly Piece[], limits: PartPlanLimits = S3_PART_RULES): PlannedPart[] {
  let copyThreshold = limits.minPartBytes;
  let uploadPartBytes = Math.max(limits.uploadPartBytes ?? 4 * limits.minPartBytes, limits.minPartBytes);
  for (;;) {
    const parts = planWith(pieces, limits, copyThreshold, uploadPartBytes);
    if (parts.length <= limits.maxParts) return parts;
    if (uploadPartBytes >= limits.maxPartBytes) {
      throw new RangeError(
        `the object needs more than ${limits.maxParts} parts of ${limits.maxPartBytes} bytes`,
      );
    }
    copyThreshold = Math.min(copyThreshold * 2, limits.maxPartBytes);
    uploadPartBytes = Math.min(uploadPartBytes * 2, limits.maxPartBytes);
  }
}

function planWith(
  pieces: readonly Piece[],
  limits: PartPlanLimits,
  copyThreshold: number,
  uploadPartBytes: number,
): PlannedPart[] {
  const parts: PlannedPart[] = [];
  let gathered: Piece[] = [];
  let gatheredBytes = 0;
  const gather = (piece: Piece) => {
    gathered.push(piece);
    gatheredBytes += pieceLength(piece);
  };
  const flush = () => {
    if (gatheredBytes > 0) parts.push({ kind: 'upload', pieces: gathered, length: gatheredBytes });
    gathered = [];
    gatheredBytes = 0;
  };
  // A gathered part may be split only where it has reached the minimum; an uploaded part above the
  // maximum is cut at a piece boundary or inside a range.
  const gatherBounded = (piece: Piece) => {
    let rest: Piece | undefined = piece;
    while (rest) {
      if (gatheredBytes >= uploadPartBytes) flush();
      const room = uploadPartBytes - gatheredBytes;
      if (pieceLength(rest) <= room) {
        gather(rest);
        rest = undefined;
      } else {
        const [head, tail] = split(rest, room);
        gather(head);
        rest = tail;
      }
      if (gatheredBytes >= uploadPartBytes) flush();
    }
  };
  for (const piece of pieces) {
    if (piece.kind === 'bytes' || piece.length < copyThreshold) {
      gatherBounded(piece);
      continue;
    }
    let range: Piece = piece;
    if (gatheredBytes > 0 && gatheredBytes < limits.minPartBytes) {
      // The gathered bytes can't be a part alone: they borrow the start of this range.
      const [head, tail] = split(range, limits.minPartBytes - gatheredBytes);
      gather(head);
      if (!tail) continue;
      range = tail;
      if (pieceLength(range) < copyThreshold) {
        gatherBounded(range);
        continue;
      }
    }
    flush();
    const length = pieceLength(range);
    const count = Math.ceil(length / limits.maxPartBytes);
    const size = Math.ceil(length / count);
    const { key, start } = range as Extract<Piece, { kind: 'range' }>;
    for (let offset = 0; offset < length; offset += size) {
      parts.push({ kind: 'copy', key, start: start + offset, length: Math.min(size, length - offset) });
    }
  }
  flush();
  return parts;
}

/** Cuts a piece after `length` bytes (`length` > 0); the tail is undefined when nothing is left. */
function split(piece: Piece, length: number): [Piece, Piece | undefined] {
  if (length >= pieceLength(piece)) return [piece, undefined];
  if (piece.kind === 'bytes') {
    return [
      { kind: 'bytes', data: piece.data.subarray(0, length) },
      { kind: 'bytes', data: piece.data.subarray(length) },
    ];
  }
  return [
    { kind: 'range', key: piece.key, start: piece.start, length },
    { kind: 'range', key: piece.key, start: piece.start + length, length: piece.length - length },
  ];
}
