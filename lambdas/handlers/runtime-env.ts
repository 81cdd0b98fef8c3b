import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { BackupLockTable } from '../backup/backup-lock.ts';
import type { TransferRouting } from '../transfer/routing.ts';
import { createS3Client } from '../s3/client.ts';
import type { CatalogLocation } from '../catalog/keys.ts';
import type { Log } from '../shared/log.ts';
import { poolDirectory, type PoolAccess, type PoolDirectory } from '../shared/pools.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import type { XapiCredentials } from '../xapi/index.ts';
import { dynamoProgressStore, type ProgressStore } from '../shared/transfer-progress.ts';
import { logger, tracer } from './observability.ts';

/** One pool as the infrastructure passes it to the functions (`VDI_VAULT_POOLS`, a JSON object by name). */
export interface PoolEnvironment {
  readonly url: string;
  /** Secrets Manager secret (name or ARN) holding `{"username","password"}`; only Login reads it. */
  readonly secretId?: string;
  readonly caPem?: string;
  readonly pinnedSha256?: string;
  readonly insecureSkipVerify?: boolean;
  readonly timeoutMs?: number;
}

export interface RuntimeEnvironment {
  readonly s3: S3Client;
  readonly catalog: CatalogLocation;
  readonly pools: PoolDirectory;
  readonly log: Log;
  /** `VDI_VAULT_LOCK_TABLE`: the series lock (one backup per VDI at a time). Absent: runs are not serialised. */
  readonly lock?: BackupLockTable;
  /** The same table: where transfers record their progress for `watch`. */
  readonly progress?: ProgressStore;
  /** `VDI_VAULT_CONCURRENCY`: VDIs of one backup execution at once when the input sets none. */
  readonly defaultConcurrency?: number;
  /**
   * `VDI_VAULT_FARGATE_THRESHOLD` (bytes): transfers expected to reach it run on Fargate;
   * `VDI_VAULT_TRANSFER_MEMORY_MB`: the export Lambda's memory, which its part buffers must fit.
   */
  readonly routing?: TransferRouting;
  /**
   * `VDI_VAULT_UPLOAD_CHECKSUM` (set when the bucket has Object Lock): a per-part checksum on exports;
   * `VDI_VAULT_STALL_TIMEOUT_MS`: how long an export may see no bytes.
   */
  readonly exportTuning: {
    readonly checksumAlgorithm?: 'CRC32' | 'SHA256';
    readonly stallTimeoutMs?: number;
  };
}

/** Reads the function's configuration from its environment: the only place Lambda code looks at env vars. */
export function runtimeFromEnvironment(env: NodeJS.ProcessEnv = process.env): RuntimeEnvironment {
  const bucket = env.VDI_VAULT_BUCKET;
  if (!bucket) throw new Error('VDI_VAULT_BUCKET is not set');
  const poolsJson = env.VDI_VAULT_POOLS ?? '{}';
  const pools = JSON.parse(poolsJson) as Record<string, PoolEnvironment>;
  const checksum = env.VDI_VAULT_UPLOAD_CHECKSUM;
  if (checksum !== undefined && checksum !== 'CRC32' && checksum !== 'SHA256') {
    throw new Error(`VDI_VAULT_UPLOAD_CHECKSUM must be CRC32 or SHA256, not ${checksum}`);
  }
  const secrets = tracer.captureAWSv3Client(new SecretsManagerClient({}));
  const log = logger;
  const access: Record<string, PoolAccess> = {};
  for (const [name, pool] of Object.entries(pools)) {
    access[name] = {
      connection: {
        url: pool.url,
        tls: {
          ...(pool.caPem ? { caPem: pool.caPem } : {}),
          ...(pool.pinnedSha256 ? { pinnedSha256: pool.pinnedSha256 } : {}),
          ...(pool.insecureSkipVerify ? { insecureSkipVerify: true } : {}),
        },
        ...(pool.timeoutMs ? { timeoutMs: pool.timeoutMs } : {}),
      },
      credentials: () => readCredentials(secrets, pool.secretId, name),
    };
  }
  return {
    s3: tracer.captureAWSv3Client(
      createS3Client(env.AWS_ENDPOINT_URL_S3 ? { endpoint: env.AWS_ENDPOINT_URL_S3 } : {}),
    ),
    catalog: { bucket, prefix: env.VDI_VAULT_PREFIX ?? '' },
    pools: poolDirectory(access, env.VDI_VAULT_DEFAULT_POOL),
    log: {
      debug: (message, fields) => log.debug(message, fields ?? {}),
      info: (message, fields) => log.info(message, fields ?? {}),
      warn: (message, fields) => log.warn(message, fields ?? {}),
      error: (message, fields) => log.error(message, fields ?? {}),
    },
    exportTuning: {
      ...(checksum ? { checksumAlgorithm: checksum } : {}),
      ...(env.VDI_VAULT_STALL_TIMEOUT_MS ? { stallTimeoutMs: Number(env.VDI_VAULT_STALL_TIMEOUT_MS) } : {}),
    },
    ...(env.VDI_VAULT_CONCURRENCY ? { defaultConcurrency: Number(env.VDI_VAULT_CONCURRENCY) } : {}),
    routing: {
      ...(env.VDI_VAULT_FARGATE_THRESHOLD
        ? { fargateThresholdBytes: Number(env.VDI_VAULT_FARGATE_THRESHOLD) }
        : {}),
      ...(env.VDI_VAULT_TRANSFER_MEMORY_MB
        ? { lambdaMemoryBytes: Number(env.VDI_VAULT_TRANSFER_MEMORY_MB) * 1024 * 1024 }
        : {}),
    },
    ...(env.VDI_VAULT_LOCK_TABLE ? lockTableAccess(env.VDI_VAULT_LOCK_TABLE) : {}),
  };
}

function lockTableAccess(tableName: string): { lock: BackupLockTable; progress: ProgressStore } {
  const client = tracer.captureAWSv3Client(new DynamoDBClient({}));
  return { lock: { client, tableName }, progress: dynamoProgressStore(client, tableName) };
}

async function readCredentials(
  secrets: SecretsManagerClient,
  secretId: string | undefined,
  pool: string,
): Promise<XapiCredentials> {
  if (!secretId) throw new Error(`pool ${pool} has no credentials secret configured`);
  const secret = await secrets.send(new GetSecretValueCommand({ SecretId: secretId }));
  const value = JSON.parse(secret.SecretString ?? '{}') as Partial<XapiCredentials>;
  if (typeof value.username !== 'string' || typeof value.password !== 'string') {
    throw new Error(`secret ${secretId} must hold JSON {"username": "...", "password": "..."}`);
  }
  return { username: value.username, password: value.password };
}
