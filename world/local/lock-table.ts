/**
 * A DynamoDB-compatible server in this process (dynalite, in memory) holding the backup lock table, so the
 * series lock's conditional writes run against a real implementation of DynamoDB's API.
 */
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import type { BackupLockTable } from '../../lambdas/backup/backup-lock.ts';

type Dynalite = (options: { createTableMs: number; deleteTableMs: number; updateTableMs: number }) => Server;
const dynalite = createRequire(import.meta.url)('dynalite') as Dynalite;

export interface LockTableWorld {
  readonly table: BackupLockTable;
  /** Where the deployed functions reach it (`AWS_ENDPOINT_URL_DYNAMODB`). */
  readonly endpoint: string;
  close(): Promise<void>;
}

export async function startLockTable(options: { ttlSeconds?: number } = {}): Promise<LockTableWorld> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const tableName = 'vdi-vault-locks';
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      KeySchema: [{ AttributeName: 'series', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'series', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  return {
    table: { client, tableName, ...(options.ttlSeconds ? { ttlSeconds: options.ttlSeconds } : {}) },
    endpoint: `http://127.0.0.1:${port}`,
    async close() {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
