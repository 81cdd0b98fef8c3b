import { readFileSync } from 'node:fs';
import type { LocalTarget } from '../world/local/local-target.ts';
import type { S3Endpoint } from '../lambdas/s3/client.ts';
import { stringFlag, type FlagValues } from './args.ts';
import { UsageError } from './exit-codes.ts';

export const DEFAULT_LOCAL_POOL = 'local';
export const DEFAULT_PREFIX = 'backups';

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

/** What the local runner needs, from `--xapi-*`, `--s3-*`, `--bucket`, `--prefix` and `--pool`. */
export function localTargetFromFlags(values: FlagValues, env: NodeJS.ProcessEnv, pool?: string): LocalTarget {
  const url = stringFlag(values, 'xapi-url');
  if (url === undefined)
    throw new UsageError('--local needs --xapi-url (the pool master, e.g. https://xcp-master)');
  const password = stringFlag(values, 'xapi-password') ?? env.VDI_VAULT_XAPI_PASSWORD;
  if (password === undefined) {
    throw new UsageError(
      '--local needs the XAPI password: set VDI_VAULT_XAPI_PASSWORD (or give --xapi-password)',
    );
  }
  const caFile = stringFlag(values, 'xapi-ca');
  let caPem: string | undefined;
  if (caFile !== undefined) {
    try {
      caPem = readFileSync(caFile, 'utf8');
    } catch (error) {
      throw new UsageError(`--xapi-ca: cannot read ${caFile}: ${(error as Error).message}`);
    }
  }
  return {
    xapi: {
      url,
      username: stringFlag(values, 'xapi-user') ?? 'root',
      password,
      ...(caPem !== undefined ? { tls: { caPem } } : {}),
    },
    pool: pool ?? stringFlag(values, 'pool') ?? DEFAULT_LOCAL_POOL,
    s3: s3EndpointFromFlags(values, env),
    bucket: requireBucket(values),
    prefix: stringFlag(values, 'prefix') ?? DEFAULT_PREFIX,
  };
}

export function requireBucket(values: FlagValues): string {
  const bucket = stringFlag(values, 'bucket');
  if (bucket === undefined) throw new UsageError('--local needs --bucket');
  return bucket;
}

/** Where a local run goes, for its execution log: no credentials. */
export function describeLocalTarget(target: LocalTarget) {
  return {
    xapiUrl: target.xapi.url,
    xapiUser: target.xapi.username,
    pool: target.pool,
    s3Endpoint: target.s3.endpoint ?? null,
    bucket: target.bucket,
    prefix: target.prefix,
  };
}
