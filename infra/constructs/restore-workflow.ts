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

/** What a Fargate task importing a whole chain (merged, or every layer replayed) gets of the state. */
const WHOLE_CHAIN_FIELDS = [
  'pool',
  'vdi',
  'chain.backupId',
  'chain.chainKey',
  'chain.transferResultKey',
  'chain.layerCount',
  'execution',
];

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
      ['layer', 'chainKey', 'transferResultKey', 'pool', 'vdi', 'restorePoint', 'execution'],
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
          'execution.$': '$.execution',
        },
        maxConcurrency: 1,
        resultPath: '$.imported',
      }).itemProcessor(layerOnLambda),
    );

    const cleanup = catchToCleanup(invoke(f.cleanup, '$.cleanup'));
    const onFargate = (
      stateName: string,
      step: 'restore.importMerged' | 'restore.replayChain',
      collectState: string,
    ) => {
      const state = catchToCleanup(
        props.transfer.runState(this, stateName, step, '$.chain.transferResultKey', WHOLE_CHAIN_FIELDS),
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
    const logout = invoke(f.logout);
    cleanup.next(logout);

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

    const restoreVm = this.vmBranch(f, invoke, collect, failed, logout, props.transfer, transferTimeout);
    const kind = new sfn.Choice(this, 'RestoreKind', { stateName: 'RestoreKind' })
      .when(sfn.Condition.isPresent('$.vmRequest'), restoreVm)
      .otherwise(resolve.next(createVdi).next(strategy));
    // The execution's name, for its transfers' progress records (docs/design.md § Progress of deployed
    // transfers): after Validate, whose output replaces the input.
    const nameExecution = new sfn.Pass(this, 'RestoreExecution', {
      stateName: 'RestoreExecution',
      parameters: { 'name.$': '$$.Execution.Name' },
      resultPath: '$.execution',
    });
    this.definition = validate.next(nameExecution).next(login).next(kind);
  }

  /**
   * A VM restore (docs/design.md § VM restores): ResolveVm → CreateVm → a Map over the disks, one at a time,
   * each through the disk steps (its chain, a VDI, one merged stream on Lambda or Fargate, marked complete)
   * and attached in its slot → FinishVm → Logout. Any failure destroys the VM and the VDIs made for it.
   */
  private vmBranch(
    f: RestoreWorkflow['functions'],
    invoke: (target: StepFunction, resultPath?: string, timeout?: Duration) => sfn.TaskStateBase,
    collect: (stateName: string, keyPath: string, resultPath?: string) => sfn.TaskStateBase,
    failed: sfn.Fail,
    logout: sfn.TaskStateBase,
    transfer: TransferTask,
    transferTimeout: Duration,
  ): sfn.IChainable {
    const vmCleanup = invoke(f.vmFailureCleanup).next(failed);
    const catchToVmCleanup = <T extends sfn.TaskStateBase | sfn.Map>(state: T): T => {
      state.addCatch(vmCleanup, { resultPath: '$.failure' });
      return state;
    };
    const [, diskChainState] = f.resolveChain.spec.states as [string, string];
    const [, diskCreateState] = f.createVdi.spec.states as [string, string];
    const [, diskImportState] = f.importMerged.spec.states as [string, string];
    const [, diskDoneState] = f.cleanup.spec.states as [string, string];
    const collectDiskState = f.collectImport.spec.states[3]!;
    const diskStep = (stateName: string, target: StepFunction, resultPath?: string, timeout?: Duration) =>
      lambdaStep(this, stateName, target, {
        ...(resultPath ? { resultPath } : {}),
        retry: target.spec.retryable,
        ...(timeout ? { timeout } : {}),
      });
    const diskDone = diskStep(diskDoneState, f.cleanup, '$.cleanup');
    // Its result is the item's output: the disk, its new VDI and the bytes moved.
    diskDone.next(diskStep(f.attachVmDisk.spec.states[0]!, f.attachVmDisk));
    const diskOnFargate = transfer.runState(
      this,
      'VmDiskImportOnFargate',
      'restore.importMerged',
      '$.chain.transferResultKey',
      WHOLE_CHAIN_FIELDS,
    );
    diskOnFargate.next(collect(collectDiskState, '$.chain.transferResultKey', '$.imported').next(diskDone));
    const diskOnLambda = diskStep(diskImportState, f.importMerged, '$.imported', transferTimeout).addCatch(
      diskOnFargate,
      { errors: [...OUT_OF_LAMBDA_ERRORS], resultPath: '$.lambdaTimeout' },
    );
    diskOnLambda.next(diskDone);
    const diskRoute = new sfn.Choice(this, 'VmDiskRoute', { stateName: 'VmDiskRoute' })
      .when(sfn.Condition.stringEquals('$.chain.route', 'fargate'), diskOnFargate)
      .otherwise(diskOnLambda);
    const disks = catchToVmCleanup(
      new sfn.Map(this, 'RestoreVmDisks', {
        stateName: 'RestoreVmDisks',
        itemsPath: '$.vmPoint.disks',
        itemSelector: {
          'request.$': '$$.Map.Item.Value.request',
          'disk.$': '$$.Map.Item.Value',
          'pool.$': '$.pool',
          'startedAt.$': '$.startedAt',
          'session.$': '$.session',
          'vm.$': '$.vm',
          'execution.$': '$.execution',
        },
        maxConcurrency: 1,
        resultPath: '$.vmDisks',
      }).itemProcessor(
        diskStep(diskChainState, f.resolveChain, '$.chain')
          .next(diskStep(diskCreateState, f.createVdi, '$.vdi'))
          .next(diskRoute),
      ),
    );
    return catchToVmCleanup(invoke(f.resolveVm, '$.vmPoint'))
      .next(catchToVmCleanup(invoke(f.createVm, '$.vm')))
      .next(disks)
      .next(catchToVmCleanup(invoke(f.finishVm, '$.vmResult')))
      .next(logout);
  }
}
