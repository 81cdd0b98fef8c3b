import { Aws, Fn, Stack, Token } from 'aws-cdk-lib';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { createHash } from 'node:crypto';

export interface WorkflowStateMachineProps {
  readonly definition: sfn.IChainable;
  /** Encrypts the definition, executions' data and history. */
  readonly key: kms.IKey;
  /** Default: one month. */
  readonly logRetention?: logs.RetentionDays;
  /**
   * The state machine's name (1 to 80 letters, digits, `-`, `_`). Default: `<stack name>-<workflow>`, e.g.
   * `VdiVault-backup`, with the ids of the constructs between the stack and `scope` (but `Default`) inserted
   * when there are any, so two vaults in one stack don't collide.
   */
  readonly stateMachineName?: string;
}

/** Step Functions' limit on a state machine's name. */
const NAME_LIMIT = 80;

/**
 * A Standard state machine encrypted with the customer-managed key, traced with X-Ray, logging every event
 * to CloudWatch without execution data (it holds session refs). Its id names the logical id: the local
 * runner finds the workflows by it (`BackupStateMachine…`, `RestoreStateMachine…`).
 *
 * It has an explicit name: the role's KMS grant is conditioned on
 * `kms:EncryptionContext:aws:states:stateMachineArn`, which CDK builds from the name, and without one the
 * condition names `…:stateMachine:` (no name) and the role can never use the key. The log group is named
 * under `/aws/vendedlogs/states/`, where CloudWatch Logs needs no resource policy entry per log group
 * (otherwise CreateStateMachine fails once the account's 5,120-character log resource policy is full).
 */
export function createWorkflowStateMachine(
  scope: Construct,
  id: string,
  props: WorkflowStateMachineProps,
): sfn.StateMachine {
  const stateMachineName = props.stateMachineName ?? defaultStateMachineName(scope, id);
  return new sfn.StateMachine(scope, id, {
    stateMachineName,
    definitionBody: sfn.DefinitionBody.fromChainable(props.definition),
    stateMachineType: sfn.StateMachineType.STANDARD,
    encryptionConfiguration: new sfn.CustomerManagedEncryptionConfiguration(props.key),
    tracingEnabled: true,
    logs: {
      destination: new logs.LogGroup(scope, `${id}Logs`, {
        logGroupName: vendedLogGroupName(stateMachineName),
        retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      }),
      level: sfn.LogLevel.ALL,
      includeExecutionData: false,
    },
  });
}

/** The prefix under which Step Functions' log groups need no CloudWatch Logs resource policy entry. */
export const VENDED_LOGS_PREFIX = '/aws/vendedlogs/states/';

/**
 * `/aws/vendedlogs/states/<state machine>-<first 8 hex digits of the stack id>`. The stack id part is new for
 * every creation of the stack: log groups are retained when a stack is deleted, and a fixed name would make
 * the next deployment of a stack of the same name fail ("already exists").
 */
function vendedLogGroupName(stateMachineName: string): string {
  const stackUuid = Fn.select(2, Fn.split('/', Aws.STACK_ID));
  return `${VENDED_LOGS_PREFIX}${stateMachineName}-${Fn.select(0, Fn.split('-', stackUuid))}`;
}

function defaultStateMachineName(scope: Construct, id: string): string {
  const stack = Stack.of(scope);
  const scopes = scope.node.scopes;
  const between = scopes
    .slice(scopes.indexOf(stack) + 1)
    .map((construct) => construct.node.id)
    .filter((part) => part !== 'Default');
  const workflow = id.replace(/StateMachine$/, '').toLowerCase() || id.toLowerCase();
  const name = [stack.stackName, ...between, workflow].join('-').replace(/[^A-Za-z0-9_-]/g, '-');
  if (Token.isUnresolved(stack.stackName) || name.length <= NAME_LIMIT) return name;
  // Too long (stack names go up to 128 characters): keep the start and the workflow, and a hash of the whole.
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  const keep = NAME_LIMIT - hash.length - workflow.length - 2;
  return `${name.slice(0, keep)}-${hash}-${workflow}`;
}
