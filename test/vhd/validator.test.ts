import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  HttpErrorInBody,
  VhdBitmapNotFullError,
  VhdFooterMismatchError,
  VhdTruncatedError,
  createVhdValidator,
} from '../../lambdas/vhd/index.ts';
import { chunksOf, makeDisk, vhdBytes } from './disks.ts';

const MiB = 1024 * 1024;

/** Pipes chunks through a validator into a hashing sink; returns the validator and the digest out. */
async function validate(chunks: Iterable<Uint8Array>) {
  const validator = createVhdValidator();
  const hash = createHash('sha256');
  let bytesOut = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      bytesOut += chunk.length;
      callback();
    },
  });
  let summaryAtFinish: unknown;
  validator.on('finish', () => (summaryAtFinish = validator.summary));
  await pipeline(Readable.from(chunks), validator, sink);
  return { validator, digest: hash.digest('hex'), bytesOut, summaryAtFinish };
}

describe('createVhdValidator', () => {
  it('passes the bytes through unchanged and reports the summary', async () => {
    const { bytes } = await vhdBytes(makeDisk(7 * MiB, [0, 3]), 'differencing');
    const { validator, digest, bytesOut, summaryAtFinish } = await validate(
      chunksOf(bytes, [65_536, 1, 300_000]),
    );
    expect(digest).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(bytesOut).toBe(bytes.length);
    expect(validator.summary).toMatchObject({
      virtualSize: 7 * MiB,
      diskType: 'differencing',
      presentBlocks: 2,
      bytesRead: bytes.length,
    });
    expect(summaryAtFinish).toEqual(validator.summary);
  });

  it('fails the pipeline on a corrupt stream', async () => {
    const { bytes } = await vhdBytes(makeDisk(4 * MiB, [1]));
    bytes[bytes.length - 3]! ^= 1;
    await expect(validate(chunksOf(bytes, [100_000]))).rejects.toBeInstanceOf(VhdFooterMismatchError);
  });

  it('fails the pipeline on a truncated stream, without a summary', async () => {
    const { bytes } = await vhdBytes(makeDisk(4 * MiB, [1]));
    const validator = createVhdValidator();
    const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    await expect(pipeline(Readable.from([bytes.subarray(0, 5000)]), validator, sink)).rejects.toBeInstanceOf(
      VhdTruncatedError,
    );
    expect(validator.summary).toBeUndefined();
  });

  it('fails the pipeline on an HTTP error in the body', async () => {
    const body = Buffer.from('HTTP/1.1 500 Internal Error\r\n\r\n');
    await expect(validate([body])).rejects.toBeInstanceOf(HttpErrorInBody);
  });

  it('refuses by default a bitmap that lost bits (the host writes full ones), naming block and byte', async () => {
    const { bytes } = await vhdBytes(makeDisk(4 * MiB, [1]));
    bytes[2560 + 7] = 0x7f;
    const sink = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const error: unknown = await pipeline(
      Readable.from(chunksOf(bytes, [1000])),
      createVhdValidator(),
      sink(),
    ).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(VhdBitmapNotFullError);
    expect(error).toMatchObject({ code: 'VHD_BITMAP_NOT_FULL', blockIndex: 1, offset: 2560 + 7 });
    await expect(
      pipeline(Readable.from([bytes]), createVhdValidator({ requireFullBitmap: false }), sink()),
    ).resolves.toBeUndefined();
  });
});
