import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
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

/** Step Functions times an import out just before Lambda would, so the workflow sees `States.Timeout`. */
const IMPORT_STATE_TIMEOUT = Duration.seconds(870);

/**
 * The restore state machine: Validate → Login → ResolveChain → CreateVdi → Import (replay each layer in a
 * Map running one at a time, or one merged stream) → Cleanup → Logout. Any failure after login destroys the
 * partial VDI (unless keepPartial) and logs out before the execution fails with the cause.
 */
export class RestoreWorkflow extends Construct {
  readonly definition: sfn.IChainable;
  readonly functions: Record<string, lambda.IFunction>;

  constructor(scope: Construct, id: string, props: RestoreWorkflowProps) {
    super(scope, id);
    const fn = (name: string, step: string, extra: { timeout?: Duration; memorySize?: number } = {}) =>
      new StepFunction(this, name, { step: `restore.${step}`, environment: props.environment, ...extra });
    const importOptions = { timeout: Duration.minutes(15), memorySize: props.importMemorySize ?? 1024 };
    this.functions = {
      validate: fn('ValidateFunction', 'validate'),
      login: fn('LoginFunction', 'login'),
      resolveChain: fn('ResolveChainFunction', 'resolveChain', { timeout: Duration.minutes(2) }),
      createVdi: fn('CreateVdiFunction', 'createVdi'),
      importLayer: fn('ImportLayerFunction', 'importLayer', importOptions),
      importMerged: fn('ImportMergedFunction', 'importMerged', importOptions),
      collectImport: fn('CollectImportFunction', 'collectImport'),
      cleanup: fn('CleanupFunction', 'cleanup'),
      logout: fn('LogoutFunction', 'logout'),
      failureCleanup: fn('FailureCleanupFunction', 'failureCleanup', { timeout: Duration.minutes(5) }),
    };
    const f = this.functions;

    const invoke = (
      stateName: string,
      target: lambda.IFunction,
      resultPath?: string,
      retry = true,
      timeout?: Duration,
    ) =>
      lambdaStep(this, stateName, target, {
        ...(resultPath ? { resultPath } : {}),
        retry,
        ...(timeout ? { timeout } : {}),
      });

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
    const failureCleanup = invoke('RestoreFailureCleanup', f.failureCleanup!).next(failed);
    const catchToCleanup = <T extends sfn.TaskStateBase | sfn.Map>(state: T): T => {
      state.addCatch(failureCleanup, { resultPath: '$.failure' });
      return state;
    };

    const validate = invoke('Validate', f.validate!, undefined, false).addCatch(failBeforeLogin, {
      resultPath: '$.failure',
    });
    const login = invoke('RestoreLogin', f.login!, '$.session').addCatch(failBeforeLogin, {
      resultPath: '$.failure',
    });
    const resolve = catchToCleanup(invoke('ResolveChain', f.resolveChain!, '$.chain'));
    const createVdi = catchToCleanup(invoke('CreateVdi', f.createVdi!, '$.vdi', false));

    // Streams can't be resumed, so imports are not retried; a failure destroys the VDI and fails. Each import
    // runs on Lambda unless ResolveChain routed it to Fargate by size; a Lambda import that times out runs
    // once more on Fargate (an import is idempotent: it writes the same blocks again).
    const collect = (stateName: string, keyPath: string, resultPath?: string) =>
      lambdaStep(this, stateName, f.collectImport!, {
        payload: sfn.TaskInput.fromObject({ 'transferResultKey.$': keyPath }),
        ...(resultPath ? { resultPath } : {}),
      });
    const layerOnFargate = props.transfer.runState(
      this,
      'ImportLayerOnFargate',
      'restore.importLayer',
      '$.layer.transferResultKey',
    );
    layerOnFargate.next(collect('CollectImportLayer', '$.layer.transferResultKey'));
    const layerOnLambda = invoke(
      'ImportLayer',
      f.importLayer!,
      undefined,
      false,
      IMPORT_STATE_TIMEOUT,
    ).addCatch(layerOnFargate, { errors: ['States.Timeout'], resultPath: '$.lambdaTimeout' });
    const replay = catchToCleanup(
      new sfn.Map(this, 'ReplayLayers', {
        stateName: 'ReplayLayers',
        itemsPath: '$.chain.layers',
        itemSelector: {
          'layer.$': '$$.Map.Item.Value',
          'pool.$': '$.pool',
          'session.$': '$.session',
          'vdi.$': '$.vdi',
          'restorePoint.$': '$.chain.backupId',
        },
        maxConcurrency: 1,
        resultPath: '$.imported',
      }).itemProcessor(
        new sfn.Choice(this, 'RouteLayer', { stateName: 'RouteLayer' })
          .when(sfn.Condition.stringEquals('$.layer.route', 'fargate'), layerOnFargate)
          .otherwise(layerOnLambda),
      ),
    );

    const cleanup = catchToCleanup(invoke('RestoreCleanup', f.cleanup!, '$.cleanup'));
    const mergedOnFargate = catchToCleanup(
      props.transfer.runState(
        this,
        'ImportMergedOnFargate',
        'restore.importMerged',
        '$.chain.transferResultKey',
      ),
    );
    mergedOnFargate.next(
      catchToCleanup(collect('CollectImportMerged', '$.chain.transferResultKey', '$.imported')).next(cleanup),
    );
    const mergedOnLambda = invoke('ImportMerged', f.importMerged!, '$.imported', false, IMPORT_STATE_TIMEOUT)
      .addCatch(mergedOnFargate, { errors: ['States.Timeout'], resultPath: '$.lambdaTimeout' })
      .addCatch(failureCleanup, { resultPath: '$.failure' });
    mergedOnLambda.next(cleanup);
    replay.next(cleanup);
    cleanup.next(invoke('RestoreLogout', f.logout!));

    const strategy = new sfn.Choice(this, 'Strategy', { stateName: 'Strategy' })
      .when(sfn.Condition.stringEquals('$.request.strategy', 'replay'), replay)
      .when(sfn.Condition.stringEquals('$.chain.route', 'fargate'), mergedOnFargate)
      .otherwise(mergedOnLambda);

    this.definition = validate.next(login).next(resolve).next(createVdi).next(strategy);
  }
}
