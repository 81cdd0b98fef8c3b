import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';

/**
 * Lambda refused the invocation for lack of concurrency: the function did not run, so every step may be
 * invoked again, even one that can't be repeated safely. New accounts have low concurrency quotas.
 */
export const THROTTLED_ERRORS = ['Lambda.TooManyRequestsException'];

/**
 * Lambda service and SDK errors of an invocation (what CDK's `retryOnServiceExceptions` retries). The
 * function may have run, so only steps that can be repeated safely retry them.
 */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
];

/** Errors of our own a retry can cure: the network between us and the pool. */
export const TRANSIENT_ERRORS = ['XapiNetworkError'];

export interface LambdaStepOptions {
  /** Where the result goes. @default - it replaces the state (ASL's default; an explicit "$" trips aws-local-stepfunctions) */
  readonly resultPath?: string;
  /**
   * Retry Lambda's service errors and our transient ones with backoff. Off for steps that can't be repeated
   * safely (throttling is retried either way). @default true
   */
  readonly retry?: boolean;
  /** @default - the whole state */
  readonly payload?: sfn.TaskInput;
  /** Step Functions' own time limit (raises `States.Timeout`). @default - none */
  readonly timeout?: Duration;
}

/**
 * A workflow state invoking one step function with its plain input and output (`payloadResponseOnly`).
 * Its retriers, in order: throttling (every step), then for retryable steps Lambda's service errors and
 * `XapiNetworkError`. CDK's own service-exception retrier is off: it would retry steps documented as not
 * retried.
 */
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
    retryOnServiceExceptions: false,
    ...(options.resultPath && options.resultPath !== '$' ? { resultPath: options.resultPath } : {}),
    ...(options.payload ? { payload: options.payload } : {}),
    ...(options.timeout ? { taskTimeout: sfn.Timeout.duration(options.timeout) } : {}),
  });
  task.addRetry({
    errors: THROTTLED_ERRORS,
    interval: Duration.seconds(1),
    maxAttempts: 8,
    backoffRate: 2,
    maxDelay: Duration.seconds(60),
    jitterStrategy: sfn.JitterType.FULL,
  });
  if (options.retry !== false) {
    task.addRetry({
      errors: LAMBDA_SERVICE_ERRORS,
      interval: Duration.seconds(2),
      maxAttempts: 6,
      backoffRate: 2,
      maxDelay: Duration.seconds(60),
      jitterStrategy: sfn.JitterType.FULL,
    });
    task.addRetry({
      errors: TRANSIENT_ERRORS,
      interval: Duration.seconds(2),
      maxAttempts: 3,
      backoffRate: 2,
    });
  }
  return task;
}
