// A type only, erased at run time: this module never loads cli/local.ts (nor the local runner).
import type { WorkflowEvent } from './local.ts';
import type { Colour } from './output.ts';

/**
 * What `watch` and the running commands show, local or deployed: the local runner's events as they are
 * (`StateEntered`, `StateFailed`, `ExecutionSucceeded`…), Step Functions history mapped onto the same
 * names (deployed.ts), and bytes moved so far by a transfer (local runs only).
 */
export type ExecutionEvent = WorkflowEvent | ProgressEvent;

export interface ProgressEvent {
  readonly type: 'Progress';
  /** `export <vdi uuid>`, `import <backup id>` or `import merged`. */
  readonly transfer: string;
  readonly bytes: number;
  /** Known for imports of one layer (its object's size). */
  readonly total?: number;
  readonly at: string;
}

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT' | 'INTERRUPTED';

/** How an execution ended: the workflow's output, or its error and cause. */
export interface ExecutionOutcome {
  readonly executionId: string;
  readonly status: ExecutionStatus;
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
}

/** One line for people, or nothing for events that only add noise (exits, task bookkeeping). */
export function describeEvent(event: ExecutionEvent, colour: Colour): string | undefined {
  if (isProgress(event)) return undefined;
  const time = colour.dim(new Date(event.at).toLocaleTimeString('en-GB', { hour12: false }));
  const failure = () => `${event.error ?? 'error'}: ${readableCause(event.cause)}`;
  switch (event.type) {
    case 'StateEntered':
      return `${time}  → ${event.state}`;
    case 'StateRetried':
      return `${time}  ${colour.yellow('↻')} ${event.state} retried after ${failure()}`;
    case 'StateFailed':
    case 'MapIterationFailed':
      return `${time}  ${colour.red('✗')} ${event.state ?? 'iteration'} failed: ${failure()}`;
    case 'StateCaught':
      return `${time}  ${colour.yellow('↳')} ${event.state} caught ${event.error ?? 'an error'}: cleaning up`;
    case 'ExecutionSucceeded':
      return `${time}  ${colour.green('✓ execution succeeded')}`;
    case 'ExecutionFailed':
      return `${time}  ${colour.red('✗ execution failed')}: ${failure()}`;
    case 'ExecutionAborted':
      return `${time}  ${colour.red('✗ execution aborted')}`;
    case 'ExecutionTimeout':
    case 'ExecutionTimedOut':
      return `${time}  ${colour.red('✗ execution timed out')}`;
    default:
      return undefined;
  }
}

export function isProgress(event: ExecutionEvent): event is ProgressEvent {
  return event.type === 'Progress';
}

/**
 * A Lambda failure's cause is a JSON document `{errorType, errorMessage, trace}`: people need the message.
 * Anything else is shown as it is.
 */
export function readableCause(cause: string | undefined): string {
  if (!cause) return '(no cause given)';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    // not JSON: a plain message
  }
  return cause;
}
