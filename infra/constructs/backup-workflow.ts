import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { lambdaStep, type LambdaStepOptions } from './lambda-step.ts';
import { StepFunction } from './step-function.ts';
import type { TransferTask } from './transfer-task.ts';

export interface BackupWorkflowProps {
  /** Environment every step function gets (bucket, prefix, pools). */
  readonly environment: Record<string, string>;
  /** Memory of the export function: part size × parts in flight must fit. Default 1024 MB. */
  readonly exportMemorySize?: number;
  /** Where exports too large for a Lambda run (routed by Plan, or retried after a Lambda timeout). */
  readonly transfer: TransferTask;
}

/** Step Functions times an export out just before Lambda would, so the workflow sees `States.Timeout`. */
const EXPORT_STATE_TIMEOUT = Duration.seconds(870);

/**
 * The backup state machine: Login, then per VDI (in a Map) Plan → Snapshot → CreateTask → Export (on Lambda,
 * or on Fargate by size or after a Lambda timeout) → Commit → Cleanup with every failure caught by
 * FailureCleanup, then Logout, and a failed execution naming each VDI that failed.
 */
export class BackupWorkflow extends Construct {
  readonly definition: sfn.IChainable;
  readonly functions: Record<string, lambda.IFunction>;

  constructor(scope: Construct, id: string, props: BackupWorkflowProps) {
    super(scope, id);
    const fn = (name: string, step: string, extra: { timeout?: Duration; memorySize?: number } = {}) =>
      new StepFunction(this, name, { step: `backup.${step}`, environment: props.environment, ...extra });
    this.functions = {
      login: fn('LoginFunction', 'login'),
      plan: fn('PlanFunction', 'plan', { timeout: Duration.minutes(2) }),
      snapshot: fn('SnapshotFunction', 'snapshot', { timeout: Duration.minutes(5) }),
      createTask: fn('CreateTaskFunction', 'createTask'),
      export: fn('ExportFunction', 'export', {
        timeout: Duration.minutes(15),
        memorySize: props.exportMemorySize ?? 1024,
      }),
      prepareFargateRetry: fn('PrepareFargateRetryFunction', 'prepareFargateRetry'),
      collectExport: fn('CollectExportFunction', 'collectExport'),
      commit: fn('CommitFunction', 'commit'),
      cleanup: fn('CleanupFunction', 'cleanup', { timeout: Duration.minutes(5) }),
      failureCleanup: fn('FailureCleanupFunction', 'failureCleanup', { timeout: Duration.minutes(5) }),
      logout: fn('LogoutFunction', 'logout'),
    };
    const f = this.functions;

    const invoke = (stateName: string, target: lambda.IFunction, options: LambdaStepOptions) =>
      lambdaStep(this, stateName, target, options);

    const loginFailed = new sfn.Fail(this, 'LoginFailed', {
      stateName: 'LoginFailed',
      errorPath: '$.failure.Error',
      causePath: '$.failure.Cause',
    });
    const login = invoke('Login', f.login!, { resultPath: '$' }).addCatch(loginFailed, {
      resultPath: '$.failure',
    });

    const failureCleanup = invoke('FailureCleanup', f.failureCleanup!, { resultPath: '$' });
    const step = (stateName: string, target: lambda.IFunction, resultPath: string, retry = true) =>
      invoke(stateName, target, { resultPath, retry }).addCatch(failureCleanup, { resultPath: '$.failure' });

    // Exports run on Lambda unless Plan routes them to Fargate by their expected size; a Lambda export that
    // times out has its upload aborted and its task replaced, then runs once more on Fargate.
    const commit = step('Commit', f.commit!, '$.commit');
    const exportOnLambda = invoke('Export', f.export!, {
      resultPath: '$.export',
      retry: false,
      timeout: EXPORT_STATE_TIMEOUT,
    });
    const exportOnFargate = props.transfer
      .runState(this, 'ExportOnFargate', 'backup.export', '$.plan.transferResultKey')
      .addCatch(failureCleanup, { resultPath: '$.failure' });
    exportOnFargate.next(step('CollectExport', f.collectExport!, '$.export').next(commit));
    exportOnLambda
      .addCatch(step('PrepareFargateRetry', f.prepareFargateRetry!, '$.task').next(exportOnFargate), {
        errors: ['States.Timeout'],
        resultPath: '$.lambdaTimeout',
      })
      .addCatch(failureCleanup, { resultPath: '$.failure' })
      .next(commit);
    const routeExport = new sfn.Choice(this, 'RouteExport', { stateName: 'RouteExport' })
      .when(sfn.Condition.stringEquals('$.plan.route', 'fargate'), exportOnFargate)
      .otherwise(exportOnLambda);
    commit.next(step('Cleanup', f.cleanup!, '$'));

    // A retried snapshot could leave a twin behind; an export can't resume a stream: neither is retried.
    const perVdi = sfn.Chain.start(step('Plan', f.plan!, '$.plan'))
      .next(step('Snapshot', f.snapshot!, '$.snapshot', false))
      .next(step('CreateTask', f.createTask!, '$.task'))
      .next(routeExport);

    const eachVdi = new sfn.Map(this, 'BackupEachVdi', {
      stateName: 'BackupEachVdi',
      itemsPath: '$.vdiUuids',
      itemSelector: {
        'vdiUuid.$': '$$.Map.Item.Value',
        'pool.$': '$.pool',
        'mode.$': '$.mode',
        'retention.$': '$.retention',
        'executionId.$': '$$.Execution.Name',
        'session.$': '$.session',
      },
      // Per execution: Login sets it from the input (a job's concurrency) or the deployment's default.
      maxConcurrencyPath: '$.concurrency',
      resultPath: '$.outcomes',
    }).itemProcessor(perVdi);

    const logout = invoke('Logout', f.logout!, {
      resultPath: '$',
      payload: sfn.TaskInput.fromObject({
        'pool.$': '$.pool',
        'session.$': '$.session',
        'outcomes.$': '$.outcomes',
      }),
    });
    const someFailed = new sfn.Fail(this, 'BackupFailed', {
      stateName: 'BackupFailed',
      errorPath: '$.error',
      causePath: '$.cause',
    });
    const verdict = new sfn.Choice(this, 'AnyVdiFailed', { stateName: 'AnyVdiFailed' })
      .when(sfn.Condition.numberGreaterThan('$.failed', 0), someFailed)
      .otherwise(new sfn.Succeed(this, 'BackupSucceeded', { stateName: 'BackupSucceeded' }));

    this.definition = login.next(eachVdi).next(logout).next(verdict);
  }
}
