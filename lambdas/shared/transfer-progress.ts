import {
  ConditionalCheckFailedException,
  GetItemCommand,
  UpdateItemCommand,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { PROGRESS_INTERVAL_MS, PROGRESS_TTL_SECONDS } from '../runtime/defaults.ts';
import type { Log } from './log.ts';

/**
 * Where a running transfer stands (docs/design.md § Progress of deployed transfers): written by the step
 * that moves the data, read by `vdi-vault watch`.
 */
export interface ProgressRecord {
  readonly bytes: number;
  /** The transfer's length when it is known (an import's object, a merge), or Plan's estimate (an export). */
  readonly total?: number;
  /** Over the interval since the previous record. */
  readonly bytesPerSecond: number;
  readonly startedAt: string;
  readonly updatedAt: string;
}

/** The running transfers of one execution, by name (`export <vdi uuid>`, `import <backup id>`…). */
export type ExecutionProgress = Readonly<Record<string, ProgressRecord>>;

export interface ProgressStore {
  write(executionName: string, transfer: string, record: ProgressRecord): Promise<void>;
  /** The transfer ended: its record goes. */
  remove(executionName: string, transfer: string): Promise<void>;
  read(executionName: string): Promise<ExecutionProgress>;
}

/** The stack output naming the table (the lock table) that `watch` reads progress from. */
export const PROGRESS_TABLE_OUTPUT = 'ProgressTableName';

/** The item of an execution's progress in the lock table (lock items are keyed by series, never so). */
export const progressItemKey = (executionName: string): string => `progress:${executionName}`;
const TRANSFER_ATTRIBUTE = 'transfer:';

/**
 * Progress in the series lock table: one item per execution, one attribute per running transfer, so
 * `watch` reads all of them with one GetItem and concurrent transfers of a Map never overwrite each other.
 * Every write pushes the item's TTL on, so what a killed run leaves expires by itself.
 */
export function dynamoProgressStore(
  client: Pick<DynamoDBClient, 'send'>,
  tableName: string,
  ttlSeconds = PROGRESS_TTL_SECONDS,
): ProgressStore {
  const key = (executionName: string) => ({ series: { S: progressItemKey(executionName) } });
  return {
    async write(executionName, transfer, record) {
      await client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: key(executionName),
          UpdateExpression: 'SET #transfer = :record, expiresAt = :expiresAt',
          ExpressionAttributeNames: { '#transfer': TRANSFER_ATTRIBUTE + transfer },
          ExpressionAttributeValues: {
            ':record': { S: JSON.stringify(record) },
            ':expiresAt': { N: String(Math.floor(Date.parse(record.updatedAt) / 1000) + ttlSeconds) },
          },
        }),
      );
    },
    async remove(executionName, transfer) {
      try {
        await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: key(executionName),
            UpdateExpression: 'REMOVE #transfer',
            // Without it, an update of a missing item would create one.
            ConditionExpression: 'attribute_exists(#transfer)',
            ExpressionAttributeNames: { '#transfer': TRANSFER_ATTRIBUTE + transfer },
          }),
        );
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    },
    async read(executionName) {
      const response = await client.send(
        new GetItemCommand({ TableName: tableName, Key: key(executionName) }),
      );
      const transfers: Record<string, ProgressRecord> = {};
      for (const [name, value] of Object.entries(response.Item ?? {})) {
        if (!name.startsWith(TRANSFER_ATTRIBUTE) || value.S === undefined) continue;
        transfers[name.slice(TRANSFER_ATTRIBUTE.length)] = JSON.parse(value.S) as ProgressRecord;
      }
      return transfers;
    },
  };
}

export interface TrackOptions {
  readonly total?: number;
  readonly log?: Log;
  readonly now?: () => number;
  readonly intervalMs?: number;
}

/** Reports one transfer's bytes: call `update` as often as data moves, `end` once in a `finally`. */
export interface TransferTracker {
  /** `total` when it becomes known after the start (a merge's, once planned). */
  update(bytes: number, total?: number): void;
  end(): Promise<void>;
}

const IGNORED: TransferTracker = { update: () => undefined, end: async () => undefined };

/**
 * Records a transfer's progress at most once an interval (and at its start), one write in flight at a
 * time. Progress is for people: a failed write is logged and never fails the transfer. Without a store or
 * an execution (local experiments, direct calls) nothing is recorded.
 */
export function trackTransfer(
  store: ProgressStore | undefined,
  executionName: string | undefined,
  transfer: string,
  options: TrackOptions = {},
): TransferTracker {
  if (!store || !executionName) return IGNORED;
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? PROGRESS_INTERVAL_MS;
  const startedAt = now();
  let last = { bytes: 0, at: startedAt };
  let latest = 0;
  let total = options.total;
  let inFlight: Promise<void> | undefined;
  let warned = false;
  const write = () => {
    const at = now();
    const seconds = (at - last.at) / 1000;
    const record: ProgressRecord = {
      bytes: latest,
      ...(total !== undefined ? { total } : {}),
      bytesPerSecond: seconds > 0 ? Math.round((latest - last.bytes) / seconds) : 0,
      startedAt: new Date(startedAt).toISOString(),
      updatedAt: new Date(at).toISOString(),
    };
    last = { bytes: latest, at };
    inFlight = store
      .write(executionName, transfer, record)
      .catch((error: unknown) => {
        if (!warned)
          options.log?.warn('could not record transfer progress', { transfer, error: String(error) });
        warned = true;
      })
      .finally(() => {
        inFlight = undefined;
      });
  };
  write();
  return {
    update(bytes, totalNow) {
      latest = bytes;
      if (totalNow !== undefined) total = totalNow;
      if (!inFlight && now() - last.at >= intervalMs) write();
    },
    async end() {
      await inFlight;
      await store.remove(executionName, transfer).catch((error: unknown) => {
        options.log?.warn('could not remove transfer progress', { transfer, error: String(error) });
      });
    },
  };
}
