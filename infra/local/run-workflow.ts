import { randomUUID } from 'node:crypto';
import { StateMachine } from 'aws-local-stepfunctions';
import { CONTAINER_STEP, type SynthesizedWorkflow } from './synthesized-workflows.ts';

type Handler = (input: never) => unknown;

export interface WorkflowRun {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  /** Every state entered, in order (Map iterations included): what Step Functions would bill. */
  readonly statesEntered: readonly string[];
}

/**
 * Runs a synthesized workflow with `aws-local-stepfunctions`, each task state calling the domain step its
 * function runs in AWS. Retry intervals shrink to a few milliseconds so failure paths run fast.
 */
export interface WorkflowEvent {
  readonly type: string;
  readonly state?: string;
  readonly error?: string;
  readonly cause?: string;
  readonly at: string;
}

export async function runWorkflow(
  workflow: SynthesizedWorkflow,
  steps: Readonly<Record<string, Handler>>,
  input: unknown,
  /** Called for each execution event as it happens (state entered/exited/failed/retried/caught…). */
  onEvent?: (event: WorkflowEvent) => void,
): Promise<WorkflowRun> {
  const taskResourceLocalHandlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  for (const [stateName, step] of Object.entries(workflow.stepsByState)) {
    const name = step === CONTAINER_STEP ? CONTAINER_STEP : step.split('.')[1]!;
    const handler = steps[name];
    if (!handler) throw new Error(`no local handler for step ${step} (state ${stateName})`);
    // JSON round trips make the local run see exactly what Step Functions would pass.
    taskResourceLocalHandlers[stateName] = async (value) =>
      JSON.parse(JSON.stringify((await handler(value as never)) ?? null)) as unknown;
    retryIntervalOverrides[stateName] = 5;
  }
  const machine = new StateMachine(workflow.definition as never, { validationOptions: { checkPaths: true } });
  // The context object Step Functions gives every execution (states read `$$.Execution.Name`).
  const name = `local-${randomUUID()}`;
  const execution = machine.run(input as never, {
    overrides: { taskResourceLocalHandlers: taskResourceLocalHandlers as never, retryIntervalOverrides },
    context: {
      Execution: {
        Id: `arn:aws:states:us-east-1:123456789012:execution:local:${name}`,
        Name: name,
        StartTime: new Date().toISOString(),
        Input: input,
        RoleArn: 'arn:aws:iam::123456789012:role/local',
      },
    } as never,
  });
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
