import type { S3Client } from '@aws-sdk/client-s3';
import type { S3Endpoint } from '../lambdas/s3/client.ts';
import type { SwiftLease } from './swift.ts';

/** Swift's S3 endpoint, a client for it (createS3Client) and the run's own bucket. */
export interface S3World {
  readonly swift: SwiftLease;
  readonly endpoint: S3Endpoint & { readonly endpoint: string; readonly region: string };
  readonly client: S3Client;
  readonly bucket: string;
}
