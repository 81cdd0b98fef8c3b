import { DEFAULT_CATALOG_PREFIX, DEFAULT_LOCAL_POOL } from '../lambdas/runtime/defaults.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import type { CatalogLocation } from '../lambdas/catalog/keys.ts';
import { createS3Client } from '../lambdas/s3/client.ts';
import { booleanFlag, stringFlag, type FlagValues } from './args.ts';
import { StackOutputs, type AwsClients } from './deployed.ts';
import type { S3Endpoint } from '../lambdas/s3/client.ts';
import { UsageError } from './exit-codes.ts';

export interface CatalogAccess {
  readonly s3: S3Client;
  readonly location: CatalogLocation;
  readonly pool: string;
}

/**
 * The catalog `list` and `verify` read: with `--local`, the S3 endpoint, bucket and prefix from flags;
 * deployed, the stack's bucket, catalog prefix (`CatalogPrefix`) and default pool unless flags name them.
 */
export async function catalogFromFlags(
  values: FlagValues,
  env: NodeJS.ProcessEnv,
  clients: AwsClients,
): Promise<CatalogAccess> {
  const prefixFlag = stringFlag(values, 'prefix');
  const s3 = createS3Client(s3EndpointFromFlags(values, env));
  if (booleanFlag(values, 'local')) {
    return {
      s3,
      location: { bucket: requireBucket(values), prefix: prefixFlag ?? DEFAULT_CATALOG_PREFIX },
      pool: stringFlag(values, 'pool') ?? DEFAULT_LOCAL_POOL,
    };
  }
  const stack = new StackOutputs(clients, values);
  const bucket = stringFlag(values, 'bucket') ?? (await stack.get('BucketName', '--bucket'));
  // The construct's prefix is configurable: guessing the default would find nothing under another one.
  const prefix = prefixFlag ?? (await stack.get('CatalogPrefix', '--prefix'));
  const pool = stringFlag(values, 'pool') ?? (await stack.find('DefaultPool'));
  if (pool === undefined) throw new UsageError('give --pool (the stack exports no DefaultPool)');
  return { s3, location: { bucket, prefix }, pool };
}

/** The S3 endpoint from flags (or env); with no endpoint, the SDK's own AWS defaults. */
export function s3EndpointFromFlags(values: FlagValues, env: NodeJS.ProcessEnv): S3Endpoint {
  const endpoint = stringFlag(values, 's3-endpoint');
  const region = stringFlag(values, 'region');
  const accessKeyId = stringFlag(values, 's3-access-key') ?? env.VDI_VAULT_S3_ACCESS_KEY;
  const secretAccessKey = stringFlag(values, 's3-secret-key') ?? env.VDI_VAULT_S3_SECRET_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new UsageError(
      'give both --s3-access-key and --s3-secret-key (or neither, for the SDK credential chain)',
    );
  }
  return {
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(region !== undefined ? { region } : {}),
    ...(accessKeyId !== undefined ? { credentials: { accessKeyId, secretAccessKey: secretAccessKey! } } : {}),
  };
}

export function requireBucket(values: FlagValues): string {
  const bucket = stringFlag(values, 'bucket');
  if (bucket === undefined) throw new UsageError('--local needs --bucket');
  return bucket;
}
