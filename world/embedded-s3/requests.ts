/** Parsing and checking the parts of an S3 request the embedded server reads: ranges, copy sources, sizes. */
import type { IncomingMessage } from 'node:http';
import { memorySink, receiveBody } from './body.ts';
import { S3Error } from './xml.ts';

const MiB = 1024 * 1024;
const MAX_UPLOAD_SIZE = 5 * 1024 * MiB; // one PutObject or one part
/** Headers kept with an object and returned on GET/HEAD, besides `x-amz-meta-*`. */
const STORED_HEADERS = [
  'content-type',
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'expires',
];

export function asS3Error(error: unknown): S3Error {
  if (error instanceof S3Error) return error;
  if (error instanceof URIError) return new S3Error('InvalidURI');
  return new S3Error('InternalError', {}, error instanceof Error ? error.message : String(error));
}

export function notImplemented(what: string): S3Error {
  return new S3Error('NotImplemented', {}, `The embedded S3 server does not implement ${what}.`);
}

/** S3 orders keys by their UTF-8 bytes (JavaScript's `<` compares UTF-16 units). */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function boundedInteger(text: string | null, fallback: number, name: string, max = 1000): number {
  if (text === null) return fallback;
  if (!/^\d+$/.test(text)) throw new S3Error('InvalidArgument', { ArgumentName: name, ArgumentValue: text });
  return Math.min(Number(text), max);
}

export function checkKey(key: string): void {
  if (Buffer.byteLength(key) > 1024) throw new S3Error('KeyTooLongError');
}

/** A PutObject or UploadPart body: a known length (or framing that carries one) within S3's 5 GiB. */
export function checkUpload(req: IncomingMessage, key: string): void {
  checkKey(key);
  const length = req.headers['x-amz-decoded-content-length'] ?? req.headers['content-length'];
  if (length === undefined && req.headers['transfer-encoding'] === undefined) {
    throw new S3Error('MissingContentLength');
  }
  if (Number(length) > MAX_UPLOAD_SIZE) {
    throw new S3Error('EntityTooLarge', { ProposedSize: Number(length), MaxSizeAllowed: MAX_UPLOAD_SIZE });
  }
}

export function storedHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'binary/octet-stream' };
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string' && (name.startsWith('x-amz-meta-') || STORED_HEADERS.includes(name))) {
      headers[name] = value;
    }
  }
  // aws-chunked is how the body travelled, not how the object is encoded.
  const encoding = (headers['content-encoding'] ?? '').split(',').map((e) => e.trim());
  headers['content-encoding'] = encoding.filter((e) => e && e !== 'aws-chunked').join(',');
  if (!headers['content-encoding']) delete headers['content-encoding'];
  return headers;
}

/**
 * One `bytes=` range, inclusive. Like S3, a header that doesn't parse (or asks for several ranges) is
 * ignored and the whole object sent; a range starting past the end is InvalidRange.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  const first = match[1] === '' ? undefined : Number(match[1]);
  const last = match[2] === '' ? undefined : Number(match[2]);
  if (first !== undefined && last !== undefined && last < first) return undefined;
  const start = first ?? Math.max(0, size - last!);
  const end = first === undefined ? size - 1 : Math.min(last ?? size - 1, size - 1);
  if (start >= size || (first === undefined && last === 0)) {
    const fields = { RangeRequested: header!, ActualObjectSize: size };
    throw new S3Error('InvalidRange', fields, undefined, { 'content-range': `bytes */${size}` });
  }
  return { start, end };
}

/** `x-amz-copy-source`: `[/]bucket/key`, URL-encoded, optionally `?versionId=null`. */
export function copySource(req: IncomingMessage): { bucket: string; key: string } {
  const [path = '', search = ''] = String(req.headers['x-amz-copy-source']).split(/\?(.*)/s);
  const versionId = new URLSearchParams(search).get('versionId') ?? 'null';
  if (versionId !== 'null') throw notImplemented('versioned copies');
  const source = decodeURIComponent(path).replace(/^\//, '');
  const slash = source.indexOf('/');
  if (slash <= 0 || slash === source.length - 1) {
    throw new S3Error(
      'InvalidArgument',
      {},
      'Copy Source must mention the source bucket and key: sourcebucket/sourcekey',
    );
  }
  return { bucket: source.slice(0, slash), key: source.slice(slash + 1) };
}

export function copyRange(
  header: string | string[] | undefined,
  size: number,
): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d+)-(\d+)$/.exec(String(header).trim());
  const [start, end] = [Number(match?.[1]), Number(match?.[2])];
  if (!match || end < start || end >= size) {
    const message = `x-amz-copy-source-range must be bytes=first-last within the source object's ${size} bytes`;
    throw new S3Error('InvalidArgument', { ArgumentName: 'x-amz-copy-source-range' }, message);
  }
  return { start, end };
}

export async function receiveXml(req: IncomingMessage): Promise<string> {
  const { sink, text } = memorySink(4 * MiB); // 10,000 parts with checksums fit
  await receiveBody(req, sink);
  return text();
}
