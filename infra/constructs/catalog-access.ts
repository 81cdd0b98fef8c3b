import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';

export interface CatalogTarget {
  readonly bucket: s3.IBucket;
  /** Key prefix of the catalog, without trailing slash. */
  readonly prefix: string;
}

const BUCKET_LEVEL_ACTIONS = new Set(['s3:ListBucket', 's3:ListBucketMultipartUploads']);

/**
 * Grants exactly the named S3 actions, on the catalog prefix only: bucket-level listing is limited to the
 * prefix by condition, object actions to `<prefix>/*`. (The bucket's `grant*` helpers add wildcards.)
 */
export function grantCatalogAccess(
  fn: lambda.IFunction,
  target: CatalogTarget,
  actions: readonly string[],
): void {
  const bucketActions = actions.filter((action) => BUCKET_LEVEL_ACTIONS.has(action));
  const objectActions = actions.filter((action) => !BUCKET_LEVEL_ACTIONS.has(action));
  if (bucketActions.length) {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: bucketActions,
        resources: [target.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${target.prefix}/*`] } },
      }),
    );
  }
  if (objectActions.length) {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: objectActions,
        resources: [target.bucket.arnForObjects(`${target.prefix}/*`)],
      }),
    );
  }
}
