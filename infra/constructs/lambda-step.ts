import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';

/** Errors a retry can cure: the network between us and the pool. (Lambda's own are retried by CDK.) */
const TRANSIENT_ERRORS = ['XapiNetworkError'];

export interface LambdaStepOptions {
  /** Where the result goes. @default - it replaces the state (ASL's default; an explicit "$" trips aws-local-stepfunctions) */
  readonly resultPath?: string;
  /** Retry transient errors with backoff. Off for steps that can't be repeated safely. @default true */
  readonly retry?: boolean;
  /** @default - the whole state */
  readonly payload?: sfn.TaskInput;
  /** Step Functions' own time limit (raises `States.Timeout`). @default - none */
  readonly timeout?: Duration;
}

/** A workflow state invoking one step function with its plain input and output (`payloadResponseOnly`). */
export function lambdaStep(
  scope: Construct,
  stateName: string,
  target: lambda.IFunction,
  options: LambdaStepOptions = {},
): tasks.LambdaInvoke {
  const task = new tasks.LambdaInvoke(scope, stateName, {
    stateName,
    lambdaFunction: target,
    payloadResponseOnly: true,
    ...(options.resultPath && options.resultPath !== '$' ? { resultPath: options.resultPath } : {}),
    ...(options.payload ? { payload: options.payload } : {}),
    ...(options.timeout ? { taskTimeout: sfn.Timeout.duration(options.timeout) } : {}),
  });
  if (options.retry !== false) {
    task.addRetry({
      errors: TRANSIENT_ERRORS,
      interval: Duration.seconds(2),
      maxAttempts: 3,
      backoffRate: 2,
    });
  }
  return task;
}
