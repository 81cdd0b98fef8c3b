/**
 * Progress of deployed transfers (docs/design.md § Progress of deployed transfers): records written by the
 * transfers' own tracker into a real DynamoDB implementation (dynalite, the lock table's local world) and
 * read back; `watch` of a deployed execution draws them, with Step Functions stubbed at the client edge
 * replaying a recorded history.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';
import type { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PROGRESS_INTERVAL_MS, PROGRESS_TTL_SECONDS } from '../../lambdas/runtime/defaults.ts';
import {
  dynamoProgressStore,
  PROGRESS_TABLE_OUTPUT,
  progressItemKey,
  trackTransfer,
  type ProgressStore,
} from '../../lambdas/shared/transfer-progress.ts';
import { StackOutputs, type AwsClients } from '../../cli/deployed.ts';
import { watchDeployed } from '../../cli/execute.ts';
import { createOutput } from '../../cli/output.ts';
import { startLockTable, type LockTableWorld } from '../../world/local/lock-table.ts';

const GiB = 1024 ** 3;
const VDI = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';
const OTHER_VDI = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f99887766';

function terminal() {
  let text = '';
  const stream = { write: (chunk: string) => ((text += chunk), true), isTTY: true };
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text };
}

describe('progress of deployed transfers', () => {
  let locks: LockTableWorld;
  let store: ProgressStore;
  beforeAll(async () => {
    locks = await startLockTable();
    store = dynamoProgressStore(locks.table.client, locks.table.tableName);
  });
  afterAll(async () => {
    await locks?.close();
  });

  it('a transfer records bytes, total, rate, start and update at most once an interval, and its record goes when it ends', async () => {
    let clock = Date.UTC(2026, 11, 2, 10, 0, 0);
    const writes: string[] = [];
    const counting: ProgressStore = {
      write: async (...args) => {
        writes.push(args[1]);
        await store.write(...args);
      },
      remove: (...args) => store.remove(...args),
      read: (...args) => store.read(...args),
    };
    const tracker = trackTransfer(counting, 'run-1', `export ${VDI}`, { total: 4 * GiB, now: () => clock });
    await vi.waitFor(async () => expect(await store.read('run-1')).toHaveProperty([`export ${VDI}`]));
    expect((await store.read('run-1'))[`export ${VDI}`]).toEqual({
      bytes: 0,
      total: 4 * GiB,
      bytesPerSecond: 0,
      startedAt: new Date(clock).toISOString(),
      updatedAt: new Date(clock).toISOString(),
    });
    // Within the interval: nothing is written.
    clock += PROGRESS_INTERVAL_MS / 2;
    tracker.update(100_000_000);
    clock += PROGRESS_INTERVAL_MS / 2;
    tracker.update(150_000_000);
    await vi.waitFor(async () =>
      expect((await store.read('run-1'))[`export ${VDI}`]?.bytes).toBe(150_000_000),
    );
    expect(writes).toHaveLength(2);
    const record = (await store.read('run-1'))[`export ${VDI}`]!;
    expect(record.bytesPerSecond).toBe(Math.round(150_000_000 / (PROGRESS_INTERVAL_MS / 1000)));
    expect(record.updatedAt).toBe(new Date(clock).toISOString());
    // The item expires by itself a day after its last update, should the transfer be killed.
    const item = await locks.table.client.send(
      new GetItemCommand({
        TableName: locks.table.tableName,
        Key: { series: { S: progressItemKey('run-1') } },
      }),
    );
    expect(Number(item.Item?.expiresAt?.N)).toBe(Math.floor(clock / 1000) + PROGRESS_TTL_SECONDS);

    // A second transfer of the same execution has its own record; ending one leaves the other.
    const other = trackTransfer(store, 'run-1', `export ${OTHER_VDI}`, { now: () => clock });
    await vi.waitFor(async () => expect(Object.keys(await store.read('run-1'))).toHaveLength(2));
    await tracker.end();
    expect(Object.keys(await store.read('run-1'))).toEqual([`export ${OTHER_VDI}`]);
    await other.end();
    expect(await store.read('run-1')).toEqual({});
    // Removing what is gone creates nothing.
    await store.remove('run-2', 'export nothing');
    const none = await locks.table.client.send(
      new GetItemCommand({
        TableName: locks.table.tableName,
        Key: { series: { S: progressItemKey('run-2') } },
      }),
    );
    expect(none.Item).toBeUndefined();
  });

  it('a store that fails never fails the transfer: one warning, and the transfer goes on', async () => {
    const warnings: string[] = [];
    const broken: ProgressStore = {
      write: async () => {
        throw new Error('ProvisionedThroughputExceededException');
      },
      remove: async () => {
        throw new Error('ProvisionedThroughputExceededException');
      },
      read: async () => ({}),
    };
    let clock = 0;
    const tracker = trackTransfer(broken, 'run-3', 'import merged', {
      now: () => clock,
      log: { debug: () => {}, info: () => {}, error: () => {}, warn: (message) => warnings.push(message) },
    });
    clock += PROGRESS_INTERVAL_MS;
    await Promise.resolve();
    tracker.update(10);
    await expect(tracker.end()).resolves.toBeUndefined();
    expect(warnings).toEqual(['could not record transfer progress', 'could not remove transfer progress']);
  });

  it('watch of a deployed execution: bytes, rate and ETA of a running transfer, "stalled" for one whose progress stopped', async () => {
    const executionArn = 'arn:aws:states:eu-west-1:123456789012:execution:VdiVault-backup:nightly-7';
    const now = Date.now();
    await store.write('nightly-7', `export ${VDI}`, {
      bytes: 1 * GiB,
      total: 4 * GiB,
      bytesPerSecond: 50_000_000,
      startedAt: new Date(now - 25_000).toISOString(),
      updatedAt: new Date(now - 2_000).toISOString(),
    });
    await store.write('nightly-7', `export ${OTHER_VDI}`, {
      bytes: 3 * GiB,
      bytesPerSecond: 40_000_000,
      startedAt: new Date(now - 600_000).toISOString(),
      updatedAt: new Date(now - 180_000).toISOString(),
    });
    // A recorded history: the execution runs its exports for a few polls, then succeeds.
    const at = (second: number) => new Date(now - 30_000 + second * 1000);
    const running: HistoryEvent[] = [
      { id: 1, type: 'ExecutionStarted', timestamp: at(0) },
      {
        id: 2,
        previousEventId: 1,
        type: 'MapStateEntered',
        timestamp: at(1),
        stateEnteredEventDetails: { name: 'BackupEachVdi' },
      },
      {
        id: 3,
        previousEventId: 2,
        type: 'TaskStateEntered',
        timestamp: at(2),
        stateEnteredEventDetails: { name: 'Export' },
      },
    ];
    const ended: HistoryEvent[] = [
      ...running,
      { id: 4, previousEventId: 3, type: 'ExecutionSucceeded', timestamp: at(29) },
    ];
    let historyReads = 0;
    const sent: string[] = [];
    const sfn = {
      send: async (command: { constructor: { name: string } }) => {
        sent.push(command.constructor.name);
        if (command.constructor.name === 'GetExecutionHistoryCommand')
          return { events: ++historyReads < 4 ? running : ended };
        return { status: 'SUCCEEDED', output: '{}' };
      },
    };
    const cloudFormation = {
      send: async () => ({
        Stacks: [{ Outputs: [{ OutputKey: PROGRESS_TABLE_OUTPUT, OutputValue: locks.table.tableName }] }],
      }),
    };
    const clients: AwsClients = {
      sfn: () => sfn as unknown as Pick<SFNClient, 'send'>,
      cloudFormation: () => cloudFormation as unknown as Pick<CloudFormationClient, 'send'>,
      dynamodb: () => locks.table.client,
    };
    const stdout = terminal();
    const stderr = terminal();
    const outcome = await watchDeployed(
      executionArn,
      createOutput(false, stdout.stream, stderr.stream, {}),
      clients,
      new StackOutputs(clients, {}),
      {
        pollMs: 60,
        progressPollMs: 20,
      },
    );
    expect(outcome.status).toBe('SUCCEEDED');
    // eslint-disable-next-line no-control-regex
    const screen = stderr.text().replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
    const running1 = screen.split('\n').filter((line) => line.includes(`export ${VDI}`));
    expect(running1.length).toBeGreaterThan(0);
    // 3 GiB left at 50 MB/s: 64.4 s.
    expect(running1.at(-1)).toMatch(
      /\[#{6}\.{18}\]\s+25%\s+1\.0 GiB \/ 4\.0 GiB\s+50\.0 MB\/s\s+ETA 1 min 4 s/,
    );
    const stalled = screen.split('\n').filter((line) => line.includes(`export ${OTHER_VDI}`));
    expect(stalled.at(-1)).toMatch(/3\.0 GiB\s+stalled: no progress for 3 min \d+ s/);
    expect(screen).toContain('→ Export');
    expect(screen).toContain('✓ execution succeeded');
    expect(sent.filter((name) => name === 'GetExecutionHistoryCommand')).toHaveLength(4);
  });
});
