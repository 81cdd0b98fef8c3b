import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { parseConfig } from '../../infra/config/config.ts';
import { VdiVaultStack } from '../../infra/vdi-vault-stack.ts';
import { JOB, POOL, synth } from './synth.ts';

/**
 * Deploy defects found by reviewing the synthesized stack against AWS's documented behaviour (issue 12:
 * 1, 3, 4, 7, 13, 14, 18). Each test reads the template as CloudFormation would resolve it.
 */

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, Json>;
}
interface Statement {
  readonly Sid?: string;
  readonly Effect: string;
  readonly Principal?: { Service?: string | string[]; AWS?: Json } | '*';
  readonly Action: string | string[];
  readonly Resource: Json;
  readonly Condition?: Record<string, Record<string, Json>>;
}

const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const STACK_UUID = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';

let resources: Record<string, Resource>;
let outputs: Record<string, { Value: Json }>;

beforeAll(() => {
  const { template } = synth(
    { pools: [POOL], jobs: [JOB], notifications: { emails: ['ops@example.com'] } },
    { nagChecks: false },
  );
  const json = template.toJSON() as { Resources: typeof resources; Outputs: typeof outputs };
  resources = json.Resources;
  outputs = json.Outputs;
});

/** Resolves the intrinsic functions the template uses, as CloudFormation would in `REGION`/`ACCOUNT`. */
function resolve(value: Json, stackName = 'VdiVault'): Json {
  if (Array.isArray(value)) return value.map((item) => resolve(item, stackName));
  if (value === null || typeof value !== 'object') return value;
  const [key, argument] = Object.entries(value)[0] ?? [];
  if (key === 'Ref') {
    const pseudo: Record<string, string> = {
      'AWS::Partition': 'aws',
      'AWS::Region': REGION,
      'AWS::AccountId': ACCOUNT,
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::StackName': stackName,
      'AWS::StackId': `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/${stackName}/${STACK_UUID}`,
    };
    const id = argument as string;
    return pseudo[id] ?? arnOf(id);
  }
  if (key === 'Fn::GetAtt') {
    const [id, attribute] = argument as [string, string];
    if (attribute === 'Arn') return arnOf(id);
    return `${id}.${attribute}`;
  }
  if (key === 'Fn::Join') {
    const [separator, parts] = argument as [string, Json[]];
    return parts.map((part) => String(resolve(part, stackName))).join(separator);
  }
  if (key === 'Fn::Split') {
    const [separator, text] = argument as [string, Json];
    return String(resolve(text, stackName)).split(separator);
  }
  if (key === 'Fn::Select') {
    const [index, list] = argument as [number, Json];
    return (resolve(list, stackName) as Json[])[index]!;
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, stackName)]));
}

/** The ARN (or, for a queue, the ARN too: enough to compare) a Ref or Fn::GetAtt Arn resolves to. */
function arnOf(id: string): string {
  const resource = resources[id];
  if (resource?.Type === 'AWS::StepFunctions::StateMachine') {
    return `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${String(resource.Properties.StateMachineName)}`;
  }
  return `arn:aws:${resource?.Type ?? 'unknown'}:${REGION}:${ACCOUNT}:${id}`;
}

function ofType(type: string): [string, Resource][] {
  return Object.entries(resources).filter(([, resource]) => resource.Type === type);
}

/** The statements of a policy document, resolved. */
function statementsIn(document: Json | undefined): Statement[] {
  return (resolve(document ?? null) as unknown as { Statement: Statement[] }).Statement;
}

function statementsOfRole(roleId: string): Statement[] {
  return ofType('AWS::IAM::Policy')
    .filter(([, policy]) => JSON.stringify(policy.Properties.Roles).includes(`"${roleId}"`))
    .flatMap(
      ([, policy]) => (policy.Properties.PolicyDocument as unknown as { Statement: Statement[] }).Statement,
    );
}

function actions(statement: Statement): string[] {
  return typeof statement.Action === 'string' ? [statement.Action] : statement.Action;
}

function services(statement: Statement): string[] {
  const principal = statement.Principal;
  if (!principal || principal === '*' || !principal.Service) return [];
  return typeof principal.Service === 'string' ? [principal.Service] : principal.Service;
}

interface State {
  readonly Type: string;
  readonly Resource?: string;
  readonly TimeoutSeconds?: number;
  readonly Retry?: {
    ErrorEquals: string[];
    BackoffRate?: number;
    JitterStrategy?: string;
    MaxDelaySeconds?: number;
  }[];
  readonly ItemProcessor?: { States: Record<string, State> };
  readonly Iterator?: { States: Record<string, State> };
  readonly Branches?: { States: Record<string, State> }[];
}

/** Every state of both state machines, by name, with their Lambda functions' ARNs resolved. */
function allStates(): [string, State][] {
  const states: [string, State][] = [];
  const visit = (machine: { States: Record<string, State> }) => {
    for (const [name, state] of Object.entries(machine.States)) {
      states.push([name, state]);
      for (const inner of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
        if (inner) visit(inner);
      }
    }
  };
  for (const [, machine] of ofType('AWS::StepFunctions::StateMachine')) {
    visit(
      JSON.parse(resolve(machine.Properties.DefinitionString!) as string) as {
        States: Record<string, State>;
      },
    );
  }
  return states;
}

describe('deploy defects', () => {
  it('1: names each state machine within the stack, and its role may use the key for exactly that ARN', () => {
    const machines = ofType('AWS::StepFunctions::StateMachine');
    expect(machines.map(([, machine]) => machine.Properties.StateMachineName).sort()).toEqual([
      'VdiVault-backup',
      'VdiVault-restore',
    ]);
    for (const [id, machine] of machines) {
      const arn = arnOf(id);
      const roleId = (machine.Properties.RoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
      const contexts = statementsOfRole(roleId)
        .map(
          (statement) =>
            statement.Condition?.StringEquals?.['kms:EncryptionContext:aws:states:stateMachineArn'],
        )
        .filter((value) => value !== undefined)
        .map((value) => resolve(value));
      // Without a name, CDK's condition reads `arn:aws:states:…:stateMachine:` (nothing after the colon).
      expect(contexts).toEqual([arn]);
    }
    // The triggers' role starts executions: its grant names the backup state machine's ARN too.
    const [[triggersRole]] = ofType('AWS::IAM::Role').filter(([roleId]) =>
      roleId.startsWith('TriggersStartBackupRole'),
    ) as [[string, Resource]];
    const triggerContexts = statementsOfRole(triggersRole)
      .map(
        (statement) =>
          statement.Condition?.StringEquals?.['kms:EncryptionContext:aws:states:stateMachineArn'],
      )
      .filter((value) => value !== undefined)
      .map((value) => resolve(value));
    expect(triggerContexts).toEqual([`arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:VdiVault-backup`]);
  });

  it('1: keeps the names within 80 characters, one per workflow, for a long stack name', () => {
    const stackName = `vdi-vault-${'x'.repeat(110)}`;
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new VdiVaultStack(app, 'Long', { stackName, config: parseConfig({ pools: [POOL] }) });
    const names = Object.values(
      Template.fromStack(stack).findResources('AWS::StepFunctions::StateMachine'),
    ).map((machine) => machine.Properties.StateMachineName as string);
    expect(names).toHaveLength(2);
    expect(new Set(names).size).toBe(2);
    for (const name of names) {
      expect(name.length).toBeLessThanOrEqual(80);
      expect(name).toMatch(/^vdi-vault-x+-[0-9a-f]{8}-(backup|restore)$/);
    }
  });

  it('4: lets CloudWatch alarms and EventBridge publish to the encrypted topic', () => {
    const [[topicId]] = ofType('AWS::SNS::Topic') as [[string, Resource]];
    const topicArn = arnOf(topicId);
    const [[, topicPolicy]] = ofType('AWS::SNS::TopicPolicy') as [[string, Resource]];
    const topicStatements = statementsIn(topicPolicy.Properties.PolicyDocument);
    const publishers = (service: string) =>
      topicStatements.filter(
        (statement) =>
          statement.Effect === 'Allow' &&
          services(statement).includes(service) &&
          actions(statement).some((action) => /^sns:Publish$/i.test(action)),
      );
    // The topic policy replaces SNS's default one: without its own statement, no alarm can publish.
    const [alarms] = publishers('cloudwatch.amazonaws.com');
    expect(alarms).toMatchObject({
      Resource: topicArn,
      Condition: {
        ArnLike: { 'aws:SourceArn': `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:*` },
        StringEquals: { 'aws:SourceAccount': ACCOUNT },
      },
    });
    expect(publishers('events.amazonaws.com')).toHaveLength(1);
    for (const [, alarm] of ofType('AWS::CloudWatch::Alarm')) {
      expect(resolve(alarm.Properties.AlarmActions!)).toEqual([topicArn]);
    }

    // The key: SNS uses it for each publisher. CloudWatch's use is tied to SNS topics of this account
    // (encryption context), not to `aws:SourceAccount`, which these requests are not documented to carry.
    const [[, key]] = ofType('AWS::KMS::Key') as [[string, Resource]];
    const keyStatements = statementsIn(key.Properties.KeyPolicy);
    const keyUsers = (service: string) =>
      keyStatements.filter(
        (statement) =>
          services(statement).includes(service) &&
          ['kms:GenerateDataKey*', 'kms:Decrypt'].every((action) => actions(statement).includes(action)),
      );
    expect(keyUsers('cloudwatch.amazonaws.com')).toEqual([
      expect.objectContaining({
        Condition: {
          ArnLike: { 'kms:EncryptionContext:aws:sns:topicArn': `arn:aws:sns:${REGION}:${ACCOUNT}:*` },
        },
      }),
    ]);
    // EventBridge's KMS requests for an encrypted topic carry no aws:Source* keys: no statement may need them.
    const events = keyUsers('events.amazonaws.com');
    expect(events.length).toBeGreaterThan(0);
    for (const statement of events)
      expect(JSON.stringify(statement.Condition ?? {})).not.toContain('aws:Source');
  });

  it('7: logs the state machines under /aws/vendedlogs/states/, new names for each creation of the stack', () => {
    const machines = ofType('AWS::StepFunctions::StateMachine');
    for (const [, machine] of machines) {
      const logging = machine.Properties.LoggingConfiguration as {
        Destinations: { CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [string, string] } } }[];
      };
      const [logGroupId] = logging.Destinations[0]!.CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'];
      const name = resolve(resources[logGroupId]!.Properties.LogGroupName!);
      expect(name).toBe(
        `/aws/vendedlogs/states/${String(machine.Properties.StateMachineName)}-${STACK_UUID.split('-')[0]}`,
      );
    }
  });

  it('13: every Lambda state retries throttling; only the retryable ones retry Lambda service errors', () => {
    const lambdaStates = allStates().filter(
      ([, state]) => state.Type === 'Task' && state.Resource?.startsWith('arn:aws:AWS::Lambda::Function:'),
    );
    expect(lambdaStates.length).toBeGreaterThan(15);
    const retries = (state: State, error: string) =>
      (state.Retry ?? []).filter((retrier) => retrier.ErrorEquals.includes(error));
    const notRetried: string[] = [];
    for (const [name, state] of lambdaStates) {
      const [throttled, ...more] = retries(state, 'Lambda.TooManyRequestsException');
      expect(more, name).toEqual([]);
      expect(throttled, name).toMatchObject({ JitterStrategy: 'FULL' });
      expect(throttled!.BackoffRate, name).toBeGreaterThan(1);
      expect(throttled!.MaxDelaySeconds, name).toBeGreaterThan(0);
      const transient = retries(state, 'XapiNetworkError').length > 0;
      for (const error of [
        'Lambda.ServiceException',
        'Lambda.AWSLambdaException',
        'Lambda.SdkClientException',
      ]) {
        expect(retries(state, error).length > 0, `${name} retries ${error}`).toBe(transient);
      }
      if (!transient) notRetried.push(name);
    }
    // The workflow documents these as not retried: a twin snapshot, a stream that can't resume.
    expect(notRetried).toEqual(expect.arrayContaining(['Snapshot', 'Export']));
  });

  it('14: every schedule and rule target has an encrypted, TLS-only dead-letter queue that alarms to the topic', () => {
    const [[topicId]] = ofType('AWS::SNS::Topic') as [[string, Resource]];
    const [[keyId]] = ofType('AWS::KMS::Key') as [[string, Resource]];
    const targets = [
      ...ofType('AWS::Scheduler::Schedule').map(
        ([id, schedule]) => [id, schedule.Properties.Target] as const,
      ),
      ...ofType('AWS::Events::Rule').flatMap(([id, rule]) =>
        (rule.Properties.Targets as Json[]).map((target) => [id, target] as const),
      ),
    ] as [string, { DeadLetterConfig?: { Arn: { 'Fn::GetAtt': [string, string] } } }][];
    expect(targets.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual([
      'DashboardCatalogMetricsSchedule',
      'NotificationsExecutionFailed',
      'TriggersBackupRequested',
      'TriggersJobnightly',
    ]);
    const queues = new Set<string>();
    for (const [id, target] of targets) {
      expect(target.DeadLetterConfig, id).toBeDefined();
      queues.add(target.DeadLetterConfig!.Arn['Fn::GetAtt'][0]);
    }
    for (const queueId of queues) {
      const queue = resources[queueId]!;
      expect(queue.Type).toBe('AWS::SQS::Queue');
      expect(queue.Properties.KmsMasterKeyId).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
      expect(queue.Properties.MessageRetentionPeriod).toBe(14 * 24 * 3600);
      const [[, queuePolicy]] = ofType('AWS::SQS::QueuePolicy').filter(([, policy]) =>
        JSON.stringify(policy.Properties.Queues).includes(`"${queueId}"`),
      ) as [[string, Resource]];
      expect(queuePolicy.Properties.PolicyDocument).toMatchObject({
        Statement: expect.arrayContaining([
          expect.objectContaining({
            Effect: 'Deny',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      });
      const alarms = ofType('AWS::CloudWatch::Alarm').filter(
        ([, alarm]) =>
          alarm.Properties.MetricName === 'ApproximateNumberOfMessagesVisible' &&
          JSON.stringify(alarm.Properties.Dimensions).includes(`"${queueId}"`),
      );
      expect(alarms, queueId).toHaveLength(1);
      expect(alarms[0]![1].Properties).toMatchObject({
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        AlarmActions: [{ Ref: topicId }],
      });
    }

    // Who sends the letters may use the key for them: EventBridge (service principal) for rules, the
    // schedule's role for Scheduler.
    const [[, key]] = ofType('AWS::KMS::Key') as [[string, Resource]];
    const keyStatements = statementsIn(key.Properties.KeyPolicy);
    expect(keyStatements).toContainEqual(
      expect.objectContaining({
        Principal: { Service: 'events.amazonaws.com' },
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Condition: { ArnLike: { 'kms:EncryptionContext:aws:sqs:arn': `arn:aws:sqs:${REGION}:${ACCOUNT}:*` } },
      }),
    );
    const [[, schedule]] = ofType('AWS::Scheduler::Schedule') as [[string, Resource]];
    const target = schedule.Properties.Target as {
      RoleArn: { 'Fn::GetAtt': [string, string] };
      DeadLetterConfig: { Arn: Json };
    };
    const roleStatements = statementsOfRole(target.RoleArn['Fn::GetAtt'][0]);
    expect(roleStatements).toContainEqual(
      expect.objectContaining({ Action: 'sqs:SendMessage', Resource: target.DeadLetterConfig.Arn }),
    );
    expect(roleStatements).toContainEqual(
      expect.objectContaining({
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Condition: {
          StringEquals: expect.objectContaining({
            'kms:EncryptionContext:aws:sqs:arn': target.DeadLetterConfig.Arn,
          }),
        },
      }),
    );
  });

  it('14: the Fargate states retry failed starts and give up an hour after XAPI ends a transfer', () => {
    const ecsStates = allStates().filter(
      ([, state]) => state.Resource === 'arn:aws:states:::ecs:runTask.sync',
    );
    expect(ecsStates.map(([name]) => name).sort()).toEqual([
      'ExportOnFargate',
      'ImportLayerOnFargate',
      'ImportMergedOnFargate',
      'MergeOnFargate',
      'ReplayOnFargate',
      'VmDiskImportOnFargate',
    ]);
    for (const [name, state] of ecsStates) {
      expect(state.TimeoutSeconds, name).toBe(25 * 3600);
      const start = (state.Retry ?? []).find((retrier) =>
        retrier.ErrorEquals.includes('ECS.AmazonECSException'),
      );
      expect(start, name).toMatchObject({ JitterStrategy: 'FULL' });
      expect(start!.ErrorEquals).toEqual(expect.arrayContaining(['ECS.ServerException']));
      // A task that ran and failed is not started again.
      for (const retrier of state.Retry ?? []) {
        expect(retrier.ErrorEquals).not.toContain('States.TaskFailed');
        expect(retrier.ErrorEquals).not.toContain('States.ALL');
      }
    }
  });

  it('18: the operator policy grants what the deployed CLI calls, nothing more, and is a stack output', () => {
    const policies = ofType('AWS::IAM::ManagedPolicy');
    expect(policies).toHaveLength(1);
    const [policyId, policy] = policies[0]!;
    expect(outputs.OperatorPolicyArn?.Value).toEqual({ Ref: policyId });
    const statements = statementsIn(policy.Properties.PolicyDocument);
    const machines = ofType('AWS::StepFunctions::StateMachine')
      .map(([id]) => arnOf(id))
      .sort();
    const executions = machines.map((arn) => `${arn.replace(':stateMachine:', ':execution:')}:*`);
    const [[bucketId]] = ofType('AWS::S3::Bucket').filter(([id]) => id.startsWith('Backups')) as [
      [string, Resource],
    ];
    const [[keyId]] = ofType('AWS::KMS::Key') as [[string, Resource]];
    const bucketArn = arnOf(bucketId);
    const keyArn = arnOf(keyId);
    const granted = (action: string) =>
      statements.filter((statement) => statement.Effect === 'Allow' && actions(statement).includes(action));
    const resourcesOf = (action: string) =>
      granted(action)
        .flatMap((statement) =>
          Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource],
        )
        .map(String)
        .sort();

    // Every AWS call of the CLI in deployed mode (cli/deployed.ts, cli/catalog-access.ts, cli/commands/*.ts and
    // the catalog functions they use), and the IAM action that authorizes it.
    const calls: Record<string, string> = {
      'CloudFormation DescribeStacks (stack outputs)': 'cloudformation:DescribeStacks',
      'SFN StartExecution (backup, restore)': 'states:StartExecution',
      'SFN GetExecutionHistory (follow, watch)': 'states:GetExecutionHistory',
      'SFN DescribeExecution (outcome)': 'states:DescribeExecution',
      'S3 ListObjectsV2 (list, verify: listManifests)': 's3:ListBucket',
      'S3 GetObject (manifests, verify)': 's3:GetObject',
      'S3 HeadObject (verify: resolveChain)': 's3:GetObject',
      'DynamoDB GetItem (watch: transfer progress)': 'dynamodb:GetItem',
    };
    for (const [call, action] of Object.entries(calls)) expect(granted(action), call).not.toEqual([]);
    expect(new Set(statements.flatMap(actions))).toEqual(
      new Set([...Object.values(calls), 'states:ListExecutions', 'kms:Decrypt']),
    );

    expect(resourcesOf('cloudformation:DescribeStacks')).toEqual([
      `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/VdiVault/${STACK_UUID}`,
    ]);
    expect(resourcesOf('states:StartExecution')).toEqual(machines);
    expect(resourcesOf('states:ListExecutions')).toEqual(machines);
    expect(resourcesOf('states:DescribeExecution')).toEqual(executions);
    expect(resourcesOf('states:GetExecutionHistory')).toEqual(executions);
    expect(resourcesOf('s3:ListBucket')).toEqual([bucketArn]);
    expect(resourcesOf('s3:GetObject')).toEqual([`${bucketArn}/backups/*`]);
    // Progress items only, never a lock (docs/design.md § Progress of deployed transfers).
    const [[tableId]] = ofType('AWS::DynamoDB::Table') as [[string, Resource]];
    expect(resourcesOf('dynamodb:GetItem')).toEqual([arnOf(tableId)]);
    expect(granted('dynamodb:GetItem')[0]!.Condition).toEqual({
      'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['progress:*'] },
    });

    // Execution data is encrypted with the key: the state machine's role encrypts a start's input (the
    // caller needs nothing), reading the history or the outcome decrypts, in its encryption context.
    expect(granted('kms:GenerateDataKey')).toEqual([]);
    expect(granted('kms:Decrypt')).toContainEqual(
      expect.objectContaining({
        Resource: keyArn,
        Condition: {
          StringEquals: { 'kms:EncryptionContext:aws:states:stateMachineArn': machines },
        },
      }),
    );
    // Reading the catalog decrypts through S3 only.
    expect(granted('kms:Decrypt')).toContainEqual(
      expect.objectContaining({
        Action: 'kms:Decrypt',
        Resource: keyArn,
        Condition: { StringEquals: { 'kms:ViaService': `s3.${REGION}.amazonaws.com` } },
      }),
    );
  });
});

describe('deploy defects, in cdk.out', () => {
  let outdir: string;
  afterAll(() => rmSync(outdir, { recursive: true, force: true }));

  it('3: builds the transfer image for linux/arm64, the task definition’s architecture', () => {
    outdir = mkdtempSync(join(tmpdir(), 'vdi-vault-assets-'));
    const { app, stack } = buildApp(new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } }), {
      nagChecks: false,
    });
    const assembly = app.synth();
    const template = assembly.getStackByName(stack.stackName).template as {
      Resources: Record<string, Resource>;
    };
    const taskDefinitions = Object.values(template.Resources).filter(
      (resource) => resource.Type === 'AWS::ECS::TaskDefinition',
    );
    expect(taskDefinitions.map((definition) => definition.Properties.RuntimePlatform)).toEqual([
      { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    ]);
    const manifest = JSON.parse(readFileSync(join(outdir, `${stack.artifactId}.assets.json`), 'utf8')) as {
      dockerImages: Record<string, { source: { dockerFile?: string; platform?: string } }>;
    };
    const images = Object.values(manifest.dockerImages);
    expect(images).toHaveLength(1);
    expect(images[0]!.source).toMatchObject({
      dockerFile: 'lambdas/container/Dockerfile',
      platform: 'linux/arm64',
    });
  });
});
