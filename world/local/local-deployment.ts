/**
 * The stack as deployed, run locally: the synthesized template's functions in a local Lambda service with
 * their own environment and roles, the transfer task as a child process with the task definition's
 * environment, the state machines with their own roles, and every AWS call going through a gateway that
 * evaluates it against the template's IAM policies (docs/design.md, "The local world runs what AWS
 * runs"). Only endpoints differ from AWS: S3 (Swift or the embedded server), DynamoDB (dynalite), Secrets
 * Manager (a loopback server holding the pool credentials), the pool (the simulator).
 */
import { DEFAULT_CATALOG_PREFIX } from '../../lambdas/runtime/defaults.ts';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_ACCOUNT, LocalStack, type Template } from './aws/account.ts';
import { startAwsGateway, type AwsCall, type AwsGateway } from './aws/gateway.ts';
import { startSecretsServer, type SecretsServer } from './aws/secrets-server.ts';
import { startLockTable } from './lock-table.ts';
import { startLambdaService, type LocalFunction, type LocalLambdaService } from './lambda-service.ts';
import type { LocalTarget } from './local-target.ts';
import { runWorkflow, type WorkflowEvent, type WorkflowRun } from './run-workflow.ts';
import {
  bundledCode,
  synthesizeApp,
  visitStates,
  type BundledCode,
  type SynthesizedApp,
  type SynthesizedWorkflow,
} from './synthesized-workflows.ts';
import { STEP_ENV } from '../../infra/constructs/step-function.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const CONTAINER_ENTRY = join(ROOT, 'lambdas/container/main.ts');
const GiB = 1024 ** 3;
/** The pool URL the template is synthesized with; the local world points it at the simulator. */
const PLACEHOLDER_POOL_URL = 'https://pool.invalid';

/** Step Functions' limit on a state's input or output, and ECS's on a RunTask's overrides. */
export const STATE_PAYLOAD_LIMIT = 256 * 1024;
export const ECS_OVERRIDES_LIMIT = 8192;

export interface LocalDeployment {
  readonly stack: LocalStack;
  readonly gateway: AwsGateway;
  readonly lambdas: LocalLambdaService;
  runBackup(input: unknown, onEvent?: (event: WorkflowEvent) => void): Promise<WorkflowRun>;
  runRestore(input: unknown, onEvent?: (event: WorkflowEvent) => void): Promise<WorkflowRun>;
  close(): Promise<void>;
}

/** The configuration the local template is synthesized with: what the target decides, nothing else. */
export function localConfig(target: LocalTarget): unknown {
  const pool = target.pool ?? 'local';
  return {
    pools: [{ name: pool, url: PLACEHOLDER_POOL_URL, secret: `vdi-vault/${pool}` }],
    prefix: target.prefix ?? DEFAULT_CATALOG_PREFIX,
    ...(target.routing?.fargateThresholdBytes !== undefined
      ? { fargateThresholdGiB: target.routing.fargateThresholdBytes / GiB }
      : {}),
    ...(target.stallTimeoutMs ? { stallTimeoutSeconds: target.stallTimeoutMs / 1000 } : {}),
  };
}

/** Starts the local deployment of a target: synthesized, with its own secrets, lock table and gateway. */
export async function deployLocally(
  target: LocalTarget,
  options: {
    /** A synthesized app; with `assemblyDir`, its functions run from their assets in that `cdk.out`. */
    app?: SynthesizedApp;
    /** `bundled` (default): the bundles `cdk synth` makes; `source`: the TypeScript entries (debugging). */
    code?: 'bundled' | 'source';
  } = {},
): Promise<LocalDeployment> {
  const app = options.app ?? synthesizeApp(localConfig(target));
  const code: CodeLocation = app.assemblyDir
    ? { kind: 'assembly', dir: app.assemblyDir }
    : options.code === 'source'
      ? { kind: 'source' }
      : { kind: 'bundles', bundles: await bundledCode() };
  const template = app.template as unknown as Template;
  const bucketId = logicalIdOf(template, 'AWS::S3::Bucket', (id) => id.startsWith('Backups'));
  const tableId = logicalIdOf(template, 'AWS::DynamoDB::Table');
  const closers: (() => Promise<unknown>)[] = [];

  let lockEndpoint = target.lockTable?.endpoint;
  let tableName = target.lockTable?.tableName;
  if (!lockEndpoint || !tableName) {
    const locks = await startLockTable();
    closers.push(() => locks.close());
    lockEndpoint = locks.endpoint;
    tableName = locks.table.tableName;
  }

  const stack = new LocalStack(template, {
    ...(bucketId ? { [bucketId]: { ref: target.bucket } } : {}),
    ...(tableId ? { [tableId]: { ref: tableName } } : {}),
  });

  const secrets: SecretsServer = await startSecretsServer();
  closers.push(() => secrets.close());
  const pool = target.pool ?? 'local';
  secrets.putSecret(
    `vdi-vault/${pool}`,
    JSON.stringify({ username: target.xapi.username, password: target.xapi.password }),
  );

  const gateway = await startAwsGateway({
    stack,
    backends: {
      ...(target.s3.endpoint ? { s3: target.s3.endpoint } : { s3: '' }),
      dynamodb: lockEndpoint,
      secretsmanager: secrets.url,
    },
  });
  closers.push(() => gateway.close());
  if (target.onExportProgress || target.onImportProgress) reportTransfers(gateway, target);

  const functions = new Map<string, LocalFunction>();
  const scratch: string[] = [];
  closers.push(async () => {
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });
  for (const [logicalId, resource] of stack.resourcesOfType('AWS::Lambda::Function')) {
    const properties = resource.Properties ?? {};
    const roleArn = stack.resolve(properties.Role) as string;
    const templateEnv = stack.resolve(
      (properties.Environment as { Variables?: unknown } | undefined)?.Variables ?? {},
    ) as Record<string, string>;
    const step = templateEnv[STEP_ENV];
    if (!step) continue; // not a step function (e.g. CDK's own custom-resource handlers)
    const functionName = stack.ref(logicalId);
    const memoryMiB = Number(properties.MemorySize ?? 128);
    const handler = String(properties.Handler).split('.').slice(1).join('.');
    functions.set(logicalId, {
      logicalId,
      functionName,
      module: moduleOf(code, resource, step, scratch),
      handler,
      memoryMiB,
      timeoutSeconds: Number(properties.Timeout ?? 3),
      environment: {
        ...withLocalPool(templateEnv, target),
        ...(await endpointsFor(gateway, target, roleArn)),
        ...lambdaRuntimeEnvironment(functionName, memoryMiB, String(properties.Handler), target),
      },
    });
  }
  const lambdas = startLambdaService(functions, {
    region: LOCAL_ACCOUNT.region,
    accountId: LOCAL_ACCOUNT.accountId,
    ...(target.onLog ? { onLog: target.onLog } : {}),
  });
  closers.push(() => lambdas.close());

  const run = (workflow: SynthesizedWorkflow, input: unknown, onEvent?: (event: WorkflowEvent) => void) =>
    runStateMachine({ stack, gateway, lambdas, functions, target, code }, workflow, input, onEvent);
  return {
    stack,
    gateway,
    lambdas,
    runBackup: (input, onEvent) => run(app.backup, input, onEvent),
    runRestore: (input, onEvent) => run(app.restore, input, onEvent),
    async close() {
      for (const close of closers.reverse()) await close().catch(() => undefined);
    },
  };
}

interface Deployed {
  readonly stack: LocalStack;
  readonly gateway: AwsGateway;
  readonly lambdas: LocalLambdaService;
  readonly functions: ReadonlyMap<string, LocalFunction>;
  readonly target: LocalTarget;
  readonly code: CodeLocation;
}

/** Where the functions' and the task's code comes from. */
type CodeLocation =
  | { readonly kind: 'source' }
  | { readonly kind: 'bundles'; readonly bundles: BundledCode }
  | { readonly kind: 'assembly'; readonly dir: string };

/** Runs one execution: the state machine's own role invokes each task, and uses its key for its data. */
async function runStateMachine(
  deployed: Deployed,
  workflow: SynthesizedWorkflow,
  input: unknown,
  onEvent?: (event: WorkflowEvent) => void,
): Promise<WorkflowRun> {
  const { stack, gateway, lambdas, target } = deployed;
  const machine = stack.template.Resources[workflow.logicalId]!.Properties ?? {};
  const roleArn = stack.resolve(machine.RoleArn) as string;
  const stateMachineArn = stack.ref(workflow.logicalId);
  const definition = JSON.parse(stack.resolve(workflow.definitionString) as string) as Record<string, never>;
  // A Task without TimeoutSeconds has none in AWS (99999999); the States Language spec (and so the local
  // interpreter) says 60. The functions' own timeouts apply either way, in the Lambda service. (Node's
  // timers take at most 2^31-1 ms: 2,000,000 s stands for "none".)
  visitStates(definition, (_name, state) => {
    if (
      state.Type === 'Task' &&
      state.TimeoutSeconds === undefined &&
      state.TimeoutSecondsPath === undefined
    ) {
      (state as Record<string, unknown>).TimeoutSeconds = 2_000_000;
    }
  });
  const violations: string[] = [];
  const control: { stop?: () => void } = {};
  const checkPayload = (what: string, value: unknown) => {
    const size = Buffer.byteLength(JSON.stringify(value ?? null));
    if (size > STATE_PAYLOAD_LIMIT) {
      violations.push(`${what}: ${size} bytes`);
      // Terminal in AWS: no Catch (not even States.ALL) handles it, so no clean-up state runs either.
      control.stop?.();
      throw Object.assign(
        new Error(
          `The state/task returned a result with a size exceeding the maximum number of bytes service limit (${what}: ${size} bytes)`,
        ),
        { name: 'States.DataLimitExceeded' },
      );
    }
  };

  // An encrypted state machine's role encrypts and decrypts the execution's data with the key.
  const keyId = (machine.EncryptionConfiguration as { KmsKeyId?: unknown } | undefined)?.KmsKeyId;
  if (keyId !== undefined) {
    const keyArn = stack.resolve(keyId) as string;
    for (const action of ['kms:GenerateDataKey', 'kms:Decrypt']) {
      const decision = await gateway.record({
        service: 'kms',
        principal: roleArn,
        action,
        resource: keyArn.startsWith('arn:')
          ? keyArn
          : `arn:aws:kms:${LOCAL_ACCOUNT.region}:${LOCAL_ACCOUNT.accountId}:key/${keyArn}`,
        context: {
          'kms:ViaService': `states.${LOCAL_ACCOUNT.region}.amazonaws.com`,
          'kms:EncryptionContext:aws:states:stateMachineArn': stateMachineArn,
          'kms:EncryptionContextKeys': ['aws:states:stateMachineArn'],
          'kms:CallerAccount': LOCAL_ACCOUNT.accountId,
        },
      });
      if (!decision.allowed) {
        return {
          status: 'FAILED',
          error: 'KMS.AccessDeniedException',
          cause: `the state machine cannot use its key for its own data: ${decision.reason}`,
          statesEntered: [],
        };
      }
    }
  }

  // aws-local-stepfunctions starts a Map's next iteration after one failed; Step Functions starts none once
  // the Map has failed. A task of a failed Map's iteration is refused before it runs (nothing reaches AWS).
  const mapOf = new Map<string, string>();
  const handledInIteration = new Map<string, (error: string) => boolean>();
  visitStates(definition, (mapName, state) => {
    const processor = (state.ItemProcessor ?? state.Iterator) as Record<string, never> | undefined;
    if (state.Type !== 'Map' || !processor) return;
    visitStates(processor, (name, inner) => {
      mapOf.set(name, mapName);
      const rules = [
        ...((inner.Retry ?? []) as { ErrorEquals: string[] }[]),
        ...((inner.Catch ?? []) as { ErrorEquals: string[] }[]),
      ];
      handledInIteration.set(name, (error) =>
        rules.some((rule) => rule.ErrorEquals.includes(error) || rule.ErrorEquals.includes('States.ALL')),
      );
    });
  });
  const failedMaps = new Set<string>();
  const guarded = (name: string, run: (value: unknown) => Promise<unknown>) => async (value: unknown) => {
    const map = mapOf.get(name);
    if (map && failedMaps.has(map)) {
      throw Object.assign(new Error(`${map} has failed: no new iteration runs`), { name: 'States.Runtime' });
    }
    try {
      return await run(value);
    } catch (error) {
      if (map && !handledInIteration.get(name)?.((error as Error).name)) failedMaps.add(map);
      throw error;
    }
  };
  const handlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  let timeoutArmed = target.simulateLambdaTimeout;
  visitStates(definition, (name, state) => {
    if (state.Type !== 'Task' || typeof state.Resource !== 'string') return;
    const resource = state.Resource as string;
    if (resource.startsWith('arn:aws:states:::ecs:runTask')) {
      handlers[name] = async (parameters) => {
        checkPayload(`${name} input`, parameters);
        return runContainerTask(deployed, roleArn, parameters as EcsRunTaskParameters);
      };
      return;
    }
    const logicalId = stack.logicalIdOfArn(resource);
    const fn = logicalId ? deployed.functions.get(logicalId) : undefined;
    if (!logicalId || !fn)
      throw new Error(`task state ${name} invokes ${resource}, not a function of the stack`);
    handlers[name] = async (value) => {
      checkPayload(`${name} input`, value);
      const decision = await gateway.record({
        service: 'lambda',
        principal: roleArn,
        action: 'lambda:InvokeFunction',
        resource,
      });
      if (!decision.allowed) {
        throw Object.assign(new Error(decision.reason), { name: 'Lambda.AWSLambdaException' });
      }
      const timeout =
        timeoutArmed && fn.environment[STEP_ENV] === timeoutArmed.step ? timeoutArmed : undefined;
      if (timeout) timeoutArmed = undefined;
      const output = await lambdas.invoke(logicalId, value, timeout ? { killWhen: timeout.killWhen() } : {});
      checkPayload(`${name} output`, output);
      return output;
    };
  });
  checkPayload('execution input', input);
  const tasks = Object.fromEntries(Object.entries(handlers).map(([name, run]) => [name, guarded(name, run)]));
  const result = await runWorkflow(definition, tasks, input, onEvent, stateMachineArn, control);
  if (violations.length) {
    return { ...result, status: 'FAILED', error: 'States.DataLimitExceeded', cause: violations.join('; ') };
  }
  if (result.status === 'SUCCEEDED') checkPayload('execution output', result.output);
  return result;
}

interface EcsRunTaskParameters {
  readonly TaskDefinition?: string;
  readonly Cluster?: string;
  readonly Overrides?: {
    readonly ContainerOverrides?: {
      readonly Name?: string;
      readonly Environment?: { Name: string; Value: string }[];
    }[];
  };
}

/**
 * What an `ecs:runTask.sync` state does: Step Functions' role starts the task (passing the task's roles),
 * the container runs with the task definition's environment plus the state's overrides, and the state
 * ends when it stopped.
 */
async function runContainerTask(
  deployed: Deployed,
  stateMachineRole: string,
  parameters: EcsRunTaskParameters,
): Promise<unknown> {
  const { stack, gateway, target } = deployed;
  const overridesLength = JSON.stringify(parameters.Overrides ?? {}).length;
  if (overridesLength > ECS_OVERRIDES_LIMIT) {
    throw Object.assign(
      new Error(`Container Overrides length must be at most ${ECS_OVERRIDES_LIMIT}, not ${overridesLength}`),
      { name: 'ECS.InvalidParameterException' },
    );
  }
  const [taskDefinitionId, taskDefinition] =
    stack.resourcesOfType('AWS::ECS::TaskDefinition')[0] ?? fail('no task definition in the template');
  const properties = taskDefinition.Properties ?? {};
  const taskRole = stack.resolve(properties.TaskRoleArn) as string;
  const executionRole = stack.resolve(properties.ExecutionRoleArn) as string;
  const taskDefinitionArn = stack.ref(taskDefinitionId);
  const requests = [
    { service: 'ecs' as const, action: 'ecs:RunTask', resource: taskDefinitionArn },
    ...[taskRole, executionRole].map((role) => ({
      service: 'iam' as const,
      action: 'iam:PassRole',
      resource: role,
      context: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' },
    })),
    ...['events:PutTargets', 'events:PutRule', 'events:DescribeRule'].map((action) => ({
      service: 'events' as const,
      action,
      resource: `arn:aws:events:${LOCAL_ACCOUNT.region}:${LOCAL_ACCOUNT.accountId}:rule/StepFunctionsGetEventsForECSTaskRule`,
    })),
  ];
  for (const request of requests) {
    const decision = await gateway.record({ principal: stateMachineRole, ...request });
    if (!decision.allowed)
      throw Object.assign(new Error(decision.reason), { name: 'ECS.AccessDeniedException' });
  }
  const container = (properties.ContainerDefinitions as { Environment?: unknown }[] | undefined)?.[0] ?? {};
  const definitionEnv = Object.fromEntries(
    ((stack.resolve(container.Environment ?? []) as { Name: string; Value: string }[]) ?? []).map((entry) => [
      entry.Name,
      entry.Value,
    ]),
  );
  const overrides = parameters.Overrides?.ContainerOverrides?.[0]?.Environment ?? [];
  const env = {
    ...withLocalPool(definitionEnv, target),
    ...Object.fromEntries(overrides.map((entry) => [entry.Name, entry.Value])),
    ...(await endpointsFor(gateway, target, taskRole)),
    ...credentialEnvironment(target),
    AWS_REGION: LOCAL_ACCOUNT.region,
    AWS_DEFAULT_REGION: LOCAL_ACCOUNT.region,
    AWS_EXECUTION_ENV: 'AWS_ECS_FARGATE',
    PATH: process.env.PATH ?? '',
  };
  const entry = deployed.code.kind === 'source' ? CONTAINER_ENTRY : (await bundledCode()).container;
  const child = spawn(NODE, [entry], {
    cwd: tmpdir(),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => target.onLog?.('transfer', chunk.toString().trimEnd()));
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    target.onLog?.('transfer', chunk.toString().trimEnd());
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) {
    throw Object.assign(
      new Error(`the transfer container exited with ${code}: ${stderr.trim().slice(-2000)}`),
      {
        name: 'States.TaskFailed',
      },
    );
  }
  return { StopCode: 'EssentialContainerExited', Containers: [{ ExitCode: code }] };
}

/** The pool's URL (and CA) of the target: the template holds a placeholder. */
function withLocalPool(env: Record<string, string>, target: LocalTarget): Record<string, string> {
  const pools = env.VDI_VAULT_POOLS;
  if (!pools) return env;
  const parsed = JSON.parse(pools) as Record<string, Record<string, unknown>>;
  for (const pool of Object.values(parsed)) {
    pool.url = target.xapi.url;
    if (target.xapi.tls?.caPem) pool.caPem = target.xapi.tls.caPem;
    if (target.xapi.tls?.insecureSkipVerify) pool.insecureSkipVerify = true;
    if (target.xapi.timeoutMs) pool.timeoutMs = target.xapi.timeoutMs;
  }
  return { ...env, VDI_VAULT_POOLS: JSON.stringify(parsed) };
}

async function endpointsFor(gateway: AwsGateway, target: LocalTarget, roleArn: string) {
  const endpoints = await gateway.endpointsFor(roleArn);
  // No S3 endpoint: the target is real S3, reached directly with the caller's own credentials.
  if (!target.s3.endpoint) {
    const { AWS_ENDPOINT_URL_S3: _ignored, ...rest } = endpoints;
    return rest;
  }
  return endpoints;
}

function credentialEnvironment(target: LocalTarget): Record<string, string> {
  const credentials = target.s3.credentials;
  if (credentials) {
    return { AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey };
  }
  // Real AWS: the credential chain of whoever runs the local world.
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[0].startsWith('AWS_') && entry[1] !== undefined,
    ),
  );
}

/** The variables Lambda itself sets in every execution environment. */
function lambdaRuntimeEnvironment(
  functionName: string,
  memoryMiB: number,
  handler: string,
  target: LocalTarget,
): Record<string, string> {
  return {
    ...credentialEnvironment(target),
    AWS_REGION: LOCAL_ACCOUNT.region,
    AWS_DEFAULT_REGION: LOCAL_ACCOUNT.region,
    AWS_LAMBDA_FUNCTION_NAME: functionName,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(memoryMiB),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${functionName}`,
    AWS_LAMBDA_LOG_FORMAT: 'JSON',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_XRAY_CONTEXT_MISSING: 'LOG_ERROR',
    AWS_XRAY_DAEMON_ADDRESS: '127.0.0.1:2000',
    _HANDLER: handler,
    TZ: ':UTC',
    PATH: process.env.PATH ?? '',
  };
}

/** Where a function's code is: its bundle when the app was bundled, else its TypeScript entry. */
function moduleOf(
  code: CodeLocation,
  resource: { Metadata?: Record<string, unknown> },
  step: string,
  scratch: string[],
): string {
  const workflow = step.split('.')[0]!;
  switch (code.kind) {
    case 'source':
      return join(ROOT, 'lambdas', 'handlers', `${workflow}.ts`);
    case 'bundles': {
      // Cached outside the repository: no node_modules above it, so a missing module fails as in Lambda.
      const dir = code.bundles.lambda[workflow];
      if (!dir) throw new Error(`no bundle of the ${workflow} workflow`);
      return join(dir, 'index.mjs');
    }
    case 'assembly': {
      const asset = resource.Metadata?.['aws:asset:path'];
      if (typeof asset !== 'string') throw new Error(`the function of ${step} has no bundled asset`);
      // As Lambda runs it: the asset alone in an empty directory, no node_modules anywhere above it.
      const root = mkdtempSync(join(tmpdir(), 'vdi-vault-lambda-'));
      scratch.push(root);
      cpSync(join(code.dir, asset), root, { recursive: true });
      return join(root, 'index.mjs');
    }
  }
}

function logicalIdOf(template: Template, type: string, filter: (id: string) => boolean = () => true) {
  return Object.entries(template.Resources).find(
    ([id, resource]) => resource.Type === type && filter(id),
  )?.[0];
}

function fail(message: string): never {
  throw new Error(message);
}

/** Progress of local transfers, counted at the gateway: bytes uploaded per export, read per import. */
function reportTransfers(gateway: AwsGateway, target: LocalTarget): void {
  const totals = new Map<string, number>();
  gateway.onCall((call: AwsCall) => {
    if (call.service !== 's3' || !call.allowed) return;
    const key = call.resource.split(':::')[1]?.split('/').slice(1).join('/') ?? '';
    const match = /\/([^/]+)\/([^/]+)\.vhd$/.exec(key);
    if (!match) return;
    const [, vdiUuid, backupId] = match as unknown as [string, string, string];
    if (call.action === 's3:PutObject' && call.bytesIn) {
      const total = (totals.get(key) ?? 0) + call.bytesIn;
      totals.set(key, total);
      target.onExportProgress?.(vdiUuid, total);
    } else if (call.action === 's3:GetObject' && call.bytesOut) {
      const total = (totals.get(`get ${key}`) ?? 0) + call.bytesOut;
      totals.set(`get ${key}`, total);
      target.onImportProgress?.(backupId, total);
    }
  });
}
