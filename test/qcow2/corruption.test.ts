import { beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_SIZE,
  Qcow2DataOrderError,
  Qcow2ExtensionError,
  Qcow2FormatError,
  Qcow2HeaderError,
  Qcow2HttpErrorInBody,
  Qcow2L2OrderError,
  Qcow2LimitError,
  Qcow2MagicError,
  Qcow2RefcountError,
  Qcow2SizeMismatchError,
  Qcow2StreamParser,
  Qcow2TableEntryError,
  Qcow2TrailingDataError,
  Qcow2TruncatedError,
} from '../../lambdas/qcow2/index.ts';
import { chunksOf } from '../vhd/disks.ts';
import { makeDisk, parseError, qcow2Bytes } from './disks.ts';
import type { Qcow2StreamParserOptions } from '../../lambdas/qcow2/index.ts';

const cs = CLUSTER_SIZE;
const MiB = 1024 * 1024;
// The sample: N = 8321 guest clusters (l1_size 2); clusters 0, 2 in the first L2 table, 8200, 8320 in the
// second. Header, refcount table, refcount block, L1, two L2 tables, four data clusters.
const SIZE = 520 * MiB + 1536;
const RT = cs;
const RB = 2 * cs;
const L1 = 3 * cs;
const L2A = 4 * cs;
const L2B = 5 * cs;
const DATA = 6 * cs;
const END = 10 * cs;
const PAGE = Buffer.from(
  'HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n' +
    '<html><body><h1>HTTP 500 internal server error</h1>VDI_IO_ERROR</body></html>',
);

let sample: Buffer;
beforeAll(async () => {
  sample = await qcow2Bytes(makeDisk(SIZE, [0, 2, 8200, 8320]));
  expect(sample.length).toBe(END);
});

type ErrorClass = abstract new (...args: never[]) => Qcow2FormatError;

/** Parses whole, then in small and odd chunks: the same error class, code and offset every time. */
function expectDefect(
  bytes: Uint8Array,
  errorClass: ErrorClass,
  offset: number,
  options?: Qcow2StreamParserOptions,
): Qcow2FormatError {
  const whole = parseError([bytes], options);
  const pieces = parseError(chunksOf(bytes, [1, 7, 509, 3000, 65536, 1_000_003]), options);
  for (const error of [whole, pieces]) {
    expect(error).toBeInstanceOf(errorClass);
    expect((error as Qcow2FormatError).offset).toBe(offset);
    expect((error as Qcow2FormatError).code).toBe((whole as Qcow2FormatError).code);
  }
  return whole as Qcow2FormatError;
}

function mutated(edit: (bytes: Buffer) => void): Buffer {
  const copy = Buffer.from(sample);
  edit(copy);
  return copy;
}

const copied = (offset: number) => (1n << 63n) | BigInt(offset);

describe('Qcow2StreamParser rejects', () => {
  it('a bad magic', () => {
    const error = expectDefect(
      mutated((b) => (b[3] = 0xfc)),
      Qcow2MagicError,
      0,
    );
    expect(error.code).toBe('QCOW2_MAGIC');
  });

  const fields: [string, number, 4 | 8, number][] = [
    ['version', 4, 4, 2],
    ['backing_file_offset', 8, 8, 4096],
    ['backing_file_size', 16, 4, 10],
    ['cluster_bits', 20, 4, 21],
    ['crypt_method', 32, 4, 1],
    ['l1_size', 36, 4, 3],
    ['refcount_table_offset', 48, 8, 2 * cs],
    ['refcount_table_clusters', 56, 4, 2],
    ['refcount_table_clusters', 56, 4, 0],
    ['nb_snapshots', 60, 4, 1],
    ['snapshots_offset', 64, 8, 7 * cs],
    ['incompatible_features', 72, 8, 1],
    ['compatible_features', 80, 8, 1],
    ['autoclear_features', 88, 8, 2],
    ['refcount_order', 96, 4, 5],
    ['header_length', 100, 4, 104],
    ['size', 24, 8, SIZE + 1],
    ['l1_table_offset', 40, 8, 4 * cs],
  ];
  for (const [field, at, width, value] of fields) {
    it(`header field ${field} = ${value}`, () => {
      const error = expectDefect(
        mutated((b) => (width === 4 ? b.writeUInt32BE(value, at) : b.writeBigUInt64BE(BigInt(value), at))),
        Qcow2HeaderError,
        at,
      );
      expect((error as Qcow2HeaderError).field).toBe(field);
      expect(error.message).toContain(field);
    });
  }

  it('a compression type or header padding other than zero', () => {
    expect(
      (
        expectDefect(
          mutated((b) => (b[104] = 1)),
          Qcow2HeaderError,
          104,
        ) as Qcow2HeaderError
      ).field,
    ).toBe('compression_type');
    expectDefect(
      mutated((b) => (b[109] = 1)),
      Qcow2HeaderError,
      109,
    );
  });

  it('a virtual size beyond the limit, without allocating it', () => {
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(2n ** 60n, 24)),
      Qcow2LimitError,
      24,
    );
  });

  it('a virtual size other than the one expected, even when the tables still fit it', () => {
    const bigger = mutated((b) => b.writeBigUInt64BE(BigInt(SIZE + cs), 24));
    expect(parseError([bigger])).toBeUndefined(); // nothing in the image contradicts it
    expectDefect(bigger, Qcow2SizeMismatchError, 24, { virtualSize: SIZE });
    expect(parseError([sample], { virtualSize: SIZE })).toBeUndefined();
  });

  it('a virtual size that leaves a present cluster past the end', () => {
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(BigInt(520 * MiB), 24)),
      Qcow2TableEntryError,
      L2B + 128 * 8,
    );
  });

  it('other header extensions, end markers or padding in cluster 0', () => {
    for (const at of [112, 116, 120, 121, 130, 503]) {
      expectDefect(
        mutated((b) => (b[at]! ^= 0x20)),
        Qcow2ExtensionError,
        at,
      );
    }
    for (const at of [504, 511, 512, 40_000, cs - 1]) {
      const error = expectDefect(
        mutated((b) => (b[at] = 1)),
        Qcow2ExtensionError,
        at,
      );
      expect(error.message).toMatch(at < 512 ? /end-of-extensions/ : /padding/);
    }
  });

  it('refcount table entries that are not the blocks one after another', () => {
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(BigInt(3 * cs), RT)),
      Qcow2RefcountError,
      RT,
    );
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(BigInt(5 * cs), RT + 8)),
      Qcow2RefcountError,
      RT + 8,
    );
    // A second block where the L1 table is: the table and the header's L1 offset disagree.
    const l1Offset = expectDefect(
      mutated((b) => b.writeBigUInt64BE(BigInt(3 * cs), RT + 8)),
      Qcow2HeaderError,
      40,
    );
    expect((l1Offset as Qcow2HeaderError).field).toBe('l1_table_offset');
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(0n, RT)),
      Qcow2RefcountError,
      RT,
    );
    expectDefect(
      mutated((b) => (b[RT + cs - 1] = 1)),
      Qcow2RefcountError,
      RT + cs - 8,
    );
  });

  it('refcounts other than 1 for each cluster of the file and 0 past it', () => {
    expectDefect(
      mutated((b) => b.writeUInt16BE(2, RB + 6)),
      Qcow2RefcountError,
      RB + 6,
    );
    expectDefect(
      mutated((b) => b.writeUInt16BE(0, RB + 18)),
      Qcow2RefcountError,
      RB + 18,
    );
    const counted = expectDefect(
      mutated((b) => b.writeUInt16BE(1, RB + 20)),
      Qcow2RefcountError,
      RB + 20,
    );
    expect(counted.message).toMatch(/count 11 clusters, the tables describe a file of 10/);
    expectDefect(
      mutated((b) => b.writeUInt16BE(1, RB + 200)),
      Qcow2RefcountError,
      RB + 200,
    );
  });

  it('L1 entries with other flags, out of order, or past l1_size', () => {
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(BigInt(L2A), L1)),
      Qcow2TableEntryError,
      L1,
    );
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(L2A) | 1n, L1)),
      Qcow2TableEntryError,
      L1,
    );
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(L2A) | (1n << 60n), L1)),
      Qcow2TableEntryError,
      L1,
    );
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(copied(L2B), L1);
        b.writeBigUInt64BE(copied(L2A), L1 + 8);
      }),
      Qcow2L2OrderError,
      L1,
    );
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(0n, L1)),
      Qcow2L2OrderError,
      L1 + 8,
    );
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(6 * cs), L1 + 16)),
      Qcow2TableEntryError,
      L1 + 16,
    );
  });

  it('L2 entries with the zero flag, compression, reserved bits or an offset off a cluster', () => {
    for (const [value, reason] of [
      [copied(DATA) | 1n, /zero flag/],
      [copied(DATA) | (1n << 62n), /compressed/],
      [copied(DATA) | (1n << 57n), /reserved/],
      [copied(DATA + 512), /not on a 64 KiB cluster/],
      [BigInt(DATA), /no copied flag/],
    ] as const) {
      const error = expectDefect(
        mutated((b) => b.writeBigUInt64BE(value, L2A)),
        Qcow2TableEntryError,
        L2A,
      );
      expect(error.message).toMatch(reason);
    }
  });

  it('a gap, a reorder or a repeat in the data', () => {
    const gap = expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(DATA + 2 * cs), L2A + 16)),
      Qcow2DataOrderError,
      L2A + 16,
    );
    expect(gap.message).toMatch(/cluster 2 points at byte 524288, the next data cluster is at 458752/);
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(copied(DATA + cs), L2A);
        b.writeBigUInt64BE(copied(DATA), L2A + 16);
      }),
      Qcow2DataOrderError,
      L2A,
    );
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(DATA), L2A + 16)),
      Qcow2DataOrderError,
      L2A + 16,
    );
    // An entry that moves to another cluster of the same table keeps the counter: the content moves.
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(DATA + cs), L2A + 8)),
      Qcow2DataOrderError,
      L2A + 16,
    );
  });

  it('an L2 entry dropped at the end: the refcounts count one cluster more', () => {
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(0n, L2B + 128 * 8)),
      Qcow2RefcountError,
      RB + 9 * 2,
    );
  });

  it('an L2 entry past the disk in the last table', () => {
    expectDefect(
      mutated((b) => b.writeBigUInt64BE(copied(DATA + 4 * cs), L2B + 129 * 8)),
      Qcow2TableEntryError,
      L2B + 129 * 8,
    );
  });

  const cuts: [string, number, RegExp][] = [
    ['nothing at all', 0, /the header \(0 of 65536/],
    ['the header', 100, /the header \(100 of 65536/],
    ['the refcount table', RT + 10, /refcount table cluster at byte 65536 \(10 of/],
    ['the refcount block', RB + 10, /refcount block cluster at byte 131072/],
    ['the L1 table', L1 + 10, /L1 table cluster at byte 196608/],
    ['the first L2 table', L2A, /L2 table cluster at byte 262144 \(0 of/],
    ['the second L2 table', L2B + 10, /L2 table cluster at byte 327680/],
    ['the data, at its start', DATA, /data of cluster 0 at byte 393216 \(0 of/],
    ['the data of a cluster', DATA + 3 * cs + 99, /data of cluster 8320 at byte 589824 \(99 of/],
    ['the last byte', END - 1, /data of cluster 8320 .*65535 of 65536/],
  ];
  for (const [where, cut, expected] of cuts) {
    it(`a stream truncated in ${where}`, () => {
      const error = expectDefect(sample.subarray(0, cut), Qcow2TruncatedError, cut);
      expect((error as Qcow2TruncatedError).expected).toMatch(expected);
    });
  }

  it('a data cluster missing or one too many', () => {
    expectDefect(
      Buffer.concat([sample.subarray(0, DATA), sample.subarray(DATA + cs)]),
      Qcow2TruncatedError,
      END - cs,
    );
    expectDefect(Buffer.concat([sample, sample.subarray(DATA, DATA + cs)]), Qcow2TrailingDataError, END);
  });

  it('bytes after the end', () => {
    expectDefect(Buffer.concat([sample, Buffer.alloc(1)]), Qcow2TrailingDataError, END);
    expectDefect(Buffer.concat([sample, Buffer.from('HTTP/2')]), Qcow2TrailingDataError, END);
    expectDefect(Buffer.concat([sample, sample]), Qcow2TrailingDataError, END);
  });

  it('an HTTP 500 page appended after the whole image', () => {
    const error = expectDefect(
      Buffer.concat([sample, PAGE]),
      Qcow2HttpErrorInBody,
      END,
    ) as Qcow2HttpErrorInBody;
    expect(error.code).toBe('HTTP_ERROR_IN_BODY');
    expect(error.statusLine).toBe('HTTP/1.1 500 Internal Server Error');
    expect(error.statusCode).toBe(500);
    // Reported as soon as its status line is complete.
    const parser = new Qcow2StreamParser();
    parser.write(sample);
    expect(() => parser.write(PAGE.subarray(0, 20))).not.toThrow();
    expect(() => parser.write(PAGE.subarray(20, 40))).toThrow(Qcow2HttpErrorInBody);
  });

  it('an HTTP 500 page appended where the data broke off', () => {
    // Mid-table (the image then ends early), mid-data, at the data's start, across the computed end.
    for (const cut of [L2A + 8, DATA + cs + 1000, DATA, END - 100]) {
      const error = expectDefect(Buffer.concat([sample.subarray(0, cut), PAGE]), Qcow2HttpErrorInBody, cut);
      expect((error as Qcow2HttpErrorInBody).statusCode).toBe(500);
    }
  });

  it('an HTTP error response as the whole body', () => {
    const error = expectDefect(PAGE, Qcow2HttpErrorInBody, 0) as Qcow2HttpErrorInBody;
    expect(error.statusLine).toBe('HTTP/1.1 500 Internal Server Error');
    expect(() => new Qcow2StreamParser().write(PAGE.subarray(0, 40))).toThrow(Qcow2HttpErrorInBody);
    expect(
      (expectDefect(Buffer.from('HTTP/1.0 503'), Qcow2HttpErrorInBody, 0) as Qcow2HttpErrorInBody).statusCode,
    ).toBe(503);
    expectDefect(Buffer.from('<html>'), Qcow2MagicError, 0);
  });

  it('every later call once it has failed', () => {
    const parser = new Qcow2StreamParser();
    expect(() => parser.write(Buffer.alloc(8))).toThrow(Qcow2MagicError);
    expect(() => parser.write(sample)).toThrow(Qcow2MagicError);
    expect(() => parser.end()).toThrow(Qcow2MagicError);
  });

  it('with distinct codes per defect', () => {
    const codes = new Set(
      [
        new Qcow2MagicError('', 0),
        new Qcow2HeaderError('version', '', 0),
        new Qcow2ExtensionError('', 0),
        new Qcow2RefcountError('', 0),
        new Qcow2TableEntryError('', 0),
        new Qcow2L2OrderError('', 0),
        new Qcow2DataOrderError('', 0),
        new Qcow2SizeMismatchError('', 0),
        new Qcow2TruncatedError('', 0),
        new Qcow2TrailingDataError('', 0),
        new Qcow2LimitError('', 0),
        new Qcow2HttpErrorInBody('HTTP/1.1 500', 0),
      ].map((error) => error.code),
    );
    expect(codes.size).toBe(12);
  });
});
