import { S3Client } from '@aws-sdk/client-s3';

/** Where and how to reach S3. Everything is optional: the defaults are the SDK's own (real AWS). */
export interface S3Endpoint {
  /** An S3-compatible endpoint such as `http://127.0.0.1:8080`. Default: AWS's regional endpoint. */
  readonly endpoint?: string;
  /** Default: `us-east-1` when an endpoint is given, else the SDK's region chain. */
  readonly region?: string;
  /** Static credentials (local servers). Default: the SDK's credential chain. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/**
 * Builds the S3 client every module uses. With an endpoint override we address buckets by path and only
 * send checksums when an operation requires them: S3-compatible servers differ in how they store
 * `aws-chunked` bodies with checksum trailers, and stored bytes must equal sent bytes.
 */
export function createS3Client(target: S3Endpoint = {}): S3Client {
  const local = target.endpoint !== undefined;
  const client = new S3Client({
    ...(local
      ? {
          endpoint: target.endpoint,
          forcePathStyle: true,
          region: target.region ?? 'us-east-1',
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        }
      : target.region !== undefined
        ? { region: target.region }
        : {}),
    ...(target.credentials ? { credentials: target.credentials } : {}),
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'UploadPartCommand') leavePayloadUnsigned(args.request);
      return next(args);
    },
    { step: 'build', priority: 'low', name: 'vdiVaultUnsignedPartPayload' },
  );
  return client;
}

/**
 * A part's SigV4 signature leaves its payload out (`UNSIGNED-PAYLOAD`), as the AWS CLI does over TLS:
 * otherwise the SDK hashes every part's bytes once more with sha256, a tenth of an export's CPU
 * (docs/design.md § S3 multipart uploads). The bytes stay checked: TLS in transit, the part's CRC32 that the
 * SDK still sends to AWS by default (an explicit `ChecksumAlgorithm` where Object Lock needs one), and the
 * object's sha256 in its manifest, verified on every restore.
 */
function leavePayloadUnsigned(request: unknown): void {
  const headers = (request as { headers?: Record<string, string> } | undefined)?.headers;
  if (headers && !Object.keys(headers).some((name) => name.toLowerCase() === 'x-amz-content-sha256')) {
    headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  }
}
