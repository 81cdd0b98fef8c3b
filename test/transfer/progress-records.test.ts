/**
 * The deployed transfers record their progress (docs/design.md § Progress of deployed transfers): the real
 * handlers, bundled, with each function's environment from the template, write into the lock table through
 * the local AWS gateway (every call IAM-checked against the synthesized policies) and remove their records
 * when they end. What a record holds is checked in test/cli/deployed-progress.test.ts.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamoProgressStore, progressItemKey } from '../../lambdas/shared/transfer-progress.ts';
import type { AwsCall } from '../../world/local/aws/gateway.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;

describe('progress records of deployed transfers (local world)', () => {
  let world: BackupWorld;
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'scattered' } });
  });
  afterAll(async () => {
    await world?.close();
  });

  /** The progress writes of one run, by the function whose role made them. */
  async function progressCallsOf(run: () => Promise<{ status: string; cause?: string }>) {
    const { gateway, stack } = await world.deployment();
    const before = gateway.calls.length;
    const result = await run();
    expect(result.status, result.cause).toBe('SUCCEEDED');
    const calls = gateway.calls
      .slice(before)
      .filter((call: AwsCall) => call.action === 'dynamodb:UpdateItem');
    const byRole = new Map<string, AwsCall[]>();
    for (const call of calls) {
      const role = stack.logicalIdOfArn(call.principal) ?? call.principal;
      byRole.set(role, [...(byRole.get(role) ?? []), call]);
    }
    return { calls, byRole };
  }

  function expectWrittenAndRemoved(calls: readonly AwsCall[]) {
    expect(calls.every((call) => call.allowed)).toBe(true);
    const keys = new Set(calls.map((call) => String(call.context['dynamodb:LeadingKeys'])));
    expect([...keys].every((key) => key.startsWith(progressItemKey('')))).toBe(true);
    return [...keys].map((key) => key.slice(progressItemKey('').length));
  }

  it('an export writes its record under its execution and removes it; so do a replayed layer and a merged import', async () => {
    const store = dynamoProgressStore(
      new DynamoDBClient({
        endpoint: world.target.lockTable!.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
      world.target.lockTable!.tableName,
    );

    const backup = await progressCallsOf(() => world.backup());
    const exportRoles = [...backup.byRole.keys()].filter((role) => /Export/.test(role));
    expect(exportRoles, [...backup.byRole.keys()].join(', ')).toHaveLength(1);
    // The start record, then its removal: at least two writes by the export's own role.
    expect(backup.byRole.get(exportRoles[0]!)!.length).toBeGreaterThanOrEqual(2);
    const [backupExecution] = expectWrittenAndRemoved(backup.calls);
    expect(await store.read(backupExecution!)).toEqual({});

    const srUuid = world.sim.srs.shared.uuid;
    for (const [strategy, role] of [
      ['replay', /ImportLayer/],
      ['merge', /ImportMerged/],
    ] as const) {
      const restore = await progressCallsOf(() =>
        world.restore({ vdiUuid: world.vdiUuid, restorePoint: 'latest', srUuid, strategy }),
      );
      const roles = [...restore.byRole.keys()];
      expect(
        roles.filter((name) => role.test(name)),
        roles.join(', '),
      ).toHaveLength(1);
      expect(restore.calls.length).toBeGreaterThanOrEqual(2);
      const executions = expectWrittenAndRemoved(restore.calls);
      expect(executions).toHaveLength(1);
      expect(executions[0]).not.toBe(backupExecution);
      expect(await store.read(executions[0]!)).toEqual({});
    }
  });
});
