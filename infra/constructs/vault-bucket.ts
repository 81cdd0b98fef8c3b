import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { WORK_AREAS, workAreaPrefix } from '../../lambdas/catalog/keys.ts';
import { WORK_AREA_EXPIRY_DAYS } from '../../lambdas/runtime/defaults.ts';

/** S3 Object Lock default retention applied to every new backup object. */
export interface ObjectLockRetentionProps {
  /** `GOVERNANCE`: privileged users may shorten it; `COMPLIANCE`: nobody can, not even root. */
  readonly mode: 'GOVERNANCE' | 'COMPLIANCE';
  readonly days: number;
}

export interface VaultBucketProps {
  /** Encrypts every object (SSE-KMS with an S3 Bucket Key). */
  readonly key: kms.IKey;
  /** Default: no Object Lock. It can only be turned on when the bucket is created. */
  readonly objectLock?: ObjectLockRetentionProps;
  /** Server access logs into a second, SSE-S3 bucket kept 90 days. Default true. */
  readonly accessLogs?: boolean;
  /**
   * Old versions (left by deletes and overwrites, e.g. by retention) expire after this many days.
   * Default 30 days. Object Lock still protects a version until its retention ends.
   */
  readonly noncurrentVersionExpiration?: Duration;
  /** The catalog's prefix: its work areas' leftovers expire (`WORK_AREA_EXPIRY_DAYS`). */
  readonly catalogPrefix: string;
}

export interface VaultBuckets {
  readonly bucket: s3.Bucket;
  readonly accessLogsBucket?: s3.Bucket;
}

/**
 * The backup bucket (`Backups`): private (Block Public Access, TLS only), SSE-KMS with the deployment's key,
 * versioned, incomplete multipart uploads aborted after a day, optional Object Lock; and its access logs
 * bucket (`AccessLogs`). Both are retained when the stack is deleted.
 */
export function createVaultBucket(scope: Construct, props: VaultBucketProps): VaultBuckets {
  let accessLogsBucket: s3.Bucket | undefined;
  if (props.accessLogs !== false) {
    // Server access logs can only be delivered to an SSE-S3 bucket.
    accessLogsBucket = new s3.Bucket(scope, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ expiration: Duration.days(90) }],
    });
  }
  const lock = props.objectLock;
  const bucket = new s3.Bucket(scope, 'Backups', {
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    encryption: s3.BucketEncryption.KMS,
    encryptionKey: props.key,
    // One data key per bucket instead of one KMS request per object and part.
    bucketKeyEnabled: true,
    enforceSSL: true,
    versioned: true,
    ...(accessLogsBucket
      ? { serverAccessLogsBucket: accessLogsBucket, serverAccessLogsPrefix: 'backups/' }
      : {}),
    ...(lock
      ? {
          objectLockEnabled: true,
          objectLockDefaultRetention:
            lock.mode === 'COMPLIANCE'
              ? s3.ObjectLockRetention.compliance(Duration.days(lock.days))
              : s3.ObjectLockRetention.governance(Duration.days(lock.days)),
        }
      : {}),
    removalPolicy: RemovalPolicy.RETAIN,
    lifecycleRules: [
      // Second line of defence behind our own abort: no part outlives a crashed export by more than a day.
      { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      // What a killed execution left in the work areas (each run deletes its own): nothing else removes it.
      ...Object.entries(WORK_AREAS).map(([name, area]) => ({
        id: `expire-${name}-leftovers`,
        prefix: workAreaPrefix({ prefix: props.catalogPrefix }, area),
        expiration: Duration.days(WORK_AREA_EXPIRY_DAYS),
      })),
      {
        id: 'expire-old-versions',
        noncurrentVersionExpiration: props.noncurrentVersionExpiration ?? Duration.days(30),
        expiredObjectDeleteMarker: true,
      },
    ],
  });
  return { bucket, ...(accessLogsBucket ? { accessLogsBucket } : {}) };
}
