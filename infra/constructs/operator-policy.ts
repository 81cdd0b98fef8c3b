import { ArnFormat, Stack } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { progressItemKey } from '../../lambdas/shared/transfer-progress.ts';
import { acknowledgeOperatorPolicyFindings } from '../nag-acknowledgements.ts';

export interface OperatorPolicyProps {
  readonly backupStateMachine: sfn.StateMachine;
  readonly restoreStateMachine: sfn.StateMachine;
  /** The key both state machines are encrypted with. */
  readonly stateMachineKey: kms.IKey;
  readonly bucket: s3.IBucket;
  /** Catalog key prefix, without trailing slash. */
  readonly prefix: string;
  /** The key the bucket encrypts objects with (SSE-KMS). Default: none (SSE-S3). */
  readonly bucketKey?: kms.IKey;
  /** The table transfers record their progress in (the series lock table). */
  readonly progressTable: dynamodb.ITable;
}

/**
 * The managed policy an operator's role or group attaches to use the `vdi-vault` CLI against the deployed
 * stack, and nothing more. What the CLI calls, and so what it grants:
 *
 * - every command: `cloudformation:DescribeStacks` on this stack (the outputs);
 * - `backup`, `restore`: `states:StartExecution` on the state machine (its role encrypts the input: the
 *   caller needs no key permission for a start);
 * - `backup`, `restore` (unless `--no-wait`) and `watch`: `states:GetExecutionHistory` and
 *   `states:DescribeExecution` on its executions (`kms:Decrypt` of the execution data);
 *   `states:ListExecutions` too, to find the executions schedules started (`aws stepfunctions
 *   list-executions`) and watch them;
 * - `list`, `verify`: `s3:ListBucket` (`ListObjectsV2` under the catalog prefix), `s3:GetObject` under
 *   `<prefix>/*` (manifests, objects; `HeadObject` is authorized as `GetObject`), and `kms:Decrypt` of the
 *   bucket key through S3. Listing carries no `s3:prefix` condition, like the steps' (`catalog-access.ts`):
 *   S3 answers a HEAD of a missing object with 404 only to a caller allowed `s3:ListBucket` as such, and
 *   `verify` would otherwise report a broken chain as `Forbidden`.
 *
 * - `watch` (and `backup`, `restore` while they wait): `dynamodb:GetItem` of the executions' progress
 *   items in the lock table, only those (`dynamodb:LeadingKeys` `progress:*`: never a lock), and
 *   `kms:Decrypt` of the table key through DynamoDB (docs/design.md § Progress of deployed transfers).
 *
 * KMS use for the state machines is confined to their encryption context
 * (`kms:EncryptionContext:aws:states:stateMachineArn`). Not granted: stopping or redriving executions,
 * writing or deleting anything.
 */
export function createOperatorPolicy(
  scope: Construct,
  id: string,
  props: OperatorPolicyProps,
): iam.ManagedPolicy {
  const stack = Stack.of(scope);
  const machines = [props.backupStateMachine, props.restoreStateMachine];
  const executionsOf = (machine: sfn.StateMachine) =>
    stack.formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${physicalName(machine)}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  const policy = new iam.ManagedPolicy(scope, id, {
    description: `vdi-vault operators: what the vdi-vault CLI does with stack ${stack.stackName}`,
    statements: [
      new iam.PolicyStatement({
        sid: 'ReadStackOutputs',
        actions: ['cloudformation:DescribeStacks'],
        resources: [stack.stackId],
      }),
      new iam.PolicyStatement({
        sid: 'StartAndListExecutions',
        actions: ['states:StartExecution', 'states:ListExecutions'],
        resources: machines.map((machine) => machine.stateMachineArn),
      }),
      new iam.PolicyStatement({
        sid: 'FollowExecutions',
        actions: ['states:DescribeExecution', 'states:GetExecutionHistory'],
        resources: machines.map(executionsOf),
      }),
      new iam.PolicyStatement({
        sid: 'EncryptedExecutionData',
        actions: ['kms:Decrypt'],
        resources: [props.stateMachineKey.keyArn],
        conditions: {
          StringEquals: {
            'kms:EncryptionContext:aws:states:stateMachineArn': machines.map(
              (machine) => machine.stateMachineArn,
            ),
          },
        },
      }),
      new iam.PolicyStatement({
        sid: 'ListCatalog',
        actions: ['s3:ListBucket'],
        resources: [props.bucket.bucketArn],
      }),
      new iam.PolicyStatement({
        sid: 'ReadCatalog',
        actions: ['s3:GetObject'],
        resources: [props.bucket.arnForObjects(`${props.prefix}/*`)],
      }),
      new iam.PolicyStatement({
        sid: 'ReadTransferProgress',
        actions: ['dynamodb:GetItem'],
        resources: [props.progressTable.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [progressItemKey('*')] } },
      }),
      ...(props.progressTable.encryptionKey
        ? [
            new iam.PolicyStatement({
              sid: 'DecryptProgressThroughDynamoDB',
              actions: ['kms:Decrypt'],
              resources: [props.progressTable.encryptionKey.keyArn],
              conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${stack.region}.amazonaws.com` } },
            }),
          ]
        : []),
      ...(props.bucketKey
        ? [
            new iam.PolicyStatement({
              sid: 'DecryptCatalogThroughS3',
              actions: ['kms:Decrypt'],
              resources: [props.bucketKey.keyArn],
              conditions: { StringEquals: { 'kms:ViaService': `s3.${stack.region}.amazonaws.com` } },
            }),
          ]
        : []),
    ],
  });
  acknowledgeOperatorPolicyFindings(policy, {
    stateMachineNames: machines.map(physicalName),
  });
  return policy;
}

/** The name the state machine is created with (`createWorkflowStateMachine` always gives one). */
function physicalName(machine: sfn.StateMachine): string {
  const name = (machine.node.defaultChild as sfn.CfnStateMachine).stateMachineName;
  if (name === undefined)
    throw new Error(`${machine.node.path}: the operator policy needs a named state machine`);
  return name;
}
