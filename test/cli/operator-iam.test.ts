/**
 * The operator policy against the deployed CLI, call by call (issue 12, "IAM on every call", the CLI's part):
 * an operator is a role holding exactly the stack's `OperatorPolicy`; each deployed-mode command runs as
 * deployed.test.ts runs it, with Step Functions and CloudFormation stubbed at the client edge (`send`), where
 * every command is translated into the IAM requests AWS evaluates (`controlPlaneRequests`, KMS use on the
 * caller's behalf included) and authorized, and S3 through the local AWS gateway as that role, against Swift.
 * Every call must be allowed, every grant but a commented few used, and each grant removed must deny the
 * command that needs it.
 */
import type { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsClients } from '../../cli/deployed.ts';
import { createOutput } from '../../cli/output.ts';
import { run } from '../../cli/run.ts';
import { LOCAL_ACCOUNT, LocalStack } from '../../world/local/aws/account.ts';
import type { Template } from '../../world/local/aws/account.ts';
import { accessDeniedMessage } from '../../world/local/aws/authorize.ts';
import { startAwsGateway } from '../../world/local/aws/gateway.ts';
import type { AwsCall, AwsGateway } from '../../world/local/aws/gateway.ts';
import {
  authorizeControlPlane,
  controlPlaneRequests,
  OPERATOR_ROLE_LOGICAL_ID,
  operatorPolicyLogicalId,
  stateMachineOfExecution,
  withOperatorRole,
} from '../../world/local/aws/operator.ts';
import type { ControlPlaneCall } from '../../world/local/aws/operator.ts';
import type { PolicyStatement } from '../../world/local/aws/policies.ts';
import { grantedActions } from '../../world/local/aws/usage.ts';
import { synthesizeApp } from '../../world/local/synthesized-workflows.ts';
import { newBackupId } from '../../lambdas/catalog/keys.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { writeVhd } from '../../lambdas/vhd/index.ts';
import { createTestBucket, deleteTestBucket, s3World } from '../world/s3.ts';
import { dynamoProgressStore } from '../../lambdas/shared/transfer-progress.ts';
import { startLockTable, type LockTableWorld } from '../../world/local/lock-table.ts';

const { accountId, region } = LOCAL_ACCOUNT;
const POOL = 'lab';
const PREFIX = 'vault/prod';
/** A chain of a full and a delta. */
const VDI = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';
/** A full whose manifest is there and its object is not: verify reports a broken chain (exit 3). */
const BROKEN_VDI = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f99887766';
const SR = '0c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd';
/** A schedule's execution, exporting VDI when `watch` looks. */
const SCHEDULED_RUN = 'nightly-20261126T0200';
const CONFIG = {
  pools: [{ name: POOL, url: 'https://xcp-master.example.com', secret: `vdi-vault/${POOL}` }],
  prefix: PREFIX,
};

/**
 * Granted by the operator policy, and used by no CLI command. Exactly these: a grant nobody uses is either
 * listed here with its reason or removed from infra/constructs/operator-policy.ts.
 */
const UNUSED_BY_DESIGN = [
  // Operators find the executions schedules and the event rule started (`aws stepfunctions
  // list-executions`) to `watch` them (docs/infrastructure.md, "Operator access").
  'states:ListExecutions',
];

const s3 = s3World();

/** A synthesized stack with the operator role, its gateway, and a fake Step Functions behind the stubs. */
interface OperatorWorld {
  readonly stack: LocalStack;
  readonly operator: string;
  /** S3, and the KMS calls S3 makes for the operator. */
  readonly gateway: AwsGateway;
  /** Step Functions and CloudFormation, and the KMS calls Step Functions makes for the operator. */
  readonly controlPlane: ControlPlaneCall[];
  readonly s3Endpoint: string;
  readonly machines: { readonly backup: string; readonly restore: string };
  readonly aws: (region: string | undefined) => AwsClients;
  /** The lock table, where transfers record their progress (dynalite, behind the gateway). */
  readonly progressTable: string;
}

async function startOperatorWorld(
  template: Template,
  bucket: string,
  locks: LockTableWorld,
): Promise<OperatorWorld> {
  const { template: withOperator } = withOperatorRole(template);
  const stack = new LocalStack(withOperator, {
    [refOfOutput(template, 'BucketName')]: { ref: bucket },
    [refOfOutput(template, 'ProgressTableName')]: { ref: locks.table.tableName },
  });
  const operator = stack.arnOf(OPERATOR_ROLE_LOGICAL_ID);
  const gateway = await startAwsGateway({ stack, backends: { s3: s3.endpoint, dynamodb: locks.endpoint } });
  const { AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB } = await gateway.endpointsFor(operator);
  const dynamodb = new DynamoDBClient({
    endpoint: AWS_ENDPOINT_URL_DYNAMODB,
    region,
    credentials: { accessKeyId: 'operator', secretAccessKey: 'operator' },
  });
  const machines = {
    backup: stack.ref(refOfOutput(template, 'BackupStateMachineArn')),
    restore: stack.ref(refOfOutput(template, 'RestoreStateMachineArn')),
  };
  const answer = fakeAwsAnswers(stack, machines);
  const controlPlane: ControlPlaneCall[] = [];
  const client = {
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      const name = command.constructor.name;
      // What AWS evaluates before it answers, in order; the first denial is the caller's error.
      for (const request of controlPlaneRequests(stack, operator, name, command.input)) {
        const [decision, call] = await authorizeControlPlane(stack, request);
        controlPlane.push(call);
        if (!decision.allowed) {
          throw Object.assign(new Error(accessDeniedMessage(decision)), {
            name:
              request.service === 'kms'
                ? 'KmsAccessDeniedException'
                : request.service === 'cloudformation'
                  ? 'AccessDenied'
                  : 'AccessDeniedException',
            $metadata: { httpStatusCode: 400 },
          });
        }
      }
      return answer(name, command.input);
    },
  };
  const clients: AwsClients = {
    sfn: () => client as unknown as Pick<SFNClient, 'send'>,
    cloudFormation: () => client as unknown as Pick<CloudFormationClient, 'send'>,
    dynamodb: () => dynamodb,
  };
  return {
    stack,
    operator,
    gateway,
    controlPlane,
    s3Endpoint: AWS_ENDPOINT_URL_S3,
    machines,
    aws: () => clients,
    progressTable: locks.table.tableName,
  };
}

function refOfOutput(template: Template, key: string): string {
  const ref = (template.Outputs?.[key]?.Value as { Ref?: string } | undefined)?.Ref;
  if (!ref) throw new Error(`output ${key} is no Ref`);
  return ref;
}

/**
 * Step Functions and CloudFormation as far as the CLI sees them: the stack with its resolved outputs, and
 * executions of its two state machines (any name: a schedule's too) that run Plan and succeed.
 */
function fakeAwsAnswers(stack: LocalStack, machines: OperatorWorld['machines']) {
  const at = (second: number) => new Date(Date.UTC(2026, 10, 26, 16, 40, second));
  const pages: HistoryEvent[][] = [
    [
      { id: 1, type: 'ExecutionStarted', timestamp: at(0) },
      {
        id: 2,
        previousEventId: 1,
        type: 'TaskStateEntered',
        timestamp: at(1),
        stateEnteredEventDetails: { name: 'Plan' },
      },
    ],
    [
      {
        id: 3,
        previousEventId: 2,
        type: 'TaskStateExited',
        timestamp: at(2),
        stateExitedEventDetails: { name: 'Plan' },
      },
      { id: 4, previousEventId: 3, type: 'ExecutionSucceeded', timestamp: at(3) },
    ],
  ];
  const executionOf = (input: Record<string, unknown>) => {
    const executionArn = String(input.executionArn);
    const machine = stateMachineOfExecution(executionArn);
    if (machine !== machines.backup && machine !== machines.restore) {
      throw Object.assign(new Error(`Execution Does Not Exist: '${executionArn}'`), {
        name: 'ExecutionDoesNotExist',
      });
    }
    return machine;
  };
  return (command: string, input: Record<string, unknown>): unknown => {
    switch (command) {
      case 'DescribeStacksCommand':
        return {
          Stacks: [
            {
              StackName: stack.resolve({ Ref: 'AWS::StackName' }),
              StackId: stack.resolve({ Ref: 'AWS::StackId' }),
              StackStatus: 'CREATE_COMPLETE',
              Outputs: Object.entries(stack.template.Outputs ?? {}).map(([OutputKey, output]) => ({
                OutputKey,
                OutputValue: String(stack.resolve(output.Value)),
              })),
            },
          ],
        };
      case 'StartExecutionCommand':
        return {
          executionArn: `${String(input.stateMachineArn).replace(':stateMachine:', ':execution:')}:${randomUUID()}`,
          startDate: at(0),
        };
      case 'GetExecutionHistoryCommand': {
        executionOf(input);
        const index = input.nextToken ? Number(input.nextToken) : 0;
        return {
          events: pages[index],
          ...(index + 1 < pages.length ? { nextToken: String(index + 1) } : {}),
        };
      }
      case 'DescribeExecutionCommand': {
        const machine = executionOf(input);
        return {
          executionArn: input.executionArn,
          stateMachineArn: machine,
          status: 'SUCCEEDED',
          output: JSON.stringify(
            machine === machines.backup
              ? { pool: POOL, succeeded: 1, failed: 0, outcomes: [] }
              : { layersApplied: [] },
          ),
        };
      }
      default:
        throw new Error(`the fake AWS has no answer to ${command}`);
    }
  };
}

/** One AWS call as authorized, through the gateway (S3) or at the stubbed clients (the control plane). */
type RecordedCall = AwsCall | ControlPlaneCall;

/** One command line of the CLI, and the AWS calls it made, in order. */
interface CommandRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly calls: RecordedCall[];
}

async function runCommand(
  world: OperatorWorld,
  argv: readonly string[],
  terminal = false,
): Promise<CommandRun> {
  let stdout = '';
  let stderr = '';
  const stream = (write: (text: string) => void) =>
    ({ write: (chunk: string) => (write(chunk), true), isTTY: terminal }) as unknown as NodeJS.WriteStream;
  const before = { s3: world.gateway.calls.length, controlPlane: world.controlPlane.length };
  const code = await run(argv, {
    output: createOutput(
      argv.includes('--json'),
      stream((text) => (stdout += text)),
      stream((text) => (stderr += text)),
      {},
    ),
    aws: world.aws,
    env: {
      VDI_VAULT_S3_ACCESS_KEY: s3.credentials.accessKeyId,
      VDI_VAULT_S3_SECRET_KEY: s3.credentials.secretAccessKey,
    },
  });
  // The gateway publishes an S3 exchange once its response has gone out.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const calls: RecordedCall[] = [
    ...world.gateway.calls.slice(before.s3),
    ...world.controlPlane.slice(before.controlPlane),
  ].sort((a, b) => a.at - b.at);
  return { code, stdout, stderr, calls };
}

/** Every deployed-mode command, as an operator runs it: the command line and its exit code. */
function commandLines(
  world: OperatorWorld,
): Record<string, { argv: string[]; exit: number; terminal?: boolean }> {
  const catalog = ['--s3-endpoint', world.s3Endpoint, '--json'];
  const scheduled = `${world.machines.backup.replace(':stateMachine:', ':execution:')}:${SCHEDULED_RUN}`;
  return {
    // On a terminal, `watch` draws the running transfers' progress records too.
    'watch (on a terminal)': { argv: ['watch', scheduled], exit: 0, terminal: true },
    'backup --no-wait': { argv: ['backup', VDI, '--no-wait', '--json'], exit: 0 },
    backup: { argv: ['backup', VDI, '--mode', 'full', '--json'], exit: 0 },
    restore: { argv: ['restore', VDI, '--sr-uuid', SR, '--strategy', 'merge', '--json'], exit: 0 },
    'watch (a scheduled backup)': { argv: ['watch', scheduled, '--json'], exit: 0 },
    list: { argv: ['list', VDI, ...catalog], exit: 0 },
    verify: { argv: ['verify', VDI, ...catalog], exit: 0 },
    'verify --all': { argv: ['verify', VDI, '--all', ...catalog], exit: 0 },
    'verify (broken chain)': { argv: ['verify', BROKEN_VDI, ...catalog], exit: 3 },
  };
}

/** What each command needs, action by action (the docs' table in docs/infrastructure.md, "Operator access"). */
const FOLLOW = ['states:GetExecutionHistory', 'kms:Decrypt', 'states:DescribeExecution'];
const READ_CATALOG = ['cloudformation:DescribeStacks', 's3:ListBucket', 's3:GetObject', 'kms:Decrypt'];
const EXPECTED_ACTIONS: Record<string, string[]> = {
  'backup --no-wait': ['cloudformation:DescribeStacks', 'states:StartExecution'],
  backup: ['cloudformation:DescribeStacks', 'states:StartExecution', ...FOLLOW],
  restore: ['cloudformation:DescribeStacks', 'states:StartExecution', ...FOLLOW],
  'watch (a scheduled backup)': FOLLOW,
  'watch (the backup started with --no-wait)': FOLLOW,
  'watch (on a terminal)': [...FOLLOW, 'cloudformation:DescribeStacks', 'dynamodb:GetItem'],
  list: READ_CATALOG,
  verify: READ_CATALOG,
  'verify --all': READ_CATALOG,
  'verify (broken chain)': READ_CATALOG,
};

const distinct = (values: readonly string[]) => [...new Set(values)].sort();

/** Stores the catalog the commands read: VDI's full and delta, BROKEN_VDI's manifest without its object. */
async function storeCatalog(bucket: string): Promise<void> {
  const virtualSize = 4 * 1024 * 1024;
  const put = (key: string, body: Buffer | string) =>
    s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const layer = async (
    vdiUuid: string,
    kind: 'full' | 'delta',
    second: number,
    parentBackupId: string | null,
    storeObject = true,
  ): Promise<string> => {
    const startedAt = new Date(Date.UTC(2026, 10, 26, 16, 40, second));
    const backupId = newBackupId(startedAt, kind);
    const vhd = writeVhd(
      {
        virtualSize,
        blockIndexes: kind === 'full' ? [0, 1] : [1],
        readBlock: () => new Uint8Array(2 * 1024 * 1024).fill(second),
      },
      { diskType: kind === 'full' ? 'dynamic' : 'differencing' },
    );
    const chunks: Uint8Array[] = [];
    for await (const chunk of vhd.stream) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const objectKey = `${PREFIX}/${POOL}/${vdiUuid}/${backupId}.vhd`;
    if (storeObject) await put(objectKey, body);
    const manifest: Manifest = {
      formatVersion: 1,
      backupId,
      kind,
      parentBackupId,
      pool: POOL,
      vdiUuid,
      vdiNameLabel: 'disk',
      snapshotUuid: randomUUID(),
      virtualSize,
      objectKey,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      presentBlocks: kind === 'full' ? 2 : 1,
      startedAt: startedAt.toISOString(),
      endedAt: startedAt.toISOString(),
      host: 'xcp-master',
    };
    await put(`${PREFIX}/${POOL}/${vdiUuid}/${backupId}.json`, JSON.stringify(manifest));
    return backupId;
  };
  const full = await layer(VDI, 'full', 0, null);
  await layer(VDI, 'delta', 10, full);
  await layer(BROKEN_VDI, 'full', 20, null, false);
}

/** The template with `action` taken out of the operator policy's statement `sid` (the statement gone if empty). */
function withoutGrant(template: Template, sid: string, action: string): Template {
  const copy = structuredClone(template);
  const document = copy.Resources[operatorPolicyLogicalId(copy)]!.Properties!.PolicyDocument as {
    Statement: PolicyStatement[];
  };
  const statement = document.Statement.find((candidate) => candidate.Sid === sid);
  const actions = [statement?.Action ?? []].flat();
  if (!statement || !actions.includes(action)) throw new Error(`the operator policy has no ${sid}/${action}`);
  const rest = actions.filter((each) => each !== action);
  if (rest.length > 0) statement.Action = rest;
  else document.Statement = document.Statement.filter((each) => each !== statement);
  return copy;
}

function operatorStatements(template: Template): PolicyStatement[] {
  const resource = template.Resources[operatorPolicyLogicalId(template)]!;
  return (resource.Properties!.PolicyDocument as { Statement: PolicyStatement[] }).Statement;
}

describe('the operator policy covers every AWS call of the deployed CLI, and grants no more', () => {
  let bucket: string;
  let template: Template;
  let world: OperatorWorld;
  let locks: LockTableWorld;
  const runs: Record<string, CommandRun> = {};

  beforeAll(async () => {
    bucket = await createTestBucket(s3.client, 'operator-iam');
    await storeCatalog(bucket);
    locks = await startLockTable();
    await dynamoProgressStore(locks.table.client, locks.table.tableName).write(
      SCHEDULED_RUN,
      `export ${VDI}`,
      {
        bytes: 512 * 1024 * 1024,
        total: 2048 * 1024 * 1024,
        bytesPerSecond: 40_000_000,
        startedAt: new Date().toISOString(),
        updatedAt: new Date().toISOString(),
      },
    );
    template = synthesizeApp(CONFIG).template as unknown as Template;
    world = await startOperatorWorld(template, bucket, locks);
    for (const [name, { argv, terminal }] of Object.entries(commandLines(world))) {
      runs[name] = await runCommand(world, argv, terminal);
    }
    // Start, then follow: the execution `backup --no-wait` printed.
    const { executionId } = JSON.parse(runs['backup --no-wait']!.stdout) as { executionId: string };
    runs['watch (the backup started with --no-wait)'] = await runCommand(world, [
      'watch',
      executionId,
      '--json',
    ]);
  });
  afterAll(async () => {
    await world?.gateway.close();
    await locks?.close();
    if (bucket) await deleteTestBucket(s3.client, bucket);
  });

  it('the operator is a role of its own holding exactly the OperatorPolicy', () => {
    expect(world.operator).toBe(`arn:aws:iam::${accountId}:role/operator`);
    const policyArn = world.stack.ref(operatorPolicyLogicalId(template));
    expect(world.stack.resolve(world.stack.template.Resources[OPERATOR_ROLE_LOGICAL_ID]!.Properties)).toEqual(
      expect.objectContaining({ ManagedPolicyArns: [policyArn] }),
    );
    expect(world.stack.template.Resources[OPERATOR_ROLE_LOGICAL_ID]!.Properties).not.toHaveProperty(
      'Policies',
    );
  });

  it('every command does its job, and every call it makes is allowed', () => {
    expect(Object.keys(runs).sort()).toEqual(Object.keys(EXPECTED_ACTIONS).sort());
    const exits = Object.fromEntries(
      Object.entries(commandLines(world)).map(([name, { exit }]) => [name, exit]),
    );
    for (const [name, done] of Object.entries(runs)) {
      const exit = exits[name] ?? 0;
      expect(done.code, `${name}: ${done.stderr}`).toBe(exit);
      const denied = done.calls.filter((call) => !call.allowed);
      expect(
        denied.map((call) => `${call.action} on ${call.resource}: ${call.reason}`),
        name,
      ).toEqual([]);
      expect(distinct(done.calls.map((call) => call.action)), name).toEqual(
        distinct(EXPECTED_ACTIONS[name]!),
      );
      expect(done.calls.every((call) => call.principal === world.operator)).toBe(true);
    }
    expect(JSON.parse(runs.list!.stdout)).toMatchObject({ pool: POOL, restorePoints: [{}, {}] });
    expect(runs['watch (on a terminal)']!.stderr).toMatch(
      new RegExp(`export ${VDI}  \\[#{6}\\.{18}\\]  25%  512\\.0 MiB / 2\\.0 GiB  40\\.0 MB/s  ETA`),
    );
    expect(JSON.parse(runs.verify!.stdout)).toMatchObject({ ok: true, layers: [{ ok: true }, { ok: true }] });
    // A missing object is reported as missing (404), not Forbidden: the operator may list the bucket.
    expect(JSON.parse(runs['verify (broken chain)']!.stdout)).toMatchObject({
      ok: false,
      broken: expect.stringContaining('is missing from S3'),
    });
  });

  it("each call names the stack's own resources, with the context the service sets", () => {
    const calls = Object.values(runs).flatMap((done) => done.calls);
    const stackId = String(world.stack.resolve({ Ref: 'AWS::StackId' }));
    // The stack's key (output KeyArn) encrypts both the state machines and the bucket.
    const keyArn = String(world.stack.resolve(template.Outputs?.KeyArn?.Value));
    expect(keyArn).toMatch(/^arn:aws:kms:/);
    const machineArns = [world.machines.backup, world.machines.restore];
    expect(machineArns).toEqual([
      `arn:aws:states:${region}:${accountId}:stateMachine:VdiVault-backup`,
      `arn:aws:states:${region}:${accountId}:stateMachine:VdiVault-restore`,
    ]);
    const started = calls.filter((call) => call.action === 'states:StartExecution');
    expect(distinct(started.map((call) => call.resource))).toEqual(machineArns);
    for (const call of calls) {
      const where = `${call.action} on ${call.resource}`;
      if (call.service === 'cloudformation') expect(call.resource, where).toBe(stackId);
      if (call.action === 'states:GetExecutionHistory' || call.action === 'states:DescribeExecution') {
        expect(machineArns, where).toContain(stateMachineOfExecution(call.resource));
      }
      if (call.service === 's3') {
        expect(call.resource, where).toMatch(
          call.action === 's3:ListBucket'
            ? new RegExp(`^arn:aws:s3:::${bucket}$`)
            : new RegExp(`^arn:aws:s3:::${bucket}/${PREFIX}/${POOL}/`),
        );
      }
      if (call.service === 'dynamodb') {
        expect(call.resource, where).toBe(
          `arn:aws:dynamodb:${region}:${accountId}:table/${world.progressTable}`,
        );
        expect(call.context['dynamodb:LeadingKeys'], where).toEqual([`progress:${SCHEDULED_RUN}`]);
      }
      if (call.service === 'kms') {
        expect(call.resource, where).toBe(keyArn);
        const via = call.context['kms:ViaService'];
        // Step Functions decrypts an execution's data in the state machine's context; S3 the objects';
        // DynamoDB the table key.
        if (via === `states.${region}.amazonaws.com`) {
          expect(machineArns).toContain(call.context['kms:EncryptionContext:aws:states:stateMachineArn']);
        } else if (via === `dynamodb.${region}.amazonaws.com`) {
          expect(call.context['kms:EncryptionContext:aws:dynamodb:tableName'], where).toBe(
            world.progressTable,
          );
        } else {
          expect(via, where).toBe(`s3.${region}.amazonaws.com`);
          expect(call.context['kms:EncryptionContext:aws:s3:arn'], where).toBe(`arn:aws:s3:::${bucket}`);
        }
      }
    }
    // Both kinds of KMS use happened: following executions, and reading SSE-KMS objects.
    expect(
      distinct(calls.filter((c) => c.service === 'kms').map((c) => String(c.context['kms:ViaService']))),
    ).toEqual([
      `dynamodb.${region}.amazonaws.com`,
      `s3.${region}.amazonaws.com`,
      `states.${region}.amazonaws.com`,
    ]);
  });

  it('grants no command used: only the commented allowlist', async () => {
    const used = new Set(
      Object.values(runs).flatMap((done) => done.calls.map((call) => call.action.toLowerCase())),
    );
    const granted = await grantedActions(world.stack, world.operator);
    // Wildcards would need matching against the calls (usage.ts does): the policy names each action.
    expect(granted.filter((action) => action.includes('*'))).toEqual([]);
    const unused = granted.filter((action) => !used.has(action.toLowerCase()));
    expect(unused).toEqual(distinct(UNUSED_BY_DESIGN));
  });

  /**
   * Each grant a command uses, taken away: that command fails, on that call (exit 4); without progress,
   * `watch` still follows the execution and says why it draws no bars (exit 0).
   */
  const removals: { sid: string; action: string; command: string; says: RegExp; exit?: number }[] = [
    {
      sid: 'ReadTransferProgress',
      action: 'dynamodb:GetItem',
      command: 'watch (on a terminal)',
      says: /transfer progress unavailable: User: .* is not authorized to perform: dynamodb:GetItem/,
      exit: 0,
    },
    {
      sid: 'DecryptProgressThroughDynamoDB',
      action: 'kms:Decrypt',
      command: 'watch (on a terminal)',
      says: /transfer progress unavailable: .*kms:Decrypt/,
      exit: 0,
    },
    {
      sid: 'ReadStackOutputs',
      action: 'cloudformation:DescribeStacks',
      command: 'list',
      says: /cannot read the outputs of stack VdiVault: User: .* is not authorized to perform: cloudformation:DescribeStacks/,
    },
    {
      sid: 'StartAndListExecutions',
      action: 'states:StartExecution',
      command: 'backup',
      says: /cannot start an execution of .*stateMachine:VdiVault-backup: .* states:StartExecution/,
    },
    {
      sid: 'FollowExecutions',
      action: 'states:GetExecutionHistory',
      command: 'watch (a scheduled backup)',
      says: /cannot read the history of .*: .* states:GetExecutionHistory/,
    },
    {
      sid: 'FollowExecutions',
      action: 'states:DescribeExecution',
      command: 'restore',
      says: /AccessDeniedException: .* states:DescribeExecution/,
    },
    {
      sid: 'EncryptedExecutionData',
      action: 'kms:Decrypt',
      command: 'watch (a scheduled backup)',
      says: /cannot read the history of .*: .* kms:Decrypt/,
    },
    {
      sid: 'ListCatalog',
      action: 's3:ListBucket',
      command: 'list',
      says: /cannot read the catalog in s3:\/\/.*: AccessDenied/,
    },
    {
      sid: 'ReadCatalog',
      action: 's3:GetObject',
      command: 'verify',
      says: /cannot read the catalog in s3:\/\/.*: AccessDenied: .* s3:GetObject/,
    },
    {
      sid: 'DecryptCatalogThroughS3',
      action: 'kms:Decrypt',
      command: 'list',
      says: /cannot read the catalog in s3:\/\/.*: AccessDenied: .* kms:Decrypt/,
    },
  ];

  it('the removals below cover every grant a command uses', () => {
    const used = new Set(UNUSED_BY_DESIGN);
    const grants = operatorStatements(template).flatMap((statement) =>
      [statement.Action ?? []].flat().map((action) => `${statement.Sid}/${action}`),
    );
    expect(distinct(removals.map(({ sid, action }) => `${sid}/${action}`))).toEqual(
      distinct(grants.filter((grant) => !used.has(grant.split('/')[1]!))),
    );
  });

  it.each(removals)('without $sid/$action, $command is denied that call', async (removal) => {
    const stripped = await startOperatorWorld(
      withoutGrant(template, removal.sid, removal.action),
      bucket,
      locks,
    );
    try {
      const { argv, terminal } = commandLines(stripped)[removal.command]!;
      const done = await runCommand(stripped, argv, terminal);
      expect(done.code, done.stderr).toBe(removal.exit ?? 4);
      expect(done.stderr).toMatch(removal.says);
      const denied = done.calls.filter((call) => !call.allowed);
      // Catalog reads run several at a time: each one in flight may be refused, all for that one action.
      expect([...new Set(denied.map((call) => call.action))]).toEqual([removal.action]);
      for (const call of denied) expect(call.reason).toBe('implicit deny: no statement allows');
    } finally {
      await stripped.gateway.close();
    }
  });
});
