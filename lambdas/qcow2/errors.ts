/** A defect in a qcow2 stream. `offset` is the stream offset of the offending field or of where bytes ran out. */
export class Qcow2FormatError extends Error {
  readonly code: string;
  readonly offset: number;

  constructor(code: string, message: string, offset: number) {
    super(`${message} (at byte ${offset})`);
    this.name = new.target.name;
    this.code = code;
    this.offset = offset;
  }
}

export class Qcow2MagicError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_MAGIC', message, offset);
  }
}

/**
 * A header field differs from what the host writes (version, cluster size, backing file, encryption,
 * snapshots, feature bits, refcount width, header length, compression, table offsets and sizes). `field`
 * is the name of the field in the QEMU specification.
 */
export class Qcow2HeaderError extends Qcow2FormatError {
  readonly field: string;

  constructor(field: string, message: string, offset: number) {
    super('QCOW2_HEADER', `header field ${field}: ${message}`, offset);
    this.field = field;
  }
}

/** Cluster 0 after the header: the feature-name table, the end-of-extensions marker or the zero padding. */
export class Qcow2ExtensionError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_EXTENSION', message, offset);
  }
}

/** A refcount table or block entry differs from the host's, or the refcounts do not count the file. */
export class Qcow2RefcountError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_REFCOUNT', message, offset);
  }
}

/**
 * An L1 or L2 entry the host never writes: flags other than "copied" (the zero flag, compression),
 * reserved bits, an offset not on a cluster, or a present entry past the disk's end.
 */
export class Qcow2TableEntryError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_TABLE_ENTRY', message, offset);
  }
}

/** An L1 entry that is not the next L2 table: the host writes them one after another, in L1 order. */
export class Qcow2L2OrderError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_L2_ORDER', message, offset);
  }
}

/** An L2 entry that is not the next data cluster: a gap, a reorder or a repeat in the data. */
export class Qcow2DataOrderError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_DATA_ORDER', message, offset);
  }
}

/** The header's virtual size is not the size the caller expected (qcow2 has no checksum to catch it). */
export class Qcow2SizeMismatchError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_SIZE_MISMATCH', message, offset);
  }
}

/** The stream ended early; `expected` names what was being read. */
export class Qcow2TruncatedError extends Qcow2FormatError {
  readonly expected: string;

  constructor(expected: string, offset: number) {
    super('QCOW2_TRUNCATED', `stream ended while reading ${expected}`, offset);
    this.expected = expected;
  }
}

/** Bytes past the end the metadata computes. */
export class Qcow2TrailingDataError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_TRAILING_DATA', message, offset);
  }
}

/** A size beyond what any disk of the host needs, refused before anything is allocated from it. */
export class Qcow2LimitError extends Qcow2FormatError {
  constructor(message: string, offset: number) {
    super('QCOW2_LIMIT', message, offset);
  }
}

/**
 * The host wrote an HTTP error response into the body after its 200: at byte 0 (the export failed before
 * any data) or where the image broke off or should have ended (a failure after data had gone). `offset`
 * is where the status line starts.
 */
export class Qcow2HttpErrorInBody extends Qcow2FormatError {
  readonly statusLine: string;
  /** NaN when the status line carries no number. */
  readonly statusCode: number;

  constructor(statusLine: string, offset: number) {
    super('HTTP_ERROR_IN_BODY', `the export body holds an HTTP error response: ${statusLine}`, offset);
    this.statusLine = statusLine;
    this.statusCode = Number.parseInt(statusLine.split(' ')[1] ?? '', 10);
  }
}
