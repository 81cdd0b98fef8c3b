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
  return new S3Client({
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
}
