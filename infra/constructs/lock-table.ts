import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';

/**
 * The item attributes `lambdas/backup/backup-lock.ts` writes; the transfers' progress items
 * (`lambdas/shared/transfer-progress.ts`) use the same key and TTL attribute.
 */
export const LOCK_TABLE_SCHEMA = { partitionKey: 'series', ttlAttribute: 'expiresAt' } as const;

/**
 * The series lock table: one item per VDI being backed up, taken by Plan with a conditional write and
 * released by Cleanup or FailureCleanup; DynamoDB's TTL removes locks whose run died. It also holds
 * one progress item per running execution (docs/design.md § Progress of deployed transfers). On demand,
 * encrypted with the deployment key, point-in-time recovery on. Locks are transient: the table is
 * destroyed with the stack.
 */
export function createLockTable(scope: Construct, key: kms.IKey): dynamodb.Table {
  return new dynamodb.Table(scope, 'LockTable', {
    partitionKey: { name: LOCK_TABLE_SCHEMA.partitionKey, type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    timeToLiveAttribute: LOCK_TABLE_SCHEMA.ttlAttribute,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    removalPolicy: RemovalPolicy.DESTROY,
  });
}
