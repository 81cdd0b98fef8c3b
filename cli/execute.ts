import { DEFAULT_STATE_DIR, PROGRESS_POLL_MS } from '../lambdas/runtime/defaults.ts';
import { DASHBOARD_URL_OUTPUT } from '../lambdas/runtime/metric-table.ts';
import {
  dynamoProgressStore,
  PROGRESS_TABLE_OUTPUT,
  type ProgressStore,
} from '../lambdas/shared/transfer-progress.ts';
import { booleanFlag, rejectFlags, stringFlag, type FlagValues } from './args.ts';
import {
  StackOutputs,
  executionNameOf,
  followExecution,
  followProgress,
  startExecution,
  stateMachineArn,
  type AwsClients,
} from './deployed.ts';
import type { ExecutionEvent, ExecutionOutcome } from './execution-events.ts';
import { ExecutionRecorder, executionLogPath, newExecutionId } from './execution-log.ts';
import { LiveDisplay } from './live-display.ts';
import { note, type Output } from './output.ts';

export interface CommandContext {
  readonly output: Output;
  readonly env: NodeJS.ProcessEnv;
  readonly aws: (region: string | undefined) => AwsClients;
}

/**
 * Runs a backup or restore with a validated input: in this process through the local runner (recording
 * its events for `watch --local`), or as an execution of the deployed state machine, followed until it
 * ends unless `--no-wait`. Either way people see the steps and transfer progress live.
 */
export async function execute(
  kind: 'backup' | 'restore',
  input: { readonly pool?: string },
  values: FlagValues,
  context: CommandContext,
): Promise<ExecutionOutcome> {
  if (booleanFlag(values, 'local')) {
    rejectFlags(
      values,
      ['backup-arn', 'restore-arn', 'stack', 'no-wait'],
      'only for a deployed stack, not with --local',
    );
  }
  return booleanFlag(values, 'local')
    ? executeLocally(kind, input, values, context)
    : executeDeployed(kind, input, values, context);
}

async function executeLocally(
  kind: 'backup' | 'restore',
  input: { readonly pool?: string },
  values: FlagValues,
  { output, env }: CommandContext,
): Promise<ExecutionOutcome> {
  // The only way into the development world: loaded here, with --local only (see cli/local.ts).
  const local = await import('./local.ts');
  const display = new LiveDisplay(output);
  const executionId = newExecutionId(kind);
  const logPath = executionLogPath(stringFlag(values, 'state-dir') ?? DEFAULT_STATE_DIR, executionId);
  const progress = (transfer: string, bytes: number) => {
    const event = { type: 'Progress', transfer, bytes, at: new Date().toISOString() } as const;
    display.event(event);
    recorder.progress(event);
  };
  const target = {
    ...local.localTargetFromFlags(values, env, input.pool),
    onExportProgress: (vdiUuid: string, bytes: number) => progress(`export ${vdiUuid}`, bytes),
    onImportProgress: (layer: string, bytes: number) => progress(`import ${layer}`, bytes),
  };
  // Opened once the flags are known good: a usage error leaves no log behind.
  const recorder = ExecutionRecorder.open(logPath, {
    executionId,
    kind,
    input,
    target: local.describeLocalTarget(target),
  });
  note(output, `execution ${executionId} (follow it with: vdi-vault watch --local ${executionId})`);
  const onEvent = (event: ExecutionEvent) => {
    recorder.event(event);
    display.event(event);
  };
  let outcome: ExecutionOutcome;
  try {
    // The runner is loaded only now: it synthesizes the CDK app, which a usage error does not need.
    const run = await local.runLocally(kind, target, input, onEvent);
    outcome = {
      executionId,
      status: run.status,
      ...(run.output !== undefined ? { output: run.output } : {}),
      ...(run.error !== undefined ? { error: run.error } : {}),
      ...(run.cause !== undefined ? { cause: run.cause } : {}),
    };
  } catch (error) {
    outcome = {
      executionId,
      status: 'FAILED',
      error: (error as Error).name,
      cause: (error as Error).message,
    };
  }
  display.close();
  recorder.finish(outcome);
  return outcome;
}

async function executeDeployed(
  kind: 'backup' | 'restore',
  input: unknown,
  values: FlagValues,
  { output, aws }: CommandContext,
): Promise<ExecutionOutcome> {
  const clients = aws(stringFlag(values, 'region'));
  const stack = new StackOutputs(clients, values);
  const arn = await stateMachineArn(kind, values, stack);
  const executionArn = await startExecution(clients.sfn(), arn, input);
  if (booleanFlag(values, 'no-wait')) return { executionId: executionArn, status: 'RUNNING' };
  note(output, `execution ${executionArn} (follow it with: vdi-vault watch ${executionArn})`);
  if (!output.json && stringFlag(values, `${kind}-arn`) === undefined) {
    // Read with the ARN, so no call of its own; a stack without it (dashboard off) prints none. Given the
    // ARN as a flag, the stack is not read at all.
    const dashboard = await stack.find(DASHBOARD_URL_OUTPUT).catch(() => undefined);
    if (dashboard) note(output, `dashboard: ${dashboard}`);
  }
  return watchDeployed(executionArn, output, clients, stack);
}

/**
 * Follows a deployed execution: its history as step lines, and (on a terminal) its running transfers'
 * progress records as bars (docs/design.md § Progress of deployed transfers).
 */
export async function watchDeployed(
  executionArn: string,
  output: Output,
  clients: AwsClients,
  stack: StackOutputs,
  options: { readonly pollMs?: number; readonly progressPollMs?: number } = {},
) {
  const display = new LiveDisplay(output);
  const store = display.live ? await progressStoreOf(clients, stack, output) : undefined;
  const stop = new AbortController();
  const polling = store
    ? followProgress(store, executionNameOf(executionArn), (transfers) => display.recorded(transfers), {
        signal: stop.signal,
        pollMs: options.progressPollMs ?? PROGRESS_POLL_MS,
        onError: (error) => note(output, `transfer progress unavailable: ${error.message}`),
      })
    : undefined;
  try {
    return await followExecution(clients.sfn(), executionArn, (event) => display.event(event), {
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
    });
  } finally {
    stop.abort();
    await polling;
    display.close();
  }
}

/** The stack's progress table; without one (an older stack, no outputs to read), no bars, and a note. */
async function progressStoreOf(
  clients: AwsClients,
  stack: StackOutputs,
  output: Output,
): Promise<ProgressStore | undefined> {
  const tableName = await stack.find(PROGRESS_TABLE_OUTPUT).catch((error: Error) => {
    note(output, `no transfer progress: ${error.message}`);
    return undefined;
  });
  return tableName === undefined ? undefined : dynamoProgressStore(clients.dynamodb(), tableName);
}
