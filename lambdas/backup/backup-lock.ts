import { DEFAULT_LOCK_TTL_SECONDS } from '../runtime/defaults.ts';
import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  GetItemCommand,
  PutItemCommand,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';

/** One backup per VDI at a time: a DynamoDB item per series, taken with a conditional write. */
export interface BackupLockTable {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /**
   * How long a lock holds when its run never releases it (a crashed or killed run). A run can't outlive
   * XAPI's 24 h transfer limit, so the default is 25 h. The table's TTL attribute removes expired items.
   */
  readonly ttlSeconds?: number;
}

/** Another backup of the same VDI holds the lock. The name is what Step Functions reports. */
export class BackupAlreadyRunningError extends Error {
  override readonly name = 'BackupAlreadyRunning';
}

export interface HeldLock {
  readonly series: string;
  readonly owner: string;
}

/**
 * Takes the lock for `series`, or fails fast naming who holds it. An expired lock (its run crashed) is
 * taken over in the same conditional write, so no polling and no clean-up daemon are needed.
 */
export async function acquireBackupLock(
  table: BackupLockTable,
  series: string,
  owner: string,
  now: Date,
): Promise<HeldLock> {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const expiresAt = nowSeconds + (table.ttlSeconds ?? DEFAULT_LOCK_TTL_SECONDS);
  try {
    await table.client.send(
      new PutItemCommand({
        TableName: table.tableName,
        Item: {
          series: { S: series },
          owner: { S: owner },
          acquiredAt: { S: now.toISOString() },
          expiresAt: { N: String(expiresAt) },
        },
        ConditionExpression: 'attribute_not_exists(series) OR expiresAt < :now',
        ExpressionAttributeValues: { ':now': { N: String(nowSeconds) } },
      }),
    );
    return { series, owner };
  } catch (error) {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
    const holder = await table.client
      .send(
        new GetItemCommand({
          TableName: table.tableName,
          Key: { series: { S: series } },
          ConsistentRead: true,
        }),
      )
      .catch(() => undefined);
    const since = holder?.Item?.acquiredAt?.S;
    const until = holder?.Item?.expiresAt?.N;
    throw new BackupAlreadyRunningError(
      `a backup of ${series} is already running (${holder?.Item?.owner?.S ?? 'unknown run'}` +
        `${since ? `, since ${since}` : ''}${until ? `; its lock expires at ${new Date(Number(until) * 1000).toISOString()}` : ''}); ` +
        'this run touched nothing',
    );
  }
}

/** Releases a lock we hold; a lock another run holds (ours expired and was taken over) is left alone. */
export async function releaseBackupLock(table: BackupLockTable, lock: HeldLock): Promise<void> {
  try {
    await table.client.send(
      new DeleteItemCommand({
        TableName: table.tableName,
        Key: { series: { S: lock.series } },
        ConditionExpression: '#owner = :owner',
        ExpressionAttributeNames: { '#owner': 'owner' },
        ExpressionAttributeValues: { ':owner': { S: lock.owner } },
      }),
    );
  } catch (error) {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
  }
}
