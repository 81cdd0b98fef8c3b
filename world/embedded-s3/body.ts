/**
 * Request and object bodies for the embedded S3 server: streamed through once, never gathered, while
 * the sizes, MD5 and checksums S3 checks and reports are computed on the way.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { S3Error } from './xml.ts';

export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'crc64nvme' | 'sha1' | 'sha256';
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = [
  'crc32',
  'crc32c',
  'crc64nvme',
  'sha1',
  'sha256',
];
/** Base64 values, as the `x-amz-checksum-*` headers carry them. */
export type Checksums = Partial<Record<ChecksumAlgorithm, string>>;

export interface Digest {
  readonly size: number;
  readonly md5: Buffer;
  readonly checksums: Checksums;
}

interface Hasher {
  update(chunk: Buffer): void;
  digest(): Buffer;
}

/** The checksums Node computes natively. CRC32C and CRC64NVME are stored as sent, unverified. */
export function hasher(algorithm: ChecksumAlgorithm): Hasher | undefined {
  if (algorithm === 'crc32') {
    let value = 0;
    return {
      update: (chunk) => void (value = crc32(chunk, value)),
      digest: () => {
        const raw = Buffer.alloc(4);
        raw.writeUInt32BE(value >>> 0);
        return raw;
      },
    };
  }
  if (algorithm === 'sha1' || algorithm === 'sha256') {
    const hash = createHash(algorithm);
    return { update: (chunk) => void hash.update(chunk), digest: () => hash.digest() };
  }
  return undefined;
}

/** Copies `source` into `sink` with backpressure, measuring size, MD5 and the computable checksums asked for. */
export async function measure(
  source: AsyncIterable<Buffer>,
  sink: Writable,
  algorithms: Iterable<ChecksumAlgorithm>,
): Promise<Digest> {
  const md5 = createHash('md5');
  const hashers = [...new Set(algorithms)].flatMap((a) => {
    const h = hasher(a);
    return h ? [[a, h] as const] : [];
  });
  let size = 0;
  await pipeline(
    source,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        size += chunk.length;
        md5.update(chunk);
        for (const [, h] of hashers) h.update(chunk);
        yield chunk;
      }
    },
    sink,
  );
  const checksums: Checksums = {};
  for (const [algorithm, h] of hashers) checksums[algorithm] = h.digest().toString('base64');
  return { size, md5: md5.digest(), checksums };
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Checksum algorithms a request sends values for, in headers or announced trailers. */
export function declaredChecksums(headers: IncomingHttpHeaders): ChecksumAlgorithm[] {
  const trailers = (header(headers, 'x-amz-trailer') ?? '').toLowerCase();
  return CHECKSUM_ALGORITHMS.filter(
    (a) =>
      headers[`x-amz-checksum-${a}`] !== undefined ||
      trailers.split(/\s*,\s*/).includes(`x-amz-checksum-${a}`),
  );
}

/**
 * Receives a request body into `sink`: decodes `aws-chunked` framing, then checks what the client
 * declared (Content-MD5, `x-amz-checksum-*` headers or trailers, a signed payload's SHA-256, the decoded
 * length), as S3 does, before anything is stored. Returns the checksums sent plus those in `compute`.
 */
export async function receiveBody(
  req: IncomingMessage,
  sink: Writable,
  compute: readonly ChecksumAlgorithm[] = [],
): Promise<Digest> {
  const headers = req.headers;
  const md5 = header(headers, 'content-md5');
  if (md5 !== undefined && Buffer.from(md5, 'base64').length !== 16) {
    throw new S3Error('InvalidDigest');
  }
  const payloadHash = header(headers, 'x-amz-content-sha256') ?? '';
  const signedSha256 = /^[0-9a-f]{64}$/i.test(payloadHash) ? payloadHash.toLowerCase() : undefined;
  const chunked =
    /(^|,)\s*aws-chunked\s*(,|$)/i.test(header(headers, 'content-encoding') ?? '') ||
    payloadHash.startsWith('STREAMING-');
  const declared = declaredChecksums(headers);
  const trailers = new Map<string, string>();
  // Not destroyed on a framing error, so the error can still be answered.
  const body = req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
  const digest = await measure(chunked ? decodeAwsChunked(body, trailers) : body, sink, [
    ...compute,
    ...declared,
    ...(signedSha256 ? (['sha256'] as const) : []),
  ]);

  const decodedLength = header(headers, 'x-amz-decoded-content-length');
  if (chunked && decodedLength !== undefined && Number(decodedLength) !== digest.size) {
    throw new S3Error('IncompleteBody', {}, 'The body does not hold x-amz-decoded-content-length bytes.');
  }
  if (signedSha256 && Buffer.from(digest.checksums.sha256!, 'base64').toString('hex') !== signedSha256) {
    throw new S3Error('XAmzContentSHA256Mismatch');
  }
  if (md5 !== undefined && digest.md5.toString('base64') !== md5) {
    throw new S3Error('BadDigest', {}, 'The Content-MD5 you specified did not match what was received.');
  }
  const checksums: Checksums = {};
  for (const algorithm of compute) {
    if (digest.checksums[algorithm] !== undefined) checksums[algorithm] = digest.checksums[algorithm];
  }
  for (const algorithm of declared) {
    const name = `x-amz-checksum-${algorithm}`;
    const sent = header(headers, name) ?? trailers.get(name);
    if (sent === undefined) throw new S3Error('MalformedTrailerError', {}, `The ${name} trailer is missing.`);
    const computed = digest.checksums[algorithm];
    if (computed !== undefined && computed !== sent) {
      const message = `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`;
      throw new S3Error('BadDigest', {}, message);
    }
    checksums[algorithm] = sent;
  }
  return { size: digest.size, md5: digest.md5, checksums };
}

function malformed(why: string): S3Error {
  return new S3Error('IncompleteBody', {}, `Malformed aws-chunked body: ${why}`);
}

/**
 * Decodes `aws-chunked` framing — `<hex size>[;chunk-signature=…]\r\n<bytes>\r\n` … `0[;…]\r\n`, then
 * trailer lines such as `x-amz-checksum-crc32:…` and an empty line — into the bytes it carries. Only
 * framing lines are buffered (bounded); chunk data passes straight through.
 */
export async function* decodeAwsChunked(
  body: AsyncIterable<Buffer>,
  trailers: Map<string, string>,
): AsyncGenerator<Buffer> {
  let state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  let pending = Buffer.alloc(0);
  let remaining = 0;
  for await (const chunk of body) {
    let at = 0;
    while (at < chunk.length) {
      if (state === 'data') {
        const take = Math.min(remaining, chunk.length - at);
        yield chunk.subarray(at, at + take);
        at += take;
        remaining -= take;
        if (remaining === 0) state = 'data-end';
        continue;
      }
      if (state === 'done') throw malformed('bytes after the final chunk');
      const newline = chunk.indexOf(0x0a, at);
      const end = newline < 0 ? chunk.length : newline + 1;
      pending = Buffer.concat([pending, chunk.subarray(at, end)]);
      at = end;
      if (pending.length > 16 * 1024) throw malformed('a framing line is too long');
      if (newline < 0) break;
      const line = pending.toString('latin1').replace(/\r?\n$/, '');
      pending = Buffer.alloc(0);
      if (state === 'data-end') {
        if (line !== '') throw malformed('chunk data longer than its size');
        state = 'size';
      } else if (state === 'size') {
        const size = /^([0-9a-f]{1,15})(;.*)?$/i.exec(line);
        if (!size) throw malformed(`bad chunk header "${line.slice(0, 40)}"`);
        remaining = parseInt(size[1]!, 16);
        state = remaining === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        state = 'done';
      } else {
        const colon = line.indexOf(':');
        if (colon <= 0) throw malformed(`bad trailer "${line.slice(0, 40)}"`);
        trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
    }
  }
  // The SDK ends a body that has no trailer right after `0\r\n`.
  if (state !== 'done' && !(state === 'trailer' && pending.length === 0))
    throw malformed('it ended mid-chunk');
}

/** A sink that keeps a small request document (XML) in memory, refusing more than `limit` bytes. */
export function memorySink(limit: number): { sink: Writable; text(): string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > limit) return callback(new S3Error('MaxMessageLengthExceeded'));
      chunks.push(chunk);
      callback();
    },
  });
  return { sink, text: () => Buffer.concat(chunks).toString('utf8') };
}
