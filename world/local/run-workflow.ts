import { randomUUID } from 'node:crypto';
import { StateMachine } from 'aws-local-stepfunctions';

export interface WorkflowRun {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  /** Every state entered, in order (Map iterations included): what Step Functions would bill. */
  readonly statesEntered: readonly string[];
}

export interface WorkflowEvent {
  readonly type: string;
  readonly state?: string;
  readonly error?: string;
  readonly cause?: string;
  readonly at: string;
}

/**
 * Runs a state machine definition with `aws-local-stepfunctions`, each task state calling `tasks[state]`
 * (the deployment invokes the function or starts the container there). Retry intervals shrink to a few
 * milliseconds so failure paths run fast.
 */
export async function runWorkflow(
  definition: Record<string, unknown>,
  tasks: Readonly<Record<string, (input: unknown) => Promise<unknown>>>,
  input: unknown,
  /** Called for each execution event as it happens (state entered/exited/failed/retried/caught…). */
  onEvent?: ((event: WorkflowEvent) => void) | undefined,
  stateMachineArn = 'arn:aws:states:us-east-1:123456789012:stateMachine:local',
  /** Set here while the execution runs: stops it at once (an error no Catch may handle). */
  control: { stop?: () => void } = {},
): Promise<WorkflowRun> {
  const taskResourceLocalHandlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  for (const [stateName, task] of Object.entries(tasks)) {
    // JSON round trips make the local run see exactly what Step Functions would pass.
    taskResourceLocalHandlers[stateName] = async (value) =>
      JSON.parse(JSON.stringify((await task(value)) ?? null)) as unknown;
    retryIntervalOverrides[stateName] = 5;
  }
  const machine = new StateMachine(definition as never, { validationOptions: { checkPaths: true } });
  // The context object Step Functions gives every execution (states read `$$.Execution.Name`).
  const name = `local-${randomUUID()}`;
  const execution = machine.run(input as never, {
    overrides: { taskResourceLocalHandlers: taskResourceLocalHandlers as never, retryIntervalOverrides },
    context: {
      Execution: {
        Id: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`,
        Name: name,
        StartTime: new Date().toISOString(),
        Input: input,
        RoleArn: 'arn:aws:iam::123456789012:role/local',
      },
    } as never,
  });
  control.stop = () => execution.abort();
  const statesEntered: string[] = [];
  const events = (async () => {
    let failure: { error: string; cause: string } | undefined;
    for await (const event of execution.eventLogs) {
      const state = 'state' in event ? event.state.name : undefined;
      const info = 'Error' in event ? { error: event.Error, cause: String(event.Cause ?? '') } : {};
      onEvent?.({ type: event.type, ...(state ? { state } : {}), ...info, at: new Date().toISOString() });
      if (event.type === 'StateEntered') statesEntered.push(event.state.name);
      if (event.type === 'ExecutionFailed')
        failure = { error: event.Error, cause: String(event.Cause ?? '') };
    }
    return failure;
  })();
  try {
    const output = await execution.result;
    await events;
    return { status: 'SUCCEEDED', output, statesEntered };
  } catch (error) {
    const failure = await events;
    return {
      status: 'FAILED',
      error: failure?.error ?? (error as Error).name,
      cause: failure?.cause ?? (error as Error).message,
      statesEntered,
    };
  }
}
