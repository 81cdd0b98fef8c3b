import { beforeAll, describe, expect, it } from 'vitest';
import {
  HttpErrorInBody,
  VhdBatBoundsError,
  VhdBitmapNotFullError,
  VhdBlockOrderError,
  VhdBlockSizeError,
  VhdFooterChecksumError,
  VhdFooterCookieError,
  VhdFooterMismatchError,
  VhdFormatError,
  VhdHeaderChecksumError,
  VhdHeaderCookieError,
  VhdLimitError,
  VhdStreamParser,
  VhdTrailingDataError,
  VhdTruncatedError,
  VhdUnsupportedError,
} from '../../lambdas/vhd/index.ts';
import { chunksOf, makeDisk, vhdBytes } from './disks.ts';
import { parseError } from './parse.ts';

const MiB = 1024 * 1024;
// Layout of the sample: 3 blocks of which 0 and 2 are present.
const HEADER = 512;
const BAT = 2048;
const BLOCK0 = 2560;
const BLOCK2 = BLOCK0 + 2_097_664;
const TRAILER = BLOCK2 + 2_097_664;
const END = TRAILER + 512;

let sample: Buffer;
beforeAll(async () => {
  sample = (await vhdBytes(makeDisk(5 * MiB + 1536, [0, 2]))).bytes;
  expect(sample.length).toBe(END);
});

type ErrorClass = abstract new (...args: never[]) => VhdFormatError;

/** Parses whole, then in small and odd chunks: the same error class, code and offset every time. */
function expectDefect(bytes: Uint8Array, errorClass: ErrorClass, offset: number): VhdFormatError {
  const whole = parseError([bytes]);
  const pieces = parseError(chunksOf(bytes, [1, 7, 509, 3000, 65536, 1_000_003]));
  for (const error of [whole, pieces]) {
    expect(error).toBeInstanceOf(errorClass);
    expect(error).toBeInstanceOf(VhdFormatError);
    expect((error as VhdFormatError).offset).toBe(offset);
    expect((error as VhdFormatError).code).toBe((whole as VhdFormatError).code);
  }
  return whole as VhdFormatError;
}

function mutated(edit: (bytes: Buffer) => void): Buffer {
  const copy = Buffer.from(sample);
  edit(copy);
  return copy;
}

function resealFooter(bytes: Buffer, at = 0): void {
  bytes.writeUInt32BE(0, at + 64);
  const sum = bytes.subarray(at, at + 512).reduce((total, byte) => total + byte, 0);
  bytes.writeUInt32BE(~sum >>> 0, at + 64);
}

/** Edits the header and fixes its checksum, so the check under test is the one that fires. */
function resealHeader(bytes: Buffer): void {
  bytes.writeUInt32BE(0, HEADER + 36);
  const sum = bytes.subarray(HEADER, HEADER + 1024).reduce((total, byte) => total + byte, 0);
  bytes.writeUInt32BE(~sum >>> 0, HEADER + 36);
}

describe('VhdStreamParser rejects', () => {
  it('a bad footer cookie', () => {
    const error = expectDefect(
      mutated((b) => b.write('conectiX', 0)),
      VhdFooterCookieError,
      0,
    );
    expect(error.code).toBe('VHD_FOOTER_COOKIE');
  });

  it('a bad footer checksum', () => {
    expectDefect(
      mutated((b) => (b[100] = 1)),
      VhdFooterChecksumError,
      64,
    );
  });

  it('a bad dynamic header cookie', () => {
    expectDefect(
      mutated((b) => b.write('cxsparsf', HEADER)),
      VhdHeaderCookieError,
      HEADER,
    );
  });

  it('a bad dynamic header checksum', () => {
    expectDefect(
      mutated((b) => (b[HEADER + 100] = 1)),
      VhdHeaderChecksumError,
      HEADER + 36,
    );
  });

  for (const blockSize of [3 * MiB, 2 * MiB + 512, 256, 0, 64 * MiB]) {
    it(`block size ${blockSize}`, () => {
      expectDefect(
        mutated((b) => {
          b.writeUInt32BE(blockSize, HEADER + 32);
          resealHeader(b);
        }),
        VhdBlockSizeError,
        HEADER + 32,
      );
    });
  }

  it('a BAT entry pointing inside the header', () => {
    expectDefect(
      mutated((b) => b.writeUInt32BE(1, BAT + 8)),
      VhdBatBoundsError,
      BAT + 8,
    );
  });

  it('a BAT entry pointing inside the BAT', () => {
    expectDefect(
      mutated((b) => b.writeUInt32BE(BAT / 512, BAT)),
      VhdBatBoundsError,
      BAT,
    );
  });

  it('a BAT entry pointing far past the end', () => {
    expectDefect(
      mutated((b) => b.writeUInt32BE(0xfffffffe, BAT + 8)),
      VhdBatBoundsError,
      BAT + 8,
    );
  });

  it('a present BAT entry past the virtual size', () => {
    expectDefect(
      mutated((b) => {
        b.writeUInt32BE(4, HEADER + 28);
        resealHeader(b);
        b.writeUInt32BE(TRAILER / 512, BAT + 12);
      }),
      VhdBatBoundsError,
      BAT + 12,
    );
  });

  it('a BAT too small for the virtual size', () => {
    expectDefect(
      mutated((b) => {
        b.writeUInt32BE(2, HEADER + 28);
        resealHeader(b);
      }),
      VhdBatBoundsError,
      HEADER + 28,
    );
  });

  it('a table offset inside the header', () => {
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(1024n, HEADER + 16);
        resealHeader(b);
      }),
      VhdBatBoundsError,
      HEADER + 16,
    );
  });

  it('a block that starts before the previous one ends', () => {
    expectDefect(
      mutated((b) => b.writeUInt32BE(BLOCK0 / 512 + 1, BAT + 8)),
      VhdBlockOrderError,
      BAT + 8,
    );
  });

  it('two entries for the same block', () => {
    expectDefect(
      mutated((b) => b.writeUInt32BE(BLOCK0 / 512, BAT + 8)),
      VhdBlockOrderError,
      BAT + 8,
    );
  });

  it('a trailing footer that differs from the leading one', () => {
    const error = expectDefect(
      mutated((b) => (b[TRAILER + 100] = 1)),
      VhdFooterMismatchError,
      TRAILER,
    );
    expect(error.code).toBe('VHD_FOOTER_MISMATCH');
  });

  it('bytes after the trailing footer', () => {
    expectDefect(Buffer.concat([sample, Buffer.alloc(1)]), VhdTrailingDataError, END);
    expectDefect(Buffer.concat([sample, sample]), VhdTrailingDataError, END);
  });

  const cuts: [string, number, RegExp][] = [
    ['nothing at all', 0, /leading footer/],
    ['the leading footer', 100, /leading footer \(100 of 512/],
    ['the dynamic header', 700, /dynamic header at byte 512 \(188 of 1024/],
    ['the zero sector before the BAT', 1700, /BAT at byte 2048/],
    ['the BAT', 2100, /BAT at byte 2048 .*52 of 512/],
    ['a bitmap', BLOCK0 + 10, /bitmap of block 0/],
    ['block data', BLOCK0 + 512 + 10_000, /data of block 0 .*10000 of 2097152/],
    ['the last block', TRAILER - 1, /data of block 2/],
    ['before the trailing footer', TRAILER, /trailing footer at byte 4197888 \(0 of 512/],
    ['the trailing footer', TRAILER + 511, /trailing footer at byte 4197888 \(511 of 512/],
  ];
  for (const [where, cut, expected] of cuts) {
    it(`a stream truncated in ${where}`, () => {
      const error = expectDefect(sample.subarray(0, cut), VhdTruncatedError, cut);
      expect((error as VhdTruncatedError).expected).toMatch(expected);
    });
  }

  it('an HTTP error written into the body', () => {
    const body = Buffer.from('HTTP/1.1 500 Internal Error\r\ncontent-length: 0\r\n\r\n');
    const error = expectDefect(body, HttpErrorInBody, 0) as HttpErrorInBody;
    expect(error.code).toBe('HTTP_ERROR_IN_BODY');
    expect(error.statusLine).toBe('HTTP/1.1 500 Internal Error');
    expect(error.statusCode).toBe(500);
    expect(error.message).toContain('HTTP/1.1 500 Internal Error');
    // Reported as soon as the status line is complete, before anything like a footer could be read.
    expect(() => new VhdStreamParser().write(body.subarray(0, 30))).toThrow(HttpErrorInBody);
  });

  it('an HTTP error without a line end', () => {
    const error = expectDefect(Buffer.from('HTTP/1.0 503'), HttpErrorInBody, 0) as HttpErrorInBody;
    expect(error.statusCode).toBe(503);
  });

  it('absurd virtual sizes without allocating them', () => {
    for (const size of [2n ** 62n, 2n ** 53n, 5n * 2n ** 40n]) {
      expectDefect(
        mutated((b) => {
          b.writeBigUInt64BE(size, 48);
          resealFooter(b);
        }),
        VhdLimitError,
        48,
      );
    }
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(5n * 2n ** 20n + 1n, 48);
        resealFooter(b);
      }),
      VhdLimitError,
      48,
    );
  });

  it('absurd BAT sizes without allocating them', () => {
    expectDefect(
      mutated((b) => {
        b.writeUInt32BE(0xffffffff, HEADER + 28);
        resealHeader(b);
      }),
      VhdLimitError,
      HEADER + 28,
    );
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(2n ** 62n, HEADER + 16);
        resealHeader(b);
      }),
      VhdBatBoundsError,
      HEADER + 16,
    );
  });

  it('a 2 TiB disk of 512-byte blocks (a BAT too big to hold)', () => {
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(2n ** 41n, 48);
        resealFooter(b);
        b.writeUInt32BE(512, HEADER + 32);
        resealHeader(b);
      }),
      VhdLimitError,
      HEADER + 32,
    );
  });

  it('a header offset inside the footer', () => {
    expectDefect(
      mutated((b) => {
        b.writeBigUInt64BE(100n, 16);
        resealFooter(b);
      }),
      VhdBatBoundsError,
      16,
    );
  });

  it('fixed disks and unknown disk types', () => {
    for (const type of [2, 5]) {
      expectDefect(
        mutated((b) => {
          b.writeUInt32BE(type, 60);
          resealFooter(b);
        }),
        VhdUnsupportedError,
        60,
      );
    }
  });

  it('a flipped bitmap byte: VhdBitmapNotFullError at that byte, naming the block', () => {
    for (const [block, at, value] of [
      [0, BLOCK0, 0x00],
      [2, BLOCK2 + 511, 0xfe],
      [2, BLOCK2 + 200, 0xef],
    ] as const) {
      const error = expectDefect(
        mutated((b) => (b[at] = value)),
        VhdBitmapNotFullError,
        at,
      );
      expect(error.code).toBe('VHD_BITMAP_NOT_FULL');
      expect((error as VhdBitmapNotFullError).blockIndex).toBe(block);
      expect(error.message).toContain(`block ${block}`);
    }
    expect(parseError([sample])).toBeUndefined();
    // Told to accept other writers' partial bitmaps, the parser yields the bitmap for the caller to apply.
    const flipped = mutated((b) => (b[BLOCK2 + 511] = 0xfe));
    expect(() => new VhdStreamParser({ requireFullBitmap: false }).write(flipped)).not.toThrow();
  });

  it('every later call once it has failed', () => {
    const parser = new VhdStreamParser();
    expect(() => parser.write(Buffer.alloc(512))).toThrow(VhdFooterCookieError);
    expect(() => parser.write(sample)).toThrow(VhdFooterCookieError);
    expect(() => parser.end()).toThrow(VhdFooterCookieError);
  });

  it('with distinct codes per defect', () => {
    const codes = new Set(
      [
        new VhdFooterCookieError('', 0),
        new VhdFooterChecksumError('', 0),
        new VhdHeaderCookieError('', 0),
        new VhdHeaderChecksumError('', 0),
        new VhdBlockSizeError('', 0),
        new VhdBatBoundsError('', 0),
        new VhdBlockOrderError('', 0),
        new VhdBitmapNotFullError(0, 0, 0),
        new VhdFooterMismatchError('', 0),
        new VhdTruncatedError('', 0),
        new VhdTrailingDataError('', 0),
        new VhdLimitError('', 0),
        new VhdUnsupportedError('', 0),
        new HttpErrorInBody('HTTP/1.1 500'),
      ].map((error) => error.code),
    );
    expect(codes.size).toBe(14);
  });
});

describe('VhdStreamParser tolerates', () => {
  it('zeroed sectors between the last block and the trailing footer', () => {
    const padded = Buffer.concat([sample.subarray(0, TRAILER), Buffer.alloc(1024), sample.subarray(TRAILER)]);
    expect(parseError(chunksOf(padded, [4097]))).toBeUndefined();
  });
});
