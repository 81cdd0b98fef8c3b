/**
 * Measures what the local Step Functions engine passes, at the engine's own boundary: every state's input
 * and output (StateEntered / StateExited events, Map iterations included), every task's effective input
 * (after Parameters / ItemSelector) and raw result, the execution's input and output, and the overrides of
 * every `ecs:runTask` state. The deployment enforces the limits; the probe tells how close a run came.
 *
 * It wraps `StateMachine.prototype.run` of `aws-local-stepfunctions` (the engine the local deployment runs
 * every execution with); nested runs (Map iterations) reuse the root's wrapped handlers and forward their
 * events to the root's log, so each is measured once.
 */
import { StateMachine } from 'aws-local-stepfunctions';

export interface Largest {
  readonly bytes: number;
  /** e.g. `Cleanup output`, `ReplayOnFargate overrides`. */
  readonly where: string;
}

export interface PayloadSizes {
  /** Largest input or output of any state (UTF-8 bytes of its JSON). */
  readonly state: Largest;
  /** Largest effective input or raw result of any task. */
  readonly task: Largest;
  /** Largest `Overrides` of an `ecs:runTask` state, in characters of its JSON (ECS's measure). */
  readonly ecsOverrides: Largest;
  readonly executionInput: number;
  readonly executionOutput: number;
  /** ECS overrides of each run of a task state, in order. */
  readonly overridesByState: ReadonlyMap<string, readonly number[]>;
  /** Raw results of every task, by state name, in order (to read a plan or a summary back). */
  readonly taskOutputs: ReadonlyMap<string, readonly unknown[]>;
  /** Errors tasks raised (the deployment's own limit checks included), by state name, in order. */
  readonly taskErrors: ReadonlyMap<string, readonly { name: string; message: string }[]>;
  /** States entered, in order (Map iterations included). */
  readonly statesEntered: readonly string[];
  /** Milliseconds from entering to leaving each state, by name, in order. */
  readonly durations: ReadonlyMap<string, readonly number[]>;
}

export interface PayloadProbe {
  /** What runs since the last `reset` passed. */
  sizes(): PayloadSizes;
  reset(): void;
  /** Puts the engine back as it was. */
  remove(): void;
}

type Handler = (input: unknown) => Promise<unknown>;
type Run = (
  input: unknown,
  options?: {
    overrides?: { taskResourceLocalHandlers?: Record<string, Handler> };
    _rootAbortSignal?: unknown;
  },
) => { abort: () => void; result: Promise<unknown>; eventLogs: AsyncGenerator<Record<string, unknown>> };

const none: Largest = { bytes: 0, where: '' };

export function installPayloadProbe(): PayloadProbe {
  const prototype = StateMachine.prototype as unknown as { run: Run };
  const original = prototype.run;
  let state = none;
  let task = none;
  let ecsOverrides = none;
  let executionInput = 0;
  let executionOutput = 0;
  let overridesByState = new Map<string, number[]>();
  let taskOutputs = new Map<string, unknown[]>();
  let taskErrors = new Map<string, { name: string; message: string }[]>();
  let statesEntered: string[] = [];
  let durations = new Map<string, number[]>();
  const enteredAt = new Map<string, number>();

  const size = (value: unknown) => Buffer.byteLength(JSON.stringify(value ?? null));
  const keep = (current: Largest, bytes: number, where: string) =>
    bytes > current.bytes ? { bytes, where } : current;

  const wrap = (stateName: string, handler: Handler): Handler => {
    return async (input) => {
      task = keep(task, size(input), `${stateName} input`);
      const overrides = (input as { Overrides?: unknown } | null)?.Overrides;
      if (overrides !== undefined && (input as { TaskDefinition?: unknown }).TaskDefinition !== undefined) {
        const chars = JSON.stringify(overrides).length;
        ecsOverrides = keep(ecsOverrides, chars, `${stateName} overrides`);
        overridesByState.set(stateName, [...(overridesByState.get(stateName) ?? []), chars]);
      }
      let output: unknown;
      try {
        output = await handler(input);
      } catch (error) {
        const { name, message } = error instanceof Error ? error : new Error(String(error));
        taskErrors.set(stateName, [...(taskErrors.get(stateName) ?? []), { name, message }]);
        throw error;
      }
      task = keep(task, size(output), `${stateName} output`);
      taskOutputs.set(stateName, [...(taskOutputs.get(stateName) ?? []), output]);
      return output;
    };
  };

  prototype.run = function (this: StateMachine, input, options) {
    // A Map iteration: its handlers are the root's (already wrapped), its events reach the root's log.
    if (options?._rootAbortSignal !== undefined) return original.call(this, input, options);
    const handlers = options?.overrides?.taskResourceLocalHandlers ?? {};
    const wrapped = Object.fromEntries(Object.entries(handlers).map(([name, fn]) => [name, wrap(name, fn)]));
    const execution = original.call(this, input, {
      ...options,
      overrides: { ...options?.overrides, taskResourceLocalHandlers: wrapped },
    });
    const logs = execution.eventLogs;
    async function* measured() {
      for await (const event of logs) {
        const stateData = event.state as { name: string; input?: unknown; output?: unknown } | undefined;
        switch (event.type) {
          case 'ExecutionStarted':
            executionInput = size(event.input);
            break;
          case 'ExecutionSucceeded':
            executionOutput = size(event.output);
            break;
          case 'StateEntered':
            statesEntered.push(stateData!.name);
            enteredAt.set(stateData!.name, event.timestamp as number);
            state = keep(state, size(stateData!.input), `${stateData!.name} input`);
            break;
          case 'StateExited':
            state = keep(state, size(stateData!.output), `${stateData!.name} output`);
            durations.set(stateData!.name, [
              ...(durations.get(stateData!.name) ?? []),
              (event.timestamp as number) - (enteredAt.get(stateData!.name) ?? (event.timestamp as number)),
            ]);
            break;
        }
        yield event;
      }
    }
    return { ...execution, eventLogs: measured() };
  } as Run;

  return {
    sizes: () => ({
      state,
      task,
      ecsOverrides,
      executionInput,
      executionOutput,
      overridesByState,
      taskOutputs,
      taskErrors,
      statesEntered,
      durations,
    }),
    reset() {
      state = task = ecsOverrides = none;
      executionInput = executionOutput = 0;
      overridesByState = new Map();
      taskOutputs = new Map();
      taskErrors = new Map();
      statesEntered = [];
      durations = new Map();
      enteredAt.clear();
    },
    remove() {
      prototype.run = original;
    },
  };
}

/** One line for the test's log: how close the run came to each limit. */
export function describeSizes(label: string, sizes: PayloadSizes): string {
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
  return (
    `${label}: largest state ${kib(sizes.state.bytes)} (${sizes.state.where}), ` +
    `largest task payload ${kib(sizes.task.bytes)} (${sizes.task.where}), ` +
    `execution input ${kib(sizes.executionInput)} / output ${kib(sizes.executionOutput)}, ` +
    `largest ECS overrides ${sizes.ecsOverrides.bytes} chars${sizes.ecsOverrides.where ? ` (${sizes.ecsOverrides.where})` : ''}, ` +
    `${sizes.statesEntered.length} states entered`
  );
}
