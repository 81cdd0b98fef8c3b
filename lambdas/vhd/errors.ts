/** A defect in a VHD stream. `offset` is the stream offset of the offending field or of where bytes ran out. */
export class VhdFormatError extends Error {
  readonly code: string;
  readonly offset: number;

  constructor(code: string, message: string, offset: number) {
    super(`${message} (at byte ${offset})`);
    this.name = new.target.name;
    this.code = code;
    this.offset = offset;
  }
}

export class VhdFooterCookieError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_FOOTER_COOKIE', message, offset);
  }
}

export class VhdFooterChecksumError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_FOOTER_CHECKSUM', message, offset);
  }
}

export class VhdHeaderCookieError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_HEADER_COOKIE', message, offset);
  }
}

export class VhdHeaderChecksumError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_HEADER_CHECKSUM', message, offset);
  }
}

/** Block size not a power of two, not a multiple of 512, or outside the supported range. */
export class VhdBlockSizeError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_BLOCK_SIZE', message, offset);
  }
}

/** Table offset or size out of range, table too small for the disk, an entry into metadata or past the disk. */
export class VhdBatBoundsError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_BAT_BOUNDS', message, offset);
  }
}

/** Blocks overlap in file order: an entry points behind where the previous block ends (forward-only parsing). */
export class VhdBlockOrderError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_BLOCK_ORDER', message, offset);
  }
}

/**
 * A block's sector bitmap does not mark every sector. The host always writes full bitmaps, so a cleared bit
 * is damage: read as "sector absent", it would silently turn data into zeros. `offset` is the stream offset
 * of the first bitmap byte that lacks a bit.
 */
export class VhdBitmapNotFullError extends VhdFormatError {
  readonly blockIndex: number;

  constructor(blockIndex: number, offset: number, byte: number) {
    super(
      'VHD_BITMAP_NOT_FULL',
      `the sector bitmap of block ${blockIndex} is not full (byte 0x${byte.toString(16).padStart(2, '0')})`,
      offset,
    );
    this.blockIndex = blockIndex;
  }
}

export class VhdFooterMismatchError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_FOOTER_MISMATCH', message, offset);
  }
}

/** The stream ended early; `expected` names what was being read. */
export class VhdTruncatedError extends VhdFormatError {
  readonly expected: string;

  constructor(expected: string, offset: number) {
    super('VHD_TRUNCATED', `stream ended while reading ${expected}`, offset);
    this.expected = expected;
  }
}

export class VhdTrailingDataError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_TRAILING_DATA', message, offset);
  }
}

/** A size or count beyond what any sane VHD needs, refused before anything is allocated from it. */
export class VhdLimitError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_LIMIT', message, offset);
  }
}

/** Well-formed but not something we handle: fixed disks, unknown versions. */
export class VhdUnsupportedError extends VhdFormatError {
  constructor(message: string, offset: number) {
    super('VHD_UNSUPPORTED', message, offset);
  }
}

/** The host wrote a whole HTTP error response into the body after its 200: a failure, never disk data. */
export class HttpErrorInBody extends VhdFormatError {
  readonly statusLine: string;
  /** NaN when the status line carries no number. */
  readonly statusCode: number;

  constructor(statusLine: string) {
    super('HTTP_ERROR_IN_BODY', `the export body is an HTTP error response: ${statusLine}`, 0);
    this.statusLine = statusLine;
    this.statusCode = Number.parseInt(statusLine.split(' ')[1] ?? '', 10);
  }
}
