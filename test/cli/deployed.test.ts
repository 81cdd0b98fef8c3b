/**
 * Deployed mode can't reach AWS here: these check the requests the CLI sends and how it reads the
 * answers, with SFN and CloudFormation stubbed at the client edge (`send`).
 */
import type { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBackupId } from '../../lambdas/catalog/keys.ts';
import { writeVhd } from '../../lambdas/vhd/index.ts';
import { createTestBucket, deleteTestBucket, s3World } from '../world/s3.ts';
import { fromHistoryEvent, followExecution, type AwsClients } from '../../cli/deployed.ts';
import { LiveDisplay } from '../../cli/live-display.ts';
import { createOutput } from '../../cli/output.ts';
import { run } from '../../cli/run.ts';
import { reportOutcome } from '../../cli/summaries.ts';

const BACKUP_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:Backup';
const EXECUTION_ARN = 'arn:aws:states:eu-west-1:123456789012:execution:Backup:run-1';
const VDI = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';

interface Sent {
  readonly command: string;
  readonly input: Record<string, unknown>;
}

/** A client whose `send` records each command and answers from `reply`. */
function stubClient<T>(sent: Sent[], reply: (command: string, input: Record<string, unknown>) => unknown): T {
  return {
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      sent.push({ command: command.constructor.name, input: command.input });
      const answer = reply(command.constructor.name, command.input);
      if (answer instanceof Error) throw answer;
      return answer;
    },
  } as T;
}

function capture(tty = false) {
  let text = '';
  const stream = {
    write: (chunk: string) => ((text += chunk), true),
    isTTY: tty,
  } as unknown as NodeJS.WriteStream;
  return { stream, text: () => text };
}

const at = (second: number) => new Date(Date.UTC(2026, 10, 26, 16, 40, second));
const history: HistoryEvent[] = [
  { id: 1, type: 'ExecutionStarted', timestamp: at(0) },
  {
    id: 2,
    previousEventId: 1,
    type: 'TaskStateEntered',
    timestamp: at(1),
    stateEnteredEventDetails: { name: 'Login' },
  },
  { id: 3, previousEventId: 2, type: 'TaskScheduled', timestamp: at(1) },
  {
    id: 4,
    previousEventId: 3,
    type: 'TaskFailed',
    timestamp: at(2),
    taskFailedEventDetails: {
      resourceType: 'lambda',
      resource: 'invoke',
      error: 'XapiError',
      cause: '{"errorType":"XapiError","errorMessage":"SESSION_AUTHENTICATION_FAILED","trace":[]}',
    },
  },
  {
    id: 5,
    previousEventId: 4,
    type: 'ExecutionFailed',
    timestamp: at(3),
    executionFailedEventDetails: { error: 'XapiError', cause: 'SESSION_AUTHENTICATION_FAILED' },
  },
];

function deployedWorld(options: { outputs?: Record<string, string>; history?: HistoryEvent[][] } = {}) {
  const sent: Sent[] = [];
  const pages = options.history ?? [history.slice(0, 3), history.slice(3)];
  const sfn = stubClient<Pick<SFNClient, 'send'>>(sent, (command, input) => {
    if (command === 'StartExecutionCommand') return { executionArn: EXECUTION_ARN, startDate: at(0) };
    if (command === 'GetExecutionHistoryCommand') {
      const index = input.nextToken ? Number(input.nextToken) : 0;
      return { events: pages[index], ...(index + 1 < pages.length ? { nextToken: String(index + 1) } : {}) };
    }
    if (command === 'DescribeExecutionCommand') {
      return { status: 'FAILED', error: 'XapiError', cause: 'SESSION_AUTHENTICATION_FAILED' };
    }
    throw new Error(`unexpected ${command}`);
  });
  const cloudFormation = stubClient<Pick<CloudFormationClient, 'send'>>(sent, () => ({
    Stacks: [
      {
        Outputs: Object.entries(
          options.outputs ?? {
            BackupStateMachineArn: BACKUP_ARN,
            BucketName: 'vault-bucket',
            CatalogPrefix: 'backups',
          },
        ).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
      },
    ],
  }));
  const regions: (string | undefined)[] = [];
  const aws = (region: string | undefined): AwsClients => {
    regions.push(region);
    return {
      sfn: () => sfn,
      cloudFormation: () => cloudFormation,
      // Off a terminal nothing is drawn, so no progress is read.
      dynamodb: () => {
        throw new Error('these commands read no transfer progress');
      },
    };
  };
  const stdout = capture();
  const stderr = capture();
  const output = (json: boolean) => createOutput(json, stdout.stream, stderr.stream, {});
  return { sent, aws, regions, stdout, stderr, output };
}

describe('vdi-vault against a deployed stack (stubbed AWS clients)', () => {
  it('backup: reads the ARN from the stack outputs, starts the execution with the validated input, follows every history page', async () => {
    const world = deployedWorld();
    const code = await run(
      ['backup', VDI.toUpperCase(), '--mode', 'full', '--region', 'eu-west-1', '--json'],
      {
        output: world.output(true),
        aws: world.aws,
        env: {},
      },
    );
    expect(code).toBe(1);
    expect(world.regions).toEqual(['eu-west-1']);
    expect(world.sent.map((s) => s.command)).toEqual([
      'DescribeStacksCommand',
      'StartExecutionCommand',
      'GetExecutionHistoryCommand',
      'GetExecutionHistoryCommand',
      'DescribeExecutionCommand',
    ]);
    expect(world.sent[0]!.input).toEqual({ StackName: 'VdiVault' });
    expect(world.sent[1]!.input).toEqual({
      stateMachineArn: BACKUP_ARN,
      input: JSON.stringify({ vdiUuids: [VDI], mode: 'full' }),
    });
    expect(world.sent[2]!.input).toEqual({
      executionArn: EXECUTION_ARN,
      reverseOrder: false,
      maxResults: 1000,
    });
    expect(world.sent[3]!.input).toMatchObject({ nextToken: '1' });
    expect(JSON.parse(world.stdout.text())).toEqual({
      executionId: EXECUTION_ARN,
      status: 'FAILED',
      error: 'XapiError',
      cause: 'SESSION_AUTHENTICATION_FAILED',
    });
  });

  it('backup for people prints the dashboard URL from the same stack outputs (one DescribeStacks)', async () => {
    const dashboard =
      'https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards:name=VdiVault';
    const world = deployedWorld({
      outputs: { BackupStateMachineArn: BACKUP_ARN, DashboardUrl: dashboard },
    });
    const code = await run(['backup', VDI], { output: world.output(false), aws: world.aws, env: {} });
    expect(code).toBe(1);
    expect(world.stderr.text()).toContain(`dashboard: ${dashboard}\n`);
    expect(world.sent.filter((s) => s.command === 'DescribeStacksCommand')).toHaveLength(1);
  });

  it('restore: --restore-arn and --stack override; the failed step and the Lambda error message are shown', async () => {
    const world = deployedWorld();
    const code = await run(
      [
        'restore',
        VDI,
        '--sr-uuid',
        VDI,
        '--strategy',
        'merge',
        '--pool',
        'lab',
        '--restore-arn',
        'arn:restore',
        '--stack',
        'Other',
      ],
      { output: world.output(false), aws: world.aws, env: {} },
    );
    expect(code).toBe(1);
    expect(world.sent.map((s) => s.command)).not.toContain('DescribeStacksCommand');
    expect(JSON.parse(world.sent[0]!.input.input as string)).toEqual({
      vdiUuid: VDI,
      restorePoint: 'latest',
      srUuid: VDI,
      strategy: 'merge',
      keepPartial: false,
      pool: 'lab',
    });
    expect(world.stderr.text()).toContain(`execution ${EXECUTION_ARN}`);
    expect(world.stderr.text()).toMatch(/✗ Login failed: XapiError: SESSION_AUTHENTICATION_FAILED\n/);
    expect(world.stdout.text()).toMatch(/^execution failed: XapiError\n {2}SESSION_AUTHENTICATION_FAILED\n$/);
  });

  it('--no-wait prints the execution ARN and returns without reading the history', async () => {
    const world = deployedWorld();
    const code = await run(['backup', VDI, '--no-wait', '--json'], {
      output: world.output(true),
      aws: world.aws,
      env: {},
    });
    expect(code).toBe(0);
    expect(world.sent.map((s) => s.command)).toEqual(['DescribeStacksCommand', 'StartExecutionCommand']);
    expect(JSON.parse(world.stdout.text())).toEqual({ executionId: EXECUTION_ARN, status: 'RUNNING' });
  });

  it('a stack without the output names the flag to give (exit 2)', async () => {
    const world = deployedWorld({ outputs: { BucketName: 'b' } });
    const code = await run(['backup', VDI], { output: world.output(false), aws: world.aws, env: {} });
    expect(code).toBe(2);
    expect(world.stderr.text()).toContain(
      'stack VdiVault has no output BackupStateMachineArn: give --backup-arn',
    );
  });

  it('list without --pool on a stack that exports no DefaultPool asks for --pool', async () => {
    const world = deployedWorld();
    const code = await run(['list', VDI], { output: world.output(false), aws: world.aws, env: {} });
    expect(code).toBe(2);
    expect(world.stderr.text()).toContain('give --pool');
  });

  it('watch <arn> follows a running execution: asks again from the last page token until it ends', async () => {
    const sent: Sent[] = [];
    let polls = 0;
    const sfn = stubClient<Pick<SFNClient, 'send'>>(sent, (command, input) => {
      if (command === 'DescribeExecutionCommand') return { status: 'SUCCEEDED', output: '{"ok":true}' };
      polls++;
      if (polls === 1) return { events: history.slice(0, 2), nextToken: 'page-2' };
      if (polls === 2) return { events: history.slice(2, 3) }; // the end, for now
      expect(input.nextToken).toBe('page-2');
      return { events: [...history.slice(2, 3), { id: 4, type: 'ExecutionSucceeded', timestamp: at(4) }] };
    });
    const seen: string[] = [];
    const outcome = await followExecution(
      sfn,
      EXECUTION_ARN,
      (event) => seen.push(`${event.type}:${'state' in event ? event.state : ''}`),
      { pollMs: 1 },
    );
    expect(seen).toEqual(['StateEntered:Login', 'ExecutionSucceeded:']);
    expect(outcome).toEqual({ executionId: EXECUTION_ARN, status: 'SUCCEEDED', output: { ok: true } });
  });

  it('maps history events to the local runner names, failures attributed to their state', () => {
    const states = new Map<number, string>();
    expect(history.map((event) => fromHistoryEvent(event, states))).toEqual([
      undefined,
      { type: 'StateEntered', state: 'Login', at: at(1).toISOString() },
      undefined,
      {
        type: 'StateFailed',
        state: 'Login',
        error: 'XapiError',
        cause: history[3]!.taskFailedEventDetails!.cause,
        at: at(2).toISOString(),
      },
      {
        type: 'ExecutionFailed',
        error: 'XapiError',
        cause: 'SESSION_AUTHENTICATION_FAILED',
        at: at(3).toISOString(),
      },
    ]);
  });
});

describe("list and verify in deployed mode read the stack's CatalogPrefix (defect 12)", () => {
  const s3 = s3World();
  const prefix = 'vault/prod';
  const backupId = newBackupId(new Date('2026-11-26T16:40:00Z'), 'full');
  let bucket: string;
  beforeAll(async () => {
    bucket = await createTestBucket(s3.client, 'cli-prefix');
    // One full restore point under the stack's prefix, as a backup stores it: the VHD, then its manifest.
    const virtualSize = 4 * 1024 * 1024;
    const vhd = writeVhd(
      { virtualSize, blockIndexes: [1], readBlock: () => new Uint8Array(2 * 1024 * 1024).fill(5) },
      { diskType: 'dynamic' },
    );
    const chunks: Uint8Array[] = [];
    for await (const chunk of vhd.stream) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const objectKey = `${prefix}/lab/${VDI}/${backupId}.vhd`;
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: objectKey, Body: body }));
    const manifest = {
      formatVersion: 1,
      backupId,
      kind: 'full',
      parentBackupId: null,
      pool: 'lab',
      vdiUuid: VDI,
      vdiNameLabel: 'disk',
      snapshotUuid: VDI,
      virtualSize,
      objectKey,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      presentBlocks: 1,
      startedAt: '2026-11-26T16:40:00.000Z',
      endedAt: '2026-11-26T16:40:01.000Z',
      host: 'xcp-master',
    };
    await s3.client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}/lab/${VDI}/${backupId}.json`,
        Body: JSON.stringify(manifest),
      }),
    );
  });
  afterAll(async () => {
    await deleteTestBucket(s3.client, bucket);
  });

  const catalogWorld = () =>
    deployedWorld({ outputs: { BucketName: bucket, CatalogPrefix: prefix, DefaultPool: 'lab' } });
  const env = {
    VDI_VAULT_S3_ACCESS_KEY: s3.credentials.accessKeyId,
    VDI_VAULT_S3_SECRET_KEY: s3.credentials.secretAccessKey,
  };

  it('list finds the restore points under the stack prefix, verify re-reads them', async () => {
    const listing = catalogWorld();
    const code = await run(['list', VDI, '--s3-endpoint', s3.endpoint, '--json'], {
      output: listing.output(true),
      aws: listing.aws,
      env,
    });
    expect(code, listing.stderr.text()).toBe(0);
    expect(listing.sent.map((s) => s.command)).toEqual(['DescribeStacksCommand']);
    const listed = JSON.parse(listing.stdout.text()) as {
      pool: string;
      restorePoints: { backupId: string }[];
    };
    expect(listed.pool).toBe('lab');
    expect(listed.restorePoints.map((point) => point.backupId)).toEqual([backupId]);

    const verifying = catalogWorld();
    const verified = await run(['verify', VDI, '--s3-endpoint', s3.endpoint, '--json'], {
      output: verifying.output(true),
      aws: verifying.aws,
      env,
    });
    expect(verified, verifying.stderr.text()).toBe(0);
    expect(JSON.parse(verifying.stdout.text())).toMatchObject({ restorePoint: backupId, ok: true });
  });

  it('--prefix overrides the stack output; a stack without it asks for --prefix', async () => {
    const other = catalogWorld();
    expect(
      await run(['list', VDI, '--s3-endpoint', s3.endpoint, '--prefix', 'backups'], {
        output: other.output(false),
        aws: other.aws,
        env,
      }),
    ).toBe(0);
    expect(other.stderr.text()).toContain(`no backups of VDI ${VDI} in pool lab (s3://${bucket}/backups)`);

    const old = deployedWorld({ outputs: { BucketName: bucket, DefaultPool: 'lab' } });
    const code = await run(['list', VDI, '--s3-endpoint', s3.endpoint], {
      output: old.output(false),
      aws: old.aws,
      env,
    });
    expect(code).toBe(2);
    expect(old.stderr.text()).toContain('stack VdiVault has no output CatalogPrefix: give --prefix');
  });
});

describe('output', () => {
  it('a backup summary shows retention in counts, with at most a few ids', () => {
    const out = capture();
    const summary = {
      pool: 'lab',
      succeeded: 1,
      failed: 0,
      outcomes: [
        {
          vdiUuid: VDI,
          status: 'succeeded',
          backupId: 'b9',
          kind: 'full',
          bytes: 1024,
          presentBlocks: 1,
          durationMs: 1000,
          retention: {
            kept: 2,
            deleted: 300,
            orphansDeleted: 1,
            keysDeleted: 601,
            deletedIds: ['b8', 'b7', 'b6'],
          },
        },
      ],
    };
    reportOutcome(createOutput(false, out.stream, out.stream, {}), {
      executionId: EXECUTION_ARN,
      status: 'SUCCEEDED',
      output: summary,
    });
    expect(out.text()).toContain(
      `  ${VDI}: retention kept 2 restore point(s), deleted 300 (b8, b7, b6, …), 1 object(s) without a manifest: 601 object(s)\n`,
    );
  });

  it('progress bars with bytes/s only on a TTY; colour only on a TTY and never with NO_COLOR', () => {
    const tty = capture(true);
    let now = 1_000;
    const display = new LiveDisplay(createOutput(false, tty.stream, tty.stream, {}), () => now);
    display.progress('import 20261126T164000.000Z-full', 0, 20 * 1024 * 1024, 1_000);
    now = 3_000;
    display.progress('import 20261126T164000.000Z-full', 10 * 1024 * 1024, 20 * 1024 * 1024, 3_000);
    display.close();
    expect(tty.text()).toContain('[############............]  50%  10.0 MiB / 20.0 MiB  5.2 MB/s');

    const pipe = capture(false);
    const quiet = new LiveDisplay(createOutput(false, pipe.stream, pipe.stream, {}));
    quiet.progress('export x', 1024);
    quiet.close();
    expect(pipe.text()).toBe('');

    expect(createOutput(false, tty.stream, tty.stream, {}).colour.red('x')).toBe('\x1b[31mx\x1b[39m');
    expect(createOutput(false, tty.stream, tty.stream, { NO_COLOR: '1' }).colour.red('x')).toBe('x');
    expect(createOutput(false, pipe.stream, pipe.stream, {}).colour.red('x')).toBe('x');
    expect(createOutput(true, tty.stream, tty.stream, {}).colour.red('x')).toBe('x');
  });
});
