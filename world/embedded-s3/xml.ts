/** S3's wire documents for the embedded server: the errors it answers with, and the XML both ways. */
import type { ServerResponse } from 'node:http';

/** The S3 errors this server answers with: HTTP status and S3's message. */
const ERRORS = {
  AccessDenied: [403, 'Access Denied.'],
  BadDigest: [400, 'The Content-MD5 or checksum you specified did not match what was received.'],
  BucketAlreadyOwnedByYou: [
    409,
    'Your previous request to create the named bucket succeeded and you already own it.',
  ],
  BucketNotEmpty: [409, 'The bucket you tried to delete is not empty.'],
  EntityTooLarge: [400, 'Your proposed upload exceeds the maximum allowed size.'],
  EntityTooSmall: [400, 'Your proposed upload is smaller than the minimum allowed size.'],
  IncompleteBody: [
    400,
    'You did not provide the number of bytes specified by the Content-Length HTTP header.',
  ],
  InternalError: [500, 'We encountered an internal error. Please try again.'],
  InvalidAccessKeyId: [403, 'The AWS Access Key Id you provided does not exist in our records.'],
  InvalidArgument: [400, 'Invalid Argument.'],
  InvalidBucketName: [400, 'The specified bucket is not valid.'],
  InvalidDigest: [400, 'The Content-MD5 you specified is not valid.'],
  InvalidPart: [
    400,
    "One or more of the specified parts could not be found, or its entity tag did not match the part's.",
  ],
  InvalidPartOrder: [
    400,
    'The list of parts was not in ascending order. Parts must be listed in order by part number.',
  ],
  InvalidRange: [416, 'The requested range is not satisfiable.'],
  InvalidRequest: [400, 'Invalid Request.'],
  InvalidURI: [400, 'Could not parse the specified URI.'],
  KeyTooLongError: [400, 'Your key is too long.'],
  MalformedTrailerError: [400, 'The request contained trailing data that was not well-formed.'],
  MalformedXML: [
    400,
    'The XML you provided was not well-formed or did not validate against our published schema.',
  ],
  MaxMessageLengthExceeded: [400, 'Your request was too big.'],
  MethodNotAllowed: [405, 'The specified method is not allowed against this resource.'],
  MissingContentLength: [411, 'You must provide the Content-Length HTTP header.'],
  NoSuchBucket: [404, 'The specified bucket does not exist.'],
  NoSuchKey: [404, 'The specified key does not exist.'],
  NoSuchUpload: [404, 'The specified upload does not exist. It may have been aborted or completed.'],
  NotImplemented: [501, 'A header or query you provided implies functionality that is not implemented.'],
  PreconditionFailed: [412, 'At least one of the pre-conditions you specified did not hold.'],
  XAmzContentSHA256Mismatch: [
    400,
    "The provided 'x-amz-content-sha256' header does not match what was computed.",
  ],
} as const satisfies Record<string, readonly [number, string]>;
export type S3ErrorCode = keyof typeof ERRORS;

/** An S3 error: the `<Code>` the SDK turns into the exception's name, with its status. */
export class S3Error extends Error {
  readonly code: S3ErrorCode;
  readonly status: number;
  /** More elements of the `<Error>` document (e.g. `Key`, `BucketName`). */
  readonly fields: Readonly<Record<string, string | number>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: S3ErrorCode,
    fields: Record<string, string | number> = {},
    message: string = ERRORS[code][1],
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.code = code;
    this.status = ERRORS[code][0];
    this.fields = fields;
    this.headers = headers;
  }
}

const NAMED: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

export function escapeXml(text: string): string {
  // Control characters (a key may hold `\r`) go as character references, as S3 writes them.
  // eslint-disable-next-line no-control-regex
  return text.replace(/[&<>"'\u0000-\u001f]/g, (c) => NAMED[c] ?? `&#${c.charCodeAt(0)};`);
}

/** `<name>value</name>`, escaped; nothing at all when the value is undefined. */
export function leaf(name: string, value: string | number | boolean | undefined): string {
  return value === undefined ? '' : `<${name}>${escapeXml(String(value))}</${name}>`;
}

/** `<name>…</name>` around already-rendered children. */
export function node(name: string, children: readonly string[]): string {
  return `<${name}>${children.join('')}</${name}>`;
}

export function sendXml(
  res: ServerResponse,
  status: number,
  root: string,
  children: readonly string[],
  headers: Record<string, string> = {},
): void {
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<${root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${children.join('')}</${root}>`;
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** S3's error document (HEAD answers carry no body: the SDK goes by the status). */
export function sendError(res: ServerResponse, head: boolean, error: S3Error, requestId: string): void {
  const details = Object.entries(error.fields).map(([name, value]) => leaf(name, value));
  const body = head
    ? ''
    : `<?xml version="1.0" encoding="UTF-8"?>\n` +
      node('Error', [
        leaf('Code', error.code),
        leaf('Message', error.message),
        ...details,
        leaf('RequestId', requestId),
      ]);
  res.writeHead(error.status, {
    ...error.headers,
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, entity: string) => {
    if (entity[0] !== '#') return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[entity.toLowerCase()]!;
    return String.fromCodePoint(entity[1] === 'x' ? parseInt(entity.slice(2), 16) : Number(entity.slice(1)));
  });
}

/**
 * The raw content of every `<name>` element. Enough for the flat request documents S3 takes
 * (CompleteMultipartUpload, Delete): no schema, no namespaces beyond ignoring attributes.
 */
export function xmlElements(xml: string, name: string): string[] {
  const pattern = new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`, 'g');
  return [...xml.matchAll(pattern)].map((match) => match[1]!);
}

/** The text of the first `<name>` element, unescaped. */
export function xmlValue(xml: string, name: string): string | undefined {
  const [raw] = xmlElements(xml, name);
  return raw === undefined ? undefined : unescapeXml(raw);
}
