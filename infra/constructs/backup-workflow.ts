import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { Duration } from 'aws-cdk-lib';
import {
  type StepSpec,
  BACKUP_STEPS,
  OUT_OF_LAMBDA_ERRORS,
  TRANSFER_STATE_TIMEOUT_SECONDS,
} from '../../lambdas/runtime/step-table.ts';
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

/**
 * The backup state machine: Login, SnapshotVms (the VMs chosen by uuid or tag, each snapshotted whole), then
 * per disk (in a Map) Plan → Snapshot → CreateTask → Export (on Lambda, or on Fargate by size or after a
 * Lambda timeout) → Commit → Merge (forever incremental; on Fargate when large) → Cleanup with every
 * failure before the commit caught by FailureCleanup, then CommitVms (each VM's
 * restore point), Logout, and a failed execution naming each VDI and VM that failed.
 */
export class BackupWorkflow extends Construct {
  readonly definition: sfn.IChainable;
  readonly functions: Readonly<Record<keyof typeof BACKUP_STEPS, StepFunction>>;

  constructor(scope: Construct, id: string, props: BackupWorkflowProps) {
    super(scope, id);
    const functions: Record<string, StepFunction> = {};
    for (const [name, spec] of Object.entries(BACKUP_STEPS) as [string, StepSpec][]) {
      if (spec.fargateOnly) continue;
      functions[name] = new StepFunction(this, {
        workflow: 'backup',
        spec,
        environment: props.environment,
        ...(spec.transfer && props.exportMemorySize ? { memorySize: props.exportMemorySize } : {}),
      });
    }
    const f = functions as Record<keyof typeof BACKUP_STEPS, StepFunction>;
    this.functions = f;

    // State names and whether a step may be retried come from the step table.
    const invoke = (target: StepFunction, options: LambdaStepOptions, stateName = target.spec.states[0]!) =>
      lambdaStep(this, stateName, target, { retry: target.spec.retryable, ...options });

    const loginFailed = new sfn.Fail(this, 'LoginFailed', {
      stateName: 'LoginFailed',
      errorPath: '$.failure.Error',
      causePath: '$.failure.Cause',
    });
    const login = invoke(f.login, { resultPath: '$' }).addCatch(loginFailed, {
      resultPath: '$.failure',
    });

    const failureCleanup = invoke(f.failureCleanup, { resultPath: '$' });
    const step = (target: StepFunction, resultPath: string) =>
      invoke(target, { resultPath }).addCatch(failureCleanup, { resultPath: '$.failure' });

    // Exports run on Lambda unless Plan routes them to Fargate by their expected size; a Lambda export that
    // times out has its upload aborted and its task replaced, then runs once more on Fargate.
    const commit = step(f.commit, '$.commit');
    const exportOnLambda = invoke(f.export, {
      resultPath: '$.export',
      timeout: Duration.seconds(TRANSFER_STATE_TIMEOUT_SECONDS),
    });
    const exportOnFargate = props.transfer
      .runState(this, 'ExportOnFargate', 'backup.export', '$.plan.transferResultKey', [
        'pool',
        'vdiUuid',
        'executionId',
        'plan',
        'snapshot',
        'task',
      ])
      .addCatch(failureCleanup, { resultPath: '$.failure' });
    exportOnFargate.next(step(f.collectExport, '$.export').next(commit));
    exportOnLambda
      .addCatch(step(f.prepareFargateRetry, '$.task').next(exportOnFargate), {
        errors: [...OUT_OF_LAMBDA_ERRORS],
        resultPath: '$.lambdaTimeout',
      })
      .addCatch(failureCleanup, { resultPath: '$.failure' })
      .next(commit);
    const routeExport = new sfn.Choice(this, 'RouteExport', { stateName: 'RouteExport' })
      .when(sfn.Condition.stringEquals('$.plan.route', 'fargate'), exportOnFargate)
      .otherwise(exportOnLambda);
    // Forever incremental: Merge (on Lambda, or routed to Fargate for a large read-back) never fails the
    // backup; even its Lambda or task failing outright goes on to Cleanup, which reports it.
    const cleanup = step(f.cleanup, '$');
    const mergeFailed = { resultPath: '$.mergeFailure' };
    const mergeOnLambda = invoke(f.merge, {
      resultPath: '$.merge',
      timeout: Duration.seconds(TRANSFER_STATE_TIMEOUT_SECONDS),
    });
    const mergeOnFargate = props.transfer
      .runState(this, 'MergeOnFargate', 'backup.merge', '$.plan.transferResultKey', [
        'pool',
        'vdiUuid',
        'executionId',
        'plan',
        'retention',
        'merge',
      ])
      .addCatch(cleanup, mergeFailed);
    mergeOnFargate.next(
      invoke(f.collectMerge, { resultPath: '$.merge' }).addCatch(cleanup, mergeFailed).next(cleanup),
    );
    // A Lambda out of time or memory: the same merge on Fargate (it first aborts the upload left behind).
    mergeOnLambda
      .addCatch(
        new sfn.Pass(this, 'MergeOutOfLambda', {
          stateName: 'MergeOutOfLambda',
          parameters: { status: 'routed', routeReason: 'the Merge Lambda ran out of time or memory' },
          resultPath: '$.merge',
        }).next(mergeOnFargate),
        { errors: [...OUT_OF_LAMBDA_ERRORS], resultPath: '$.lambdaTimeout' },
      )
      .addCatch(cleanup, mergeFailed);
    mergeOnLambda.next(
      new sfn.Choice(this, 'RouteMerge', { stateName: 'RouteMerge' })
        .when(sfn.Condition.stringEquals('$.merge.status', 'routed'), mergeOnFargate)
        .otherwise(cleanup),
    );
    commit.next(mergeOnLambda);

    const perVdi = sfn.Chain.start(step(f.plan, '$.plan'))
      .next(step(f.snapshot, '$.snapshot'))
      .next(step(f.createTask, '$.task'))
      .next(routeExport);

    const eachVdi = new sfn.Map(this, 'BackupEachVdi', {
      stateName: 'BackupEachVdi',
      itemsPath: '$.selection.items',
      itemSelector: {
        'vdiUuid.$': '$$.Map.Item.Value.vdiUuid',
        'vmUuid.$': '$$.Map.Item.Value.vmUuid',
        'presetSnapshot.$': '$$.Map.Item.Value.presetSnapshot',
        'pool.$': '$.pool',
        'mode.$': '$.mode',
        'retention.$': '$.retention',
        'executionId.$': '$$.Execution.Name',
        'session.$': '$.session',
        // Login sets it (null without a job): each disk's metrics name the job.
        'job.$': '$.job',
      },
      // Per execution: Login sets it from the input (a job's concurrency) or the deployment's default.
      maxConcurrencyPath: '$.concurrency',
      resultPath: '$.outcomes',
    }).itemProcessor(perVdi);

    const logout = invoke(f.logout, {
      resultPath: '$',
      payload: sfn.TaskInput.fromObject({
        'pool.$': '$.pool',
        'session.$': '$.session',
        'outcomes.$': '$.outcomes',
        'vmOutcomes.$': '$.vmOutcomes',
      }),
    });
    // SnapshotVms removes what it made before it fails, CommitVms turns each VM's trouble into its
    // outcome: what is left is to log out and fail the run with that failure.
    const logoutAfterFailure = invoke(
      f.logout,
      {
        resultPath: '$',
        payload: sfn.TaskInput.fromObject({
          'pool.$': '$.pool',
          'session.$': '$.session',
          'failure.$': '$.failure',
        }),
      },
      f.logout.spec.states[1],
    );
    const snapshotVms = invoke(f.snapshotVms, {
      resultPath: '$.selection',
      payload: sfn.TaskInput.fromObject({
        'pool.$': '$.pool',
        'session.$': '$.session',
        'vdiUuids.$': '$.vdiUuids',
        'vmUuids.$': '$.vmUuids',
        'tags.$': '$.tags',
        'executionId.$': '$$.Execution.Name',
      }),
    }).addCatch(logoutAfterFailure, { resultPath: '$.failure' });
    const commitVms = invoke(f.commitVms, {
      resultPath: '$.vmOutcomes',
      payload: sfn.TaskInput.fromObject({
        'pool.$': '$.pool',
        'session.$': '$.session',
        'executionId.$': '$$.Execution.Name',
        'vms.$': '$.selection.vms',
        'outcomes.$': '$.outcomes',
      }),
    }).addCatch(logoutAfterFailure, { resultPath: '$.failure' });
    const someFailed = new sfn.Fail(this, 'BackupFailed', {
      stateName: 'BackupFailed',
      errorPath: '$.error',
      causePath: '$.cause',
    });
    const verdict = new sfn.Choice(this, 'AnyVdiFailed', { stateName: 'AnyVdiFailed' })
      .when(sfn.Condition.numberGreaterThan('$.failed', 0), someFailed)
      .otherwise(new sfn.Succeed(this, 'BackupSucceeded', { stateName: 'BackupSucceeded' }));

    logoutAfterFailure.next(verdict);
    this.definition = login.next(snapshotVms).next(eachVdi).next(commitVms).next(logout).next(verdict);
  }
}
