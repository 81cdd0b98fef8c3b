import { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { TRANSFER_PROCESS_ENV } from '../../lambdas/transfer/process-env.ts';
import { fileURLToPath } from 'node:url';
import type { StepSpec, Workflow } from '../../lambdas/runtime/step-table.ts';

/** The environment variable naming the domain step a function runs; the local runner maps tasks by it. */
export const STEP_ENV = 'VDI_VAULT_STEP';

export interface StepFunctionProps {
  readonly workflow: Workflow;
  /** Its row of the step table: handler, memory, timeout. */
  readonly spec: StepSpec;
  /** Overrides the table's memory (MB). */
  readonly memorySize?: number;
  readonly environment?: Record<string, string>;
  /** Default: one week. */
  readonly logRetention?: logs.RetentionDays;
  /** Where the function runs. Default: the nearest `setStepFunctionDefaults` above it, else no VPC. */
  readonly network?: StepFunctionNetwork;
}

/** VPC placement of a step function (the pools' management interfaces are usually private). */
export interface StepFunctionNetwork {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly securityGroups: readonly ec2.ISecurityGroup[];
}

/** Settings every step function below a scope shares (the workflows create the functions themselves). */
export interface StepFunctionDefaults {
  /** Default: no VPC. */
  readonly network?: StepFunctionNetwork;
  /** Default: one week. */
  readonly logRetention?: logs.RetentionDays;
}

const DEFAULTS_CONTEXT = 'vdi-vault:step-function-defaults';

/**
 * Sets the defaults of every step function created below `scope`. Call it before adding children to
 * `scope` (construct context can only be set then).
 */
export function setStepFunctionDefaults(scope: Construct, defaults: StepFunctionDefaults): void {
  scope.node.setContext(DEFAULTS_CONTEXT, defaults);
}

function defaultsFor(scope: Construct): StepFunctionDefaults {
  return (scope.node.tryGetContext(DEFAULTS_CONTEXT) as StepFunctionDefaults | undefined) ?? {};
}

/**
 * A Lambda running one workflow step: Node.js 24 on arm64, X-Ray tracing, JSON logs, in the VPC when one is
 * set, bundled by the local esbuild (no Docker). Every step of a workflow shares its bundle
 * (`lambdas/handlers/<workflow>.ts`, one export per step) with its own role, environment and memory.
 */
export class StepFunction extends NodejsFunction {
  readonly spec: StepSpec;

  constructor(scope: Construct, props: StepFunctionProps) {
    const { workflow, spec } = props;
    const defaults = defaultsFor(scope);
    const network = props.network ?? defaults.network;
    const id = spec.functionId;
    super(scope, id, {
      entry: fileURLToPath(new URL(`../../lambdas/handlers/${workflow}.ts`, import.meta.url)),
      handler: spec.name,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      timeout: Duration.seconds(spec.timeoutSeconds),
      memorySize: props.memorySize ?? spec.memoryMiB,
      environment: { ...TRANSFER_PROCESS_ENV, ...props.environment, [STEP_ENV]: `${workflow}.${spec.name}` },
      logGroup: new logs.LogGroup(scope, `${id}Logs`, {
        retention: props.logRetention ?? defaults.logRetention ?? logs.RetentionDays.ONE_WEEK,
      }),
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      ...(network
        ? {
            vpc: network.vpc,
            vpcSubnets: network.subnets,
            securityGroups: [...network.securityGroups],
          }
        : {}),
      bundling: {
        format: OutputFormat.ESM,
        target: 'node24',
        minify: true,
        // Error names are what the workflows catch and operators read (VhdTruncatedError, not `g`).
        keepNames: true,
        sourceMap: false,
        mainFields: ['module', 'main'],
        // The AWS SDK is bundled: the runtime's copy has no documented version or module set (lib-storage).
        // undici's experimental Milo parser loads only when UNDICI_USE_MILO is set (we never set it).
        externalModules: ['./node_modules/undici/lib/milo/*'],
        // ESM bundles of CommonJS dependencies need a require().
        banner:
          "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      },
    });
    this.spec = spec;
  }
}
