import { Duration } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import {
  type StepSpec,
  OUT_OF_LAMBDA_ERRORS,
  RESTORE_STEPS,
  TRANSFER_STATE_TIMEOUT_SECONDS,
} from '../../lambdas/runtime/step-table.ts';
import { lambdaStep } from './lambda-step.ts';
import { StepFunction } from './step-function.ts';
import type { TransferTask } from './transfer-task.ts';

export interface RestoreWorkflowProps {
  /** Environment every step function gets (bucket, prefix, pools). */
  readonly environment: Record<string, string>;
  /** Memory of the import functions. Default 1024 MB. */
  readonly importMemorySize?: number;
  /** Where imports too large for a Lambda run (routed by ResolveChain, or retried after a Lambda timeout). */
  readonly transfer: TransferTask;
}

/**
 * The restore state machine: Validate → Login → ResolveChain → CreateVdi → Import (replay each layer in a
 * Map running one at a time, or one merged stream) → Cleanup → Logout. Any failure after login destroys the
 * partial VDI (unless keepPartial) and logs out before the execution fails with the cause.
 */
export class RestoreWorkflow extends Construct {
  readonly definition: sfn.IChainable;
  readonly functions: Readonly<Record<Exclude<keyof typeof RESTORE_STEPS, 'replayChain'>, StepFunction>>;

  constructor(scope: Construct, id: string, props: RestoreWorkflowProps) {
    super(scope, id);
    const functions: Record<string, StepFunction> = {};
    for (const [name, spec] of Object.entries(RESTORE_STEPS) as [string, StepSpec][]) {
      if (spec.fargateOnly) continue;
      functions[name] = new StepFunction(this, {
        workflow: 'restore',
        spec,
        environment: props.environment,
        ...(spec.transfer && props.importMemorySize ? { memorySize: props.importMemorySize } : {}),
      });
    }
    const f = functions as Record<Exclude<keyof typeof RESTORE_STEPS, 'replayChain'>, StepFunction>;
    this.functions = f;

    // State names and whether a step may be retried come from the step table.
    const invoke = (target: StepFunction, resultPath?: string, timeout?: Duration) =>
      lambdaStep(this, target.spec.states[0]!, target, {
        ...(resultPath ? { resultPath } : {}),
        retry: target.spec.retryable,
        ...(timeout ? { timeout } : {}),
      });
    const transferTimeout = Duration.seconds(TRANSFER_STATE_TIMEOUT_SECONDS);

    const failBeforeLogin = new sfn.Fail(this, 'RestoreRefused', {
      stateName: 'RestoreRefused',
      errorPath: '$.failure.Error',
      causePath: '$.failure.Cause',
    });
    const failed = new sfn.Fail(this, 'RestoreFailed', {
      stateName: 'RestoreFailed',
      errorPath: '$.error',
      causePath: '$.cause',
    });
    const failureCleanup = invoke(f.failureCleanup).next(failed);
    const catchToCleanup = <T extends sfn.TaskStateBase | sfn.Map>(state: T): T => {
      state.addCatch(failureCleanup, { resultPath: '$.failure' });
      return state;
    };

    const validate = invoke(f.validate).addCatch(failBeforeLogin, {
      resultPath: '$.failure',
    });
    const login = invoke(f.login, '$.session').addCatch(failBeforeLogin, {
      resultPath: '$.failure',
    });
    const resolve = catchToCleanup(invoke(f.resolveChain, '$.chain'));
    const createVdi = catchToCleanup(invoke(f.createVdi, '$.vdi'));

    // Streams can't be resumed, so imports are not retried; a failure destroys the VDI and fails. A replay
    // imports each layer on Lambda, or every layer in one Fargate task when ResolveChain found a layer too
    // large for a Lambda; a merge runs where its size says. A Lambda import that runs out of time or memory
    // runs once more on Fargate (an import is idempotent: it writes the same blocks again). Fargate gets the
    // chain's key, never its layers (design.md, AWS limits).
    const [collectLayerState, collectMergedState, collectReplayState] = f.collectImport.spec.states as [
      string,
      string,
      string,
    ];
    const collect = (stateName: string, keyPath: string, resultPath?: string) =>
      lambdaStep(this, stateName, f.collectImport, {
        payload: sfn.TaskInput.fromObject({ 'transferResultKey.$': keyPath }),
        ...(resultPath ? { resultPath } : {}),
      });
    const layerOnFargate = props.transfer.runState(
      this,
      'ImportLayerOnFargate',
      'restore.importLayer',
      '$.transferResultKey',
      ['layer', 'chainKey', 'transferResultKey', 'pool', 'vdi', 'restorePoint'],
    );
    layerOnFargate.next(collect(collectLayerState, '$.transferResultKey'));
    const layerOnLambda = invoke(f.importLayer, undefined, transferTimeout).addCatch(layerOnFargate, {
      errors: [...OUT_OF_LAMBDA_ERRORS],
      resultPath: '$.lambdaTimeout',
    });
    const replayOnLambda = catchToCleanup(
      new sfn.Map(this, 'ReplayLayers', {
        stateName: 'ReplayLayers',
        itemsPath: '$.chain.layers',
        itemSelector: {
          'layer.$': '$$.Map.Item.Value',
          'chainKey.$': '$.chain.chainKey',
          'transferResultKey.$': '$.chain.transferResultKey',
          'pool.$': '$.pool',
          'session.$': '$.session',
          'vdi.$': '$.vdi',
          'restorePoint.$': '$.chain.backupId',
        },
        maxConcurrency: 1,
        resultPath: '$.imported',
      }).itemProcessor(layerOnLambda),
    );

    const wholeChainFields = [
      'pool',
      'vdi',
      'chain.backupId',
      'chain.chainKey',
      'chain.transferResultKey',
      'chain.layerCount',
    ];
    const cleanup = catchToCleanup(invoke(f.cleanup, '$.cleanup'));
    const onFargate = (
      stateName: string,
      step: 'restore.importMerged' | 'restore.replayChain',
      collectState: string,
    ) => {
      const state = catchToCleanup(
        props.transfer.runState(this, stateName, step, '$.chain.transferResultKey', wholeChainFields),
      );
      state.next(
        catchToCleanup(collect(collectState, '$.chain.transferResultKey', '$.imported')).next(cleanup),
      );
      return state;
    };
    const mergedOnFargate = onFargate('ImportMergedOnFargate', 'restore.importMerged', collectMergedState);
    const replayOnFargate = onFargate(
      RESTORE_STEPS.replayChain.states[0]!,
      'restore.replayChain',
      collectReplayState,
    );
    const mergedOnLambda = invoke(f.importMerged, '$.imported', transferTimeout)
      .addCatch(mergedOnFargate, { errors: [...OUT_OF_LAMBDA_ERRORS], resultPath: '$.lambdaTimeout' })
      .addCatch(failureCleanup, { resultPath: '$.failure' });
    mergedOnLambda.next(cleanup);
    replayOnLambda.next(cleanup);
    cleanup.next(invoke(f.logout));

    const strategy = new sfn.Choice(this, 'Strategy', { stateName: 'Strategy' })
      .when(
        sfn.Condition.and(
          sfn.Condition.stringEquals('$.request.strategy', 'replay'),
          sfn.Condition.stringEquals('$.chain.replayRoute', 'fargate'),
        ),
        replayOnFargate,
      )
      .when(sfn.Condition.stringEquals('$.request.strategy', 'replay'), replayOnLambda)
      .when(sfn.Condition.stringEquals('$.chain.route', 'fargate'), mergedOnFargate)
      .otherwise(mergedOnLambda);

    this.definition = validate.next(login).next(resolve).next(createVdi).next(strategy);
  }
}
