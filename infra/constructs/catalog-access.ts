import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type { IConstruct } from 'constructs';
import type * as s3 from 'aws-cdk-lib/aws-s3';

export interface CatalogTarget {
  readonly bucket: s3.IBucket;
  /** Key prefix of the catalog, without trailing slash. */
  readonly prefix: string;
  /** The key the bucket encrypts objects with (SSE-KMS). Default: none (SSE-S3, no KMS permission needed). */
  readonly key?: kms.IKey;
}

const BUCKET_LEVEL_ACTIONS = new Set(['s3:ListBucket', 's3:ListBucketMultipartUploads']);
/** Reading an SSE-KMS object decrypts its data key. */
const DECRYPTING_ACTIONS = new Set(['s3:GetObject']);
/** Writing one (and completing a multipart upload, which reads its parts back) needs both. */
const ENCRYPTING_ACTIONS = new Set(['s3:PutObject']);

/**
 * Grants exactly the named S3 actions: object actions on `<prefix>/*` only (the bucket's `grant*` helpers
 * add wildcards), bucket-level ones on the bucket. With a key, the KMS actions those S3 actions imply, only
 * through S3 in this region.
 *
 * Bucket-level actions carry no `s3:prefix` condition (docs/design.md, IAM):
 * - `s3:ListBucketMultipartUploads` supports no condition key on the prefix: a condition on it denies;
 * - S3 answers a GET or HEAD of a missing key with 404 only to a caller allowed `s3:ListBucket` on the
 *   bucket as such (evaluated without `s3:prefix`), else 403, and a broken chain would read `Forbidden`.
 * So a step that lists can see key names outside the prefix in a shared bucket; never their content.
 */
export function grantCatalogAccess(
  fn: iam.IGrantable & IConstruct,
  target: CatalogTarget,
  actions: readonly string[],
): void {
  const bucketActions = actions.filter((action) => BUCKET_LEVEL_ACTIONS.has(action));
  const objectActions = actions.filter((action) => !BUCKET_LEVEL_ACTIONS.has(action));
  if (bucketActions.length) {
    fn.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: bucketActions,
        resources: [target.bucket.bucketArn],
      }),
    );
  }
  if (objectActions.length) {
    fn.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: objectActions,
        resources: [target.bucket.arnForObjects(`${target.prefix}/*`)],
      }),
    );
  }
  const kmsActions = [
    ...(actions.some((action) => ENCRYPTING_ACTIONS.has(action)) ? ['kms:GenerateDataKey'] : []),
    ...(actions.some((action) => ENCRYPTING_ACTIONS.has(action) || DECRYPTING_ACTIONS.has(action))
      ? ['kms:Decrypt']
      : []),
  ];
  if (target.key && kmsActions.length) {
    fn.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: kmsActions,
        resources: [target.key.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `s3.${Stack.of(fn).region}.amazonaws.com` } },
      }),
    );
  }
}
