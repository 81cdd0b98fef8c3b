/**
 * An S3-compatible server inside this Node process, for the `npm start` demo (it needs nothing beyond
 * `npm ci`): S3's REST API path-style on 127.0.0.1, object bytes streamed to files in a temporary folder,
 * buckets, keys and uploads in memory. It enforces what the product relies on S3 to enforce — multipart
 * part sizes, order and ETags, Content-MD5 and checksums, listing and aborting stale uploads — and answers
 * what it doesn't implement (versioning, ACLs, tagging, …) with NotImplemented rather than pretending.
 * Requests must carry SigV4 with the server's access key id; signatures themselves are not verified.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { mkdtemp, open, rm, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CHECKSUM_ALGORITHMS, declaredChecksums, hasher, measure, receiveBody } from './embedded-s3/body.ts';
import type { ChecksumAlgorithm, Checksums, Digest } from './embedded-s3/body.ts';
import {
  asS3Error,
  boundedInteger,
  checkKey,
  checkUpload,
  compareUtf8,
  copyRange,
  copySource,
  notImplemented,
  parseRange,
  receiveXml,
  storedHeaders,
} from './embedded-s3/requests.ts';
import { leaf, node, S3Error, sendError, sendXml, xmlElements, xmlValue } from './embedded-s3/xml.ts';

export interface EmbeddedS3Options {
  /** TCP port on 127.0.0.1; 0 (default) picks a free one. */
  readonly port?: number;
  /** Where the server makes its folder for object bytes (default: the OS temp folder); `close()` removes it. */
  readonly directory?: string;
  /** The one key pair requests must be signed with. Default: a fixed local pair. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

export interface EmbeddedS3 {
  /** e.g. `http://127.0.0.1:41234`; use path-style addressing (`createS3Client` does). */
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** The folder holding object and part bytes, one file each. */
  readonly directory: string;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
const REGION = 'us-east-1';
const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_NUMBER = 10_000;
const OWNER = node('Owner', [leaf('ID', 'embedded-s3'), leaf('DisplayName', 'embedded-s3')]);
const INITIATOR = node('Initiator', [leaf('ID', 'embedded-s3'), leaf('DisplayName', 'embedded-s3')]);
/** Conditional requests: refused rather than ignored, which would answer as if the condition held. */
const CONDITIONAL = ['match', 'none-match', 'modified-since', 'unmodified-since'].flatMap((c) => [
  `if-${c}`,
  `x-amz-copy-source-if-${c}`,
]);
/** Subresources refused up front, so that e.g. `PUT /bucket?versioning` is never taken for CreateBucket. */
const UNSUPPORTED = [
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'encryption', 'intelligent-tiering', 'inventory',
  'legal-hold', 'lifecycle', 'location', 'logging', 'metrics', 'notification', 'object-lock',
  'ownershipControls', 'policy', 'policyStatus', 'publicAccessBlock', 'replication', 'requestPayment',
  'restore', 'retention', 'select', 'session', 'tagging', 'torrent', 'versioning', 'versions', 'website',
]; // prettier-ignore

type ChecksumType = 'FULL_OBJECT' | 'COMPOSITE';
interface ObjectChecksum {
  readonly algorithm: ChecksumAlgorithm;
  readonly value: string;
  readonly type: ChecksumType;
}
interface StoredObject {
  readonly file: string;
  readonly size: number;
  /** Quoted, as in the ETag header. */
  readonly etag: string;
  readonly modified: Date;
  readonly headers: Readonly<Record<string, string>>;
  readonly checksum?: ObjectChecksum;
}
interface Part {
  readonly file: string;
  readonly size: number;
  readonly md5: Buffer;
  readonly modified: Date;
  readonly checksums: Checksums;
}
interface MultipartUpload {
  /** Sequence-prefixed, so IDs sort in creation order (upload-id-marker compares them as strings). */
  readonly id: string;
  readonly key: string;
  readonly initiated: Date;
  readonly headers: Readonly<Record<string, string>>;
  readonly algorithm?: ChecksumAlgorithm;
  readonly parts: Map<number, Part>;
}
interface Bucket {
  readonly created: Date;
  readonly objects: Map<string, StoredObject>;
  readonly uploads: Map<string, MultipartUpload>;
}
/** One request: `bucket` and `key` are decoded from the path ('' when absent). */
interface Call {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly bucket: string;
  readonly key: string;
  readonly query: URLSearchParams;
}

export async function startEmbeddedS3(options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
  const directory = await mkdtemp(join(options.directory ?? tmpdir(), 'vdi-vault-s3-'));
  const credentials = options.credentials ?? {
    accessKeyId: 'VDIVAULTLOCAL',
    secretAccessKey: 'vdi-vault-local',
  };
  const service = new S3Service(directory, credentials.accessKeyId);
  // No request timeout: a multi-GiB PutObject may take longer than Node's default 300 s.
  const server = createServer({ requestTimeout: 0 }, (req, res) => void service.handle(req, res));
  server.keepAliveTimeout = 65_000; // outlives the SDK's idle sockets, so none is reused as it closes
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: REGION,
    credentials,
    directory,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(directory, { recursive: true, force: true });
    },
  };
}

class S3Service {
  private readonly buckets = new Map<string, Bucket>();
  private readonly directory: string;
  private readonly accessKeyId: string;
  private uploads = 0;

  constructor(directory: string, accessKeyId: string) {
    this.directory = directory;
    this.accessKeyId = accessKeyId;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', requestId);
    try {
      // Split by hand: URL parsing would resolve `.`/`..` segments, which are legal in keys.
      const [path = '/', search = ''] = (req.url ?? '/').split(/\?(.*)/s);
      const query = new URLSearchParams(search);
      this.authenticate(req, query);
      const slash = path.indexOf('/', 1);
      const bucket = decodeURIComponent(slash < 0 ? path.slice(1) : path.slice(1, slash));
      const key = slash < 0 ? '' : decodeURIComponent(path.slice(slash + 1));
      const versioned = (query.get('versionId') ?? 'null') !== 'null';
      const unsupported =
        UNSUPPORTED.find((name) => query.has(name)) ?? (versioned ? 'versionId' : undefined);
      if (unsupported) throw notImplemented(`?${unsupported}`);
      const conditional = CONDITIONAL.find((name) => req.headers[name] !== undefined);
      if (conditional) throw notImplemented(`conditional requests (${conditional})`);
      await this.route({ req, res, bucket, key, query });
    } catch (error) {
      if (res.headersSent) return void res.destroy();
      // A body the handler never read (or stopped reading) is drained, so the connection stays usable.
      if (!req.complete) req.resume();
      sendError(res, req.method === 'HEAD', asS3Error(error), requestId);
    }
  }

  /** SigV4 with our access key id, in the Authorization header or a presigned URL's query. */
  private authenticate(req: IncomingMessage, query: URLSearchParams): void {
    const authorization = req.headers.authorization;
    const accessKeyId = authorization
      ? /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\//.exec(authorization)?.[1]
      : query.get('X-Amz-Credential')?.split('/')[0];
    if (accessKeyId === undefined) {
      throw new S3Error('AccessDenied', {}, 'Only SigV4-signed requests are allowed.');
    }
    if (accessKeyId !== this.accessKeyId) {
      throw new S3Error('InvalidAccessKeyId', { AWSAccessKeyId: accessKeyId });
    }
  }

  private async route(call: Call): Promise<void> {
    const { req, bucket, key, query } = call;
    const method = req.method;
    const upload = query.has('uploadId');
    if (!bucket) {
      if (method === 'GET') return this.listBuckets(call);
    } else if (!key) {
      if (method === 'PUT') return this.createBucket(call);
      if (method === 'DELETE') return this.deleteBucket(call);
      if (method === 'HEAD') return this.headBucket(call);
      if (method === 'GET' && query.has('uploads')) return this.listUploads(call);
      if (method === 'GET' && query.get('list-type') === '2') return this.listObjects(call);
      if (method === 'GET') throw notImplemented('ListObjects (V1) or this bucket GET');
      if (method === 'POST' && query.has('delete')) return this.deleteObjects(call);
    } else if (method === 'PUT') {
      if (upload) return this.uploadPart(call);
      return req.headers['x-amz-copy-source'] ? this.copyObject(call) : this.putObject(call);
    } else if (method === 'GET' || method === 'HEAD') {
      if (upload && method === 'GET') return this.listParts(call);
      if (query.has('partNumber')) throw notImplemented('GetObject by partNumber');
      return this.getObject(call);
    } else if (method === 'DELETE') {
      return upload ? this.abortUpload(call) : this.deleteObject(call);
    } else if (method === 'POST') {
      if (query.has('uploads')) return this.createUpload(call);
      if (upload) return this.completeUpload(call);
    }
    throw new S3Error('MethodNotAllowed');
  }

  // ---- buckets

  private bucket(name: string): Bucket {
    const bucket = this.buckets.get(name);
    if (!bucket) throw new S3Error('NoSuchBucket', { BucketName: name });
    return bucket;
  }

  private listBuckets({ res }: Call) {
    const names = [...this.buckets.keys()].sort(compareUtf8);
    const entries = names.map((name) =>
      node('Bucket', [
        leaf('Name', name),
        leaf('CreationDate', this.buckets.get(name)!.created.toISOString()),
      ]),
    );
    sendXml(res, 200, 'ListAllMyBucketsResult', [OWNER, node('Buckets', entries)]);
  }

  private createBucket({ req, res, bucket }: Call) {
    req.resume(); // a CreateBucketConfiguration (LocationConstraint) changes nothing here
    const dnsName = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) && !bucket.includes('..');
    if (!dnsName || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
      throw new S3Error('InvalidBucketName', { BucketName: bucket });
    }
    if (this.buckets.has(bucket)) throw new S3Error('BucketAlreadyOwnedByYou', { BucketName: bucket });
    this.buckets.set(bucket, { created: new Date(), objects: new Map(), uploads: new Map() });
    res.writeHead(200, { location: `/${bucket}`, 'content-length': 0 }).end();
  }

  private async deleteBucket({ res, bucket: name }: Call) {
    const bucket = this.bucket(name);
    if (bucket.objects.size > 0) throw new S3Error('BucketNotEmpty', { BucketName: name });
    this.buckets.delete(name);
    await discard([...bucket.uploads.values()].flatMap((upload) => [...upload.parts.values()]));
    res.writeHead(204).end();
  }

  private headBucket({ res, bucket }: Call) {
    this.bucket(bucket);
    res.writeHead(200, { 'x-amz-bucket-region': REGION }).end();
  }

  private listObjects({ res, bucket: name, query }: Call) {
    const bucket = this.bucket(name);
    if (query.has('encoding-type')) throw notImplemented('encoding-type');
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') || undefined;
    const maxKeys = boundedInteger(query.get('max-keys'), 1000, 'max-keys');
    const token = query.get('continuation-token');
    // Our continuation token is the last key or common prefix returned, base64url-encoded.
    const after =
      token === null ? (query.get('start-after') ?? '') : Buffer.from(token, 'base64url').toString();
    if (token !== null && (!token || Buffer.from(after).toString('base64url') !== token)) {
      throw new S3Error('InvalidArgument', { ArgumentName: 'continuation-token' }, 'The token is invalid.');
    }
    // After a common prefix, every key under it was listed already (as that prefix).
    const underAfter = delimiter && after.endsWith(delimiter) ? after : undefined;
    const listed = (key: string) =>
      key.startsWith(prefix) && compareUtf8(key, after) > 0 && !(underAfter && key.startsWith(underAfter));

    const contents: [string, StoredObject][] = [];
    const prefixes: string[] = [];
    let truncated = false;
    let last = '';
    for (const key of [...bucket.objects.keys()].sort(compareUtf8)) {
      if (!listed(key)) continue;
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      const entry = cut < 0 ? key : key.slice(0, cut + delimiter!.length);
      if (cut >= 0 && prefixes.at(-1) === entry) continue;
      if (contents.length + prefixes.length >= maxKeys) {
        truncated = maxKeys > 0;
        break;
      }
      if (cut < 0) contents.push([key, bucket.objects.get(key)!]);
      else prefixes.push(entry);
      last = entry;
    }
    sendXml(res, 200, 'ListBucketResult', [
      leaf('Name', name),
      leaf('Prefix', prefix),
      leaf('Delimiter', delimiter),
      leaf('MaxKeys', maxKeys),
      leaf('KeyCount', contents.length + prefixes.length),
      leaf('IsTruncated', truncated),
      leaf('ContinuationToken', token ?? undefined),
      leaf('NextContinuationToken', truncated ? Buffer.from(last).toString('base64url') : undefined),
      leaf('StartAfter', query.get('start-after') ?? undefined),
      ...contents.map(([key, object]) =>
        node('Contents', [
          leaf('Key', key),
          leaf('LastModified', object.modified.toISOString()),
          leaf('ETag', object.etag),
          leaf('ChecksumAlgorithm', object.checksum?.algorithm.toUpperCase()),
          leaf('Size', object.size),
          leaf('StorageClass', 'STANDARD'),
        ]),
      ),
      ...prefixes.map((p) => node('CommonPrefixes', [leaf('Prefix', p)])),
    ]);
  }

  // ---- objects

  private object(bucket: string, key: string): StoredObject {
    const object = this.bucket(bucket).objects.get(key);
    if (!object) throw new S3Error('NoSuchKey', { Key: key });
    return object;
  }

  /** The object and an open handle on its bytes, which a concurrent overwrite or delete can't pull away. */
  private async openObject(
    bucket: string,
    key: string,
  ): Promise<{ object: StoredObject; handle: FileHandle }> {
    for (let attempt = 1; ; attempt++) {
      const object = this.object(bucket, key);
      try {
        return { object, handle: await open(object.file) };
      } catch (error) {
        // Replaced between lookup and open: read the version that replaced it.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3) throw error;
      }
    }
  }

  /** Streams into a new file and hands it to `keep`; the file is removed again if either throws. */
  private async intoFile<D, T>(
    fill: (sink: WriteStream) => Promise<D>,
    keep: (file: string, digest: D) => T,
  ) {
    const file = join(this.directory, randomBytes(12).toString('hex'));
    try {
      return keep(file, await fill(createWriteStream(file, { highWaterMark: MiB })));
    } catch (error) {
      await discard([{ file }]);
      throw error;
    }
  }

  /** Makes `object` the key's current version, if its bucket is still there. */
  private commit({ bucket: name, key }: Call, object: StoredObject): StoredObject {
    const objects = this.bucket(name).objects;
    const current = objects.get(key);
    objects.set(key, object);
    if (current) void discard([current]); // readers hold their own handle on the bytes
    return object;
  }

  private async putObject(call: Call) {
    this.bucket(call.bucket);
    checkUpload(call.req, call.key);
    const object = await this.intoFile(
      (sink) => receiveBody(call.req, sink),
      (file, digest) => this.commit(call, stored(file, digest, storedHeaders(call.req))),
    );
    call.res
      .writeHead(200, { etag: object.etag, ...checksumHeaders(object.checksum), 'content-length': 0 })
      .end();
  }

  private async getObject({ req, res, bucket, key }: Call) {
    const head = req.method === 'HEAD';
    const { object, handle } = head
      ? { object: this.object(bucket, key), handle: undefined }
      : await this.openObject(bucket, key);
    try {
      const headers: Record<string, string | number> = {
        ...object.headers,
        etag: object.etag,
        'last-modified': object.modified.toUTCString(),
        'accept-ranges': 'bytes',
      };
      const range = parseRange(req.headers.range, object.size);
      if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${object.size}`;
      else if (req.headers['x-amz-checksum-mode'] === 'ENABLED') {
        Object.assign(headers, checksumHeaders(object.checksum));
      }
      headers['content-length'] = range ? range.end - range.start + 1 : object.size;
      res.writeHead(range ? 206 : 200, headers);
      if (!handle || object.size === 0) return void res.end();
      await pipeline(handle.createReadStream({ ...range, highWaterMark: MiB }), res);
    } finally {
      await handle?.close();
    }
  }

  private async deleteObject({ res, bucket, key }: Call) {
    await this.remove(bucket, key);
    res.writeHead(204).end();
  }

  private async remove(name: string, key: string) {
    const bucket = this.bucket(name);
    const object = bucket.objects.get(key);
    bucket.objects.delete(key);
    if (object) await discard([object]);
  }

  private async deleteObjects({ req, res, bucket }: Call) {
    this.bucket(bucket);
    if (req.headers['content-md5'] === undefined && declaredChecksums(req.headers).length === 0) {
      throw new S3Error(
        'InvalidRequest',
        {},
        'Missing required header for this request: Content-MD5 OR x-amz-checksum-*',
      );
    }
    const xml = await receiveXml(req);
    const keys = xmlElements(xml, 'Object').map((object) => xmlValue(object, 'Key'));
    if (keys.length === 0 || keys.length > 1000 || keys.includes(undefined)) {
      throw new S3Error('MalformedXML');
    }
    for (const key of keys) await this.remove(bucket, key!);
    const quiet = xmlValue(xml, 'Quiet') === 'true';
    sendXml(res, 200, 'DeleteResult', quiet ? [] : keys.map((key) => node('Deleted', [leaf('Key', key)])));
  }

  private async copyObject(call: Call) {
    const { req, res, bucket, key } = call;
    this.bucket(bucket);
    const source = copySource(req);
    const replace = req.headers['x-amz-metadata-directive'] === 'REPLACE';
    if (source.bucket === bucket && source.key === key && !replace) {
      throw new S3Error(
        'InvalidRequest',
        {},
        'This copy request is illegal: it copies an object onto itself unchanged.',
      );
    }
    const { object: from, handle } = await this.openObject(source.bucket, source.key);
    try {
      // The copy is one new piece: its ETag is its MD5, its checksum (same algorithm) covers all of it.
      const algorithm = from.checksum && hasher(from.checksum.algorithm) ? [from.checksum.algorithm] : [];
      const object = await this.intoFile(
        (sink) => measure(handle.createReadStream({ highWaterMark: MiB }), sink, algorithm),
        (file, digest) =>
          this.commit(call, stored(file, digest, replace ? storedHeaders(req) : from.headers)),
      );
      sendXml(res, 200, 'CopyObjectResult', [
        leaf('ETag', object.etag),
        leaf('LastModified', object.modified.toISOString()),
        ...checksumElements(checksumsOf(object.checksum)),
      ]);
    } finally {
      await handle.close();
    }
  }

  // ---- multipart uploads

  private upload({ bucket, key, query }: Call): MultipartUpload {
    const uploadId = query.get('uploadId') ?? '';
    const upload = this.bucket(bucket).uploads.get(uploadId);
    if (!upload || upload.key !== key) throw new S3Error('NoSuchUpload', { UploadId: uploadId });
    return upload;
  }

  private createUpload({ req, res, bucket, key }: Call) {
    const uploads = this.bucket(bucket).uploads;
    checkKey(key);
    const named = String(req.headers['x-amz-checksum-algorithm'] ?? '').toLowerCase();
    const algorithm = CHECKSUM_ALGORITHMS.find((a) => a === named);
    if (named && !algorithm) {
      throw new S3Error('InvalidRequest', {}, `Checksum algorithm ${named} is not supported.`);
    }
    // S3 requires FULL_OBJECT for CRC64NVME; a whole-object CRC of the joined parts isn't computed here.
    const type = String(req.headers['x-amz-checksum-type'] ?? '').toUpperCase();
    if (type === 'FULL_OBJECT' || algorithm === 'crc64nvme')
      throw notImplemented('FULL_OBJECT upload checksums');
    const id = (this.uploads++).toString(36).padStart(8, '0') + randomBytes(16).toString('base64url');
    uploads.set(id, {
      id,
      key,
      initiated: new Date(),
      headers: storedHeaders(req),
      algorithm,
      parts: new Map(),
    });
    sendXml(
      res,
      200,
      'InitiateMultipartUploadResult',
      [leaf('Bucket', bucket), leaf('Key', key), leaf('UploadId', id)],
      algorithm
        ? { 'x-amz-checksum-algorithm': algorithm.toUpperCase(), 'x-amz-checksum-type': 'COMPOSITE' }
        : {},
    );
  }

  /** UploadPart, or UploadPartCopy when `x-amz-copy-source` names the bytes. */
  private async uploadPart(call: Call) {
    const { req, res } = call;
    const text = call.query.get('partNumber') ?? '';
    const number = Number(text);
    if (!/^\d+$/.test(text) || number < 1 || number > MAX_PART_NUMBER) {
      const message = `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`;
      throw new S3Error('InvalidArgument', { ArgumentName: 'partNumber', ArgumentValue: text }, message);
    }
    const { algorithm } = this.upload(call);
    const compute = algorithm ? [algorithm] : [];
    const keep = (file: string, digest: Digest): Part => {
      const upload = this.upload(call); // still open after the bytes arrived?
      const part = {
        file,
        size: digest.size,
        md5: digest.md5,
        modified: new Date(),
        checksums: digest.checksums,
      };
      const previous = upload.parts.get(number);
      upload.parts.set(number, part);
      if (previous) void discard([previous]);
      return part;
    };
    const etag = (part: Part) => `"${part.md5.toString('hex')}"`;
    if (!req.headers['x-amz-copy-source']) {
      checkUpload(call.req, call.key);
      const part = await this.intoFile((sink) => receiveBody(req, sink, compute), keep);
      return void res
        .writeHead(200, { etag: etag(part), ...prefixed(part.checksums), 'content-length': 0 })
        .end();
    }
    const source = copySource(req);
    const { object: from, handle } = await this.openObject(source.bucket, source.key);
    try {
      const range = copyRange(req.headers['x-amz-copy-source-range'], from.size);
      const part = await this.intoFile(
        (sink) => measure(handle.createReadStream({ ...range, highWaterMark: MiB }), sink, compute),
        keep,
      );
      sendXml(res, 200, 'CopyPartResult', [
        leaf('ETag', etag(part)),
        leaf('LastModified', part.modified.toISOString()),
        ...checksumElements(part.checksums),
      ]);
    } finally {
      await handle.close();
    }
  }

  private async completeUpload(call: Call) {
    const { req, res, bucket: name, key } = call;
    this.upload(call);
    const xml = await receiveXml(req);
    const upload = this.upload(call); // not aborted while the list arrived
    const { algorithm } = upload;
    const listed = xmlElements(xml, 'Part').map((part) => ({
      number: Number(xmlValue(part, 'PartNumber')),
      etag: (xmlValue(part, 'ETag') ?? '').replace(/"/g, '').toLowerCase(),
      checksum: algorithm && xmlValue(part, `Checksum${algorithm.toUpperCase()}`),
    }));
    if (listed.length === 0) throw new S3Error('MalformedXML');
    if (listed.some((entry, i) => i > 0 && !(entry.number > listed[i - 1]!.number))) {
      throw new S3Error('InvalidPartOrder');
    }
    const parts = listed.map((entry) => {
      const part = upload.parts.get(entry.number);
      const checksumDiffers = entry.checksum !== undefined && entry.checksum !== part?.checksums[algorithm!];
      if (!part || entry.etag !== part.md5.toString('hex') || checksumDiffers) {
        throw new S3Error('InvalidPart', { PartNumber: entry.number, ETag: entry.etag });
      }
      return part;
    });
    const small = parts.findIndex((part, i) => i < parts.length - 1 && part.size < MIN_PART_SIZE);
    if (small >= 0) {
      const fields = {
        ProposedSize: parts[small]!.size,
        MinSizeAllowed: MIN_PART_SIZE,
        PartNumber: listed[small]!.number,
      };
      throw new S3Error('EntityTooSmall', fields);
    }

    // From here the upload is this request's: parts sent now, aborts or a second complete get NoSuchUpload.
    const bucket = this.bucket(name);
    bucket.uploads.delete(upload.id);
    const etag = createHash('md5');
    for (const part of parts) etag.update(part.md5);
    let object: StoredObject;
    try {
      object = await this.intoFile(
        (sink) => pipeline(concatenate(parts), sink),
        (file) => {
          const size = parts.reduce((sum, part) => sum + part.size, 0);
          const multipart = `"${etag.digest('hex')}-${parts.length}"`;
          const checksum = compositeChecksum(algorithm, parts);
          return this.commit(call, {
            file,
            size,
            etag: multipart,
            modified: new Date(),
            headers: upload.headers,
            checksum,
          });
        },
      );
    } catch (error) {
      if (this.buckets.get(name) === bucket) bucket.uploads.set(upload.id, upload); // still completable
      throw error;
    }
    await discard([...upload.parts.values()]);
    sendXml(res, 200, 'CompleteMultipartUploadResult', [
      leaf(
        'Location',
        `http://${req.headers.host}/${name}/${key.split('/').map(encodeURIComponent).join('/')}`,
      ),
      leaf('Bucket', name),
      leaf('Key', key),
      leaf('ETag', object.etag),
      ...checksumElements(checksumsOf(object.checksum)),
      leaf('ChecksumType', object.checksum?.type),
    ]);
  }

  private async abortUpload(call: Call) {
    const upload = this.upload(call);
    this.bucket(call.bucket).uploads.delete(upload.id);
    await discard([...upload.parts.values()]);
    call.res.writeHead(204).end();
  }

  private listUploads({ res, bucket, query }: Call) {
    const uploads = this.bucket(bucket).uploads;
    if (query.get('delimiter')) throw notImplemented('ListMultipartUploads with a delimiter');
    const prefix = query.get('prefix') ?? '';
    const keyMarker = query.get('key-marker') ?? '';
    const idMarker = query.get('upload-id-marker') ?? '';
    const max = boundedInteger(query.get('max-uploads'), 1000, 'max-uploads');
    // Without upload-id-marker, key-marker's own uploads are past; with it, those with greater IDs are not.
    const past = (u: MultipartUpload) =>
      !!keyMarker &&
      (compareUtf8(u.key, keyMarker) < 0 || (u.key === keyMarker && (!idMarker || u.id <= idMarker)));
    const remaining = [...uploads.values()]
      .filter((u) => u.key.startsWith(prefix) && !past(u))
      .sort((a, b) => compareUtf8(a.key, b.key) || (a.id < b.id ? -1 : 1));
    const page = remaining.slice(0, max);
    sendXml(res, 200, 'ListMultipartUploadsResult', [
      leaf('Bucket', bucket),
      leaf('KeyMarker', keyMarker),
      leaf('UploadIdMarker', idMarker),
      leaf('NextKeyMarker', page.at(-1)?.key ?? ''),
      leaf('NextUploadIdMarker', page.at(-1)?.id ?? ''),
      leaf('Prefix', prefix),
      leaf('MaxUploads', max),
      leaf('IsTruncated', remaining.length > page.length),
      ...page.map((u) =>
        node('Upload', [
          leaf('Key', u.key),
          leaf('UploadId', u.id),
          INITIATOR,
          OWNER,
          leaf('StorageClass', 'STANDARD'),
          leaf('Initiated', u.initiated.toISOString()),
          leaf('ChecksumAlgorithm', u.algorithm?.toUpperCase()),
          leaf('ChecksumType', u.algorithm ? 'COMPOSITE' : undefined),
        ]),
      ),
    ]);
  }

  private listParts(call: Call) {
    const { res, bucket, key, query } = call;
    const upload = this.upload(call);
    const marker = boundedInteger(query.get('part-number-marker'), 0, 'part-number-marker', MAX_PART_NUMBER);
    const max = boundedInteger(query.get('max-parts'), 1000, 'max-parts');
    const numbers = [...upload.parts.keys()].filter((n) => n > marker).sort((a, b) => a - b);
    const page = numbers.slice(0, max);
    sendXml(res, 200, 'ListPartsResult', [
      leaf('Bucket', bucket),
      leaf('Key', key),
      leaf('UploadId', upload.id),
      leaf('PartNumberMarker', marker),
      leaf('NextPartNumberMarker', page.at(-1) ?? 0),
      leaf('MaxParts', max),
      leaf('IsTruncated', numbers.length > page.length),
      INITIATOR,
      OWNER,
      leaf('StorageClass', 'STANDARD'),
      leaf('ChecksumAlgorithm', upload.algorithm?.toUpperCase()),
      ...page.map((n) => {
        const part = upload.parts.get(n)!;
        return node('Part', [
          leaf('PartNumber', n),
          leaf('LastModified', part.modified.toISOString()),
          leaf('ETag', `"${part.md5.toString('hex')}"`),
          leaf('Size', part.size),
          ...checksumElements(part.checksums),
        ]);
      }),
    ]);
  }
}

// ---- helpers

/** A single-piece object: its ETag is its MD5, its checksum (if one was sent or computed) covers all of it. */
function stored(file: string, digest: Digest, headers: Readonly<Record<string, string>>): StoredObject {
  const [entry] = Object.entries(digest.checksums).filter(([, value]) => value !== undefined);
  const checksum = entry && {
    algorithm: entry[0] as ChecksumAlgorithm,
    value: entry[1]!,
    type: 'FULL_OBJECT' as const,
  };
  return {
    file,
    size: digest.size,
    etag: `"${digest.md5.toString('hex')}"`,
    modified: new Date(),
    headers,
    checksum,
  };
}

/** S3's checksum of a multipart object: of the parts' checksums, with `-N`; none where it can't be computed. */
function compositeChecksum(
  algorithm: ChecksumAlgorithm | undefined,
  parts: readonly Part[],
): ObjectChecksum | undefined {
  const composite = algorithm && hasher(algorithm);
  if (!composite || parts.some((part) => part.checksums[algorithm!] === undefined)) return undefined;
  for (const part of parts) composite.update(Buffer.from(part.checksums[algorithm!]!, 'base64'));
  const value = `${composite.digest().toString('base64')}-${parts.length}`;
  return { algorithm: algorithm!, value, type: 'COMPOSITE' };
}

function checksumsOf(checksum: ObjectChecksum | undefined): Checksums {
  return checksum ? { [checksum.algorithm]: checksum.value } : {};
}

/** `x-amz-checksum-<algorithm>` headers. */
function prefixed(checksums: Checksums): Record<string, string> {
  const entries = Object.entries(checksums).filter(([, value]) => value !== undefined);
  return Object.fromEntries(entries.map(([a, value]) => [`x-amz-checksum-${a}`, value!]));
}

function checksumHeaders(checksum: ObjectChecksum | undefined): Record<string, string> {
  const type: Record<string, string> = checksum ? { 'x-amz-checksum-type': checksum.type } : {};
  return { ...prefixed(checksumsOf(checksum)), ...type };
}

/** `<ChecksumCRC32>`… elements. */
function checksumElements(checksums: Checksums): string[] {
  return Object.entries(checksums).map(([a, value]) => leaf(`Checksum${a.toUpperCase()}`, value));
}

async function* concatenate(parts: readonly Part[]): AsyncGenerator<Buffer> {
  for (const { file } of parts)
    yield* createReadStream(file, { highWaterMark: MiB }) as AsyncIterable<Buffer>;
}

async function discard(stored: readonly { readonly file: string }[]): Promise<void> {
  await Promise.all(stored.map(({ file }) => unlink(file).catch(() => undefined)));
}
