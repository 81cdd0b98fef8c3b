import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';

export interface WorkflowStateMachineProps {
  readonly definition: sfn.IChainable;
  /** Encrypts the definition, executions' data and history. */
  readonly key: kms.IKey;
  /** Default: one month. */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * A Standard state machine encrypted with the customer-managed key, traced with X-Ray, logging every event
 * to CloudWatch without execution data (it holds session refs). Its id names the logical id: the local
 * runner finds the workflows by it (`BackupStateMachine…`, `RestoreStateMachine…`).
 */
export function createWorkflowStateMachine(
  scope: Construct,
  id: string,
  props: WorkflowStateMachineProps,
): sfn.StateMachine {
  return new sfn.StateMachine(scope, id, {
    definitionBody: sfn.DefinitionBody.fromChainable(props.definition),
    stateMachineType: sfn.StateMachineType.STANDARD,
    encryptionConfiguration: new sfn.CustomerManagedEncryptionConfiguration(props.key),
    tracingEnabled: true,
    logs: {
      destination: new logs.LogGroup(scope, `${id}Logs`, {
        retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      }),
      level: sfn.LogLevel.ALL,
      includeExecutionData: false,
    },
  });
}
