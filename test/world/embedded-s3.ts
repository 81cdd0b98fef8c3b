/**
 * An S3-compatible server inside this Node process (s3rver), for the `npm start` demo: it needs nothing
 * beyond `npm ci`. Tests that prove cleanup (abort, ListMultipartUploads, part-size minimums) need Swift:
 * s3rver 3.7 answers AbortMultipartUpload with MethodNotAllowed, ListMultipartUploads with
 * NotImplemented, accepts parts under 5 MiB and ignores Content-MD5.
 */
import crypto from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EmbeddedS3Options {
  /** TCP port on 127.0.0.1; 0 (default) picks a free one. */
  readonly port?: number;
  /** Where s3rver keeps buckets. Default: a fresh temporary folder, removed by `close()`. */
  readonly directory?: string;
}

export interface EmbeddedS3 {
  /** e.g. `http://127.0.0.1:41234`; use path-style addressing (`createS3Client` does). */
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  close(): Promise<void>;
}

/** The part of s3rver's (untyped, CommonJS) API used here. */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
}) => S3rverInstance;

const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

export async function startEmbeddedS3(options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
  allowS3rverContinuationTokens();
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), 'vdi-vault-s3rver-')));
  const server = new S3rver({ address: '127.0.0.1', port: options.port ?? 0, silent: true, directory });
  const address = await server.run();
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    region: 'us-east-1',
    // s3rver checks signatures against this one fixed key pair.
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    async close() {
      await server.close();
      if (options.directory === undefined) await rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with DES, which Node 17+ (OpenSSL 3) refuses without
 * `--openssl-legacy-provider`: every truncated listing fails with InternalError. The token only has to
 * round-trip through the client, so where DES is unavailable we let `des` mean "no encryption". This only
 * changes calls that would otherwise throw; with the legacy provider loaded, nothing is replaced.
 */
function allowS3rverContinuationTokens(): void {
  if (desAvailable()) return;
  const { createCipheriv, createDecipheriv } = crypto;
  const passThrough = {
    update: (data: string | Buffer, encoding?: BufferEncoding) =>
      typeof data === 'string' ? Buffer.from(data, encoding) : Buffer.from(data),
    final: () => Buffer.alloc(0),
  };
  // Assigning to the shared `node:crypto` object is what s3rver (CommonJS) sees at call time.
  Object.assign(crypto, {
    createCipheriv: (algorithm: string, ...rest: unknown[]) =>
      algorithm === 'des' ? passThrough : Reflect.apply(createCipheriv, crypto, [algorithm, ...rest]),
    createDecipheriv: (algorithm: string, ...rest: unknown[]) =>
      algorithm === 'des' ? passThrough : Reflect.apply(createDecipheriv, crypto, [algorithm, ...rest]),
  });
}

function desAvailable(): boolean {
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
    return true;
  } catch {
    return false;
  }
}
