import { Stack, Validations } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';

export interface AcknowledgedResources {
  /** The bucket we created (an existing bucket's ARN is a literal, not a logical id). */
  readonly bucket?: s3.Bucket;
  /** Or the name of the existing bucket we back up into. */
  readonly existingBucketName?: string;
  readonly prefix: string;
  readonly functions: readonly lambda.IFunction[];
  /** The functions run in a VPC (their roles get the managed VPC access policy). */
  readonly inVpc?: boolean;
  /** The Fargate transfer task definition the state machines run. */
  readonly transferTaskDefinition?: { node: { defaultChild?: unknown } };
}

/** Every cdk-nag finding we accept under `scope`, each with its reason. Anything not listed here fails synth. */
export function acknowledgeFindings(scope: Construct, resources: AcknowledgedResources): void {
  const stack = Stack.of(scope);
  const logicalId = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as Parameters<Stack['getLogicalId']>[0]);
  const acknowledge = (id: string, reason: string) => Validations.of(scope).acknowledge({ id, reason });

  if (resources.transferTaskDefinition) {
    const id = logicalId(resources.transferTaskDefinition);
    const part = (index: number) => `{"Fn::Select":[${index},{"Fn::Split":[":",{"Ref":"${id}"}]}]}`;
    const family = (index: number) =>
      `{"Fn::Select":[${index},{"Fn::Split":["/",{"Fn::Select":[5,{"Fn::Split":[":",{"Ref":"${id}"}]}]}]}]}`;
    acknowledge(
      `AwsSolutions-IAM5[Resource::arn:${part(1)}:${part(2)}:${part(3)}:${part(4)}:${family(0)}/${family(1)}:*]`,
      'Step Functions runs our own transfer task definition; the wildcard only covers its revisions.',
    );
    acknowledge(
      'AwsSolutions-ECS2',
      'The transfer container’s environment holds names only (bucket, prefix, pool URLs, secret ARNs, lock table); credentials are read from Secrets Manager at run time.',
    );
  }
  acknowledge(
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    'The managed basic execution role only lets a function write its own CloudWatch logs.',
  );
  if (resources.inVpc) {
    acknowledge(
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
      'The managed VPC access role only lets a function manage the network interfaces it runs on, and write its logs.',
    );
  }
  if (resources.bucket) {
    acknowledge(
      `AwsSolutions-IAM5[Resource::<${logicalId(resources.bucket)}.Arn>/${resources.prefix}/*]`,
      'Backup objects are named by backup id at run time; access is confined to the catalog prefix of our own bucket.',
    );
  }
  if (resources.existingBucketName) {
    acknowledge(
      `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${resources.existingBucketName}/${resources.prefix}/*]`,
      'Backup objects are named by backup id at run time; access is confined to the catalog prefix of the configured bucket.',
    );
  }
  for (const fn of resources.functions) {
    acknowledge(
      `AwsSolutions-IAM5[Resource::<${logicalId(fn)}.Arn>:*]`,
      'Step Functions invokes our own function and its versions; the wildcard only covers version qualifiers.',
    );
  }
  acknowledge(
    'AwsSolutions-IAM5[Resource::*]',
    'X-Ray trace segments and CloudWatch Logs delivery for Step Functions accept no resource narrower than *.',
  );
}

/** The operator managed policy's findings (`infra/constructs/operator-policy.ts`), on that policy only. */
export function acknowledgeOperatorPolicyFindings(
  policy: Construct,
  resources: { readonly stateMachineNames: readonly string[] },
): void {
  for (const name of resources.stateMachineNames) {
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${name}:*]`,
      reason:
        'Operators follow any execution of our own state machine (DescribeExecution, GetExecutionHistory); execution names are chosen at start, so only the name part is a wildcard.',
    });
  }
}

/** A dead-letter queue's findings, on that queue only. */
export function acknowledgeDeadLetterQueue(queue: Construct): void {
  Validations.of(queue).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason:
      'This queue is itself the dead-letter queue of EventBridge or Scheduler targets (their DeadLetterConfig, which cdk-nag does not see); a dead-letter queue of a dead-letter queue would only hide the same letters one level deeper. An alarm reports any message in it.',
  });
}
