import { Stack, Validations } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';

export interface AcknowledgedResources {
  readonly bucket: s3.Bucket;
  readonly prefix: string;
  readonly functions: readonly lambda.IFunction[];
}

/** Every cdk-nag finding we accept, each with its reason. Anything not listed here fails synth. */
export function acknowledgeFindings(stack: Stack, resources: AcknowledgedResources): void {
  const logicalId = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as Parameters<Stack['getLogicalId']>[0]);
  const acknowledge = (id: string, reason: string) => Validations.of(stack).acknowledge({ id, reason });

  acknowledge(
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    'The managed basic execution role only lets a function write its own CloudWatch logs.',
  );
  acknowledge(
    `AwsSolutions-IAM5[Resource::<${logicalId(resources.bucket)}.Arn>/${resources.prefix}/*]`,
    'Backup objects are named by backup id at run time; access is confined to the catalog prefix of our own bucket.',
  );
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
