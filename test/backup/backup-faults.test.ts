import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fault } from '../../world/xapi-simulator/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';
import { backupAndRecord, expectInvariants, type RestorePointHashes } from '../safety/invariants.ts';

const MiB = 1024 * 1024;

interface Scenario {
  readonly name: string;
  readonly fault: Fault;
  /** What the failed execution's cause must say. */
  readonly cause: RegExp;
}

// The second backup is a full, so its export spans several 16 MiB parts and a multipart upload is open
// when the fault strikes.
const scenarios: Scenario[] = [
  {
    name: 'the connection drops mid-body',
    fault: { kind: 'drop-connection', on: 'export', afterBytes: 20 * MiB },
    cause: /stream ended while reading/,
  },
  {
    name: 'the task fails after the body',
    fault: {
      kind: 'fail-task-after-body',
      on: 'export',
      code: 'VDI_IO_ERROR',
      params: ['Device I/O errors'],
    },
    cause: /VDI_IO_ERROR/,
  },
  {
    name: 'a byte of the stream is corrupt',
    fault: { kind: 'corrupt-byte', on: 'export', offset: 600 },
    cause: /checksum/i,
  },
  {
    name: 'the host writes an HTTP error into the body',
    fault: { kind: 'http-500-in-body', on: 'export', afterBytes: 0 },
    cause: /HTTP\/1\.1 500/,
  },
  {
    name: 'the host writes an HTTP error into the body mid-stream',
    fault: { kind: 'http-500-in-body', on: 'export', afterBytes: 20 * MiB, code: 'VDI_IO_ERROR' },
    cause: /stream ended while reading .*; the host's task failed: VDI_IO_ERROR/,
  },
  {
    name: 'the SR is full when snapshotting',
    fault: { kind: 'rpc-error', method: 'VDI.snapshot', code: 'SR_FULL', params: ['1000', '900'] },
    cause: /SR_FULL/,
  },
  {
    name: 'login fails',
    fault: {
      kind: 'rpc-error',
      method: 'session.login_with_password',
      code: 'SESSION_AUTHENTICATION_FAILED',
    },
    cause: /SESSION_AUTHENTICATION_FAILED/,
  },
  {
    name: 'the host refuses the export before the 200',
    fault: { kind: 'refuse-transfer', on: 'export', status: 500 },
    cause: /HTTP 500/,
  },
];

describe('backup failures leave nothing behind', () => {
  // One world (its functions warm), a fresh VDI per scenario: each starts from its own empty series.
  let shared: BackupWorld;
  beforeAll(async () => {
    shared = await startBackupWorld({ vdi: { virtualSize: 48 * MiB, populate: 'generated' } });
  });
  afterAll(async () => {
    await shared?.close();
  });

  it.each(scenarios)('$name', async ({ fault, cause }) => {
    const world = shared.withNewVdi();
    const hashes: RestorePointHashes = new Map();
    const earlier = await backupAndRecord(world, hashes);
    const keysBefore = await listKeys(world.s3, world.bucket);

    world.sim.injectFault({ ...fault, times: 1 } as Fault);
    const run = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });

    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(cause);
    // No manifest, no object, no open upload; the earlier restore point untouched and restorable.
    expect(await listKeys(world.s3, world.bucket)).toEqual(keysBefore);
    expect(await world.manifests()).toEqual([earlier]);
    await expectInvariants(world, hashes);

    // And the next run works again, as a delta on the surviving base.
    const next = await world.backup();
    expect(next.status, next.cause).toBe('SUCCEEDED');
    expect(next.summary!.outcomes[0]!.kind).toBe('delta');
  });
});
