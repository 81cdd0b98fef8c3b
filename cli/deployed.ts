import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  SFNClient,
  StartExecutionCommand,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_STACK_NAME } from '../lambdas/runtime/defaults.ts';
import { stringFlag, type FlagValues } from './args.ts';
import type { ExecutionEvent, ExecutionOutcome, ExecutionStatus } from './execution-events.ts';
import { UnavailableError, UsageError } from './exit-codes.ts';
import type { ExecutionProgress, ProgressStore } from '../lambdas/shared/transfer-progress.ts';

/** The AWS clients a command uses, made on first use (tests hand in stubs at this edge). */
export interface AwsClients {
  sfn(): Pick<SFNClient, 'send'>;
  cloudFormation(): Pick<CloudFormationClient, 'send'>;
  /** Reads the progress records of running transfers (`watch`). */
  dynamodb(): Pick<DynamoDBClient, 'send'>;
}

export function awsClients(region: string | undefined): AwsClients {
  let sfn: SFNClient | undefined;
  let cloudFormation: CloudFormationClient | undefined;
  let dynamodb: DynamoDBClient | undefined;
  const config = region !== undefined ? { region } : {};
  return {
    sfn: () => (sfn ??= new SFNClient(config)),
    cloudFormation: () => (cloudFormation ??= new CloudFormationClient(config)),
    dynamodb: () => (dynamodb ??= new DynamoDBClient(config)),
  };
}

/** The deployed stack's outputs by key, read once per command. */
export class StackOutputs {
  readonly #clients: AwsClients;
  readonly #stackName: string;
  #outputs: Promise<Record<string, string>> | undefined;

  constructor(clients: AwsClients, values: FlagValues) {
    this.#clients = clients;
    this.#stackName = stringFlag(values, 'stack') ?? DEFAULT_STACK_NAME;
  }

  /** The output named `key` (or, for outputs a construct nests, the one whose key starts with it). */
  async get(key: string, flag: string): Promise<string> {
    const value = await this.find(key);
    if (value === undefined) {
      throw new UsageError(`stack ${this.#stackName} has no output ${key}: give ${flag}`);
    }
    return value;
  }

  /** Like `get`, but undefined when the stack has no such output. */
  async find(key: string): Promise<string | undefined> {
    const outputs = await (this.#outputs ??= this.#read());
    return outputs[key] ?? Object.entries(outputs).find(([name]) => name.startsWith(key))?.[1];
  }

  async #read(): Promise<Record<string, string>> {
    const response = await this.#clients
      .cloudFormation()
      .send(new DescribeStacksCommand({ StackName: this.#stackName }))
      .catch((error: Error) => {
        throw new UnavailableError(
          `cannot read the outputs of stack ${this.#stackName}: ${error.message} ` +
            '(give --stack, --region, or the ARNs, bucket and prefix as flags)',
        );
      });
    const outputs: Record<string, string> = {};
    for (const output of response.Stacks?.[0]?.Outputs ?? []) {
      if (output.OutputKey && output.OutputValue) outputs[output.OutputKey] = output.OutputValue;
    }
    return outputs;
  }
}

export async function stateMachineArn(
  kind: 'backup' | 'restore',
  values: FlagValues,
  stack: StackOutputs,
): Promise<string> {
  const flag = `--${kind}-arn`;
  return (
    stringFlag(values, `${kind}-arn`) ??
    (await stack.get(kind === 'backup' ? 'BackupStateMachineArn' : 'RestoreStateMachineArn', flag))
  );
}

export async function startExecution(
  sfn: Pick<SFNClient, 'send'>,
  arn: string,
  input: unknown,
): Promise<string> {
  const response = await sfn
    .send(new StartExecutionCommand({ stateMachineArn: arn, input: JSON.stringify(input) }))
    .catch((error: Error) => {
      throw new UnavailableError(`cannot start an execution of ${arn}: ${error.message}`);
    });
  if (!response.executionArn)
    throw new UnavailableError(`StartExecution of ${arn} returned no execution ARN`);
  return response.executionArn;
}

/** `arn:aws:states:<region>:<account>:execution:<state machine>:<name>` → `<name>`. */
export function executionNameOf(executionArn: string): string {
  const name = executionArn.split(':')[7];
  if (!name) throw new UsageError(`"${executionArn}" is not an execution ARN`);
  return name;
}

/**
 * Reads an execution's progress records every `pollMs` and hands them on, until `signal` aborts. A read
 * that fails is reported once and tried again: progress is for people, the history carries the outcome.
 */
export async function followProgress(
  store: ProgressStore,
  executionName: string,
  onProgress: (transfers: ExecutionProgress) => void,
  options: {
    readonly signal: AbortSignal;
    readonly pollMs: number;
    readonly onError: (error: Error) => void;
  },
): Promise<void> {
  let reported = false;
  while (!options.signal.aborted) {
    try {
      onProgress(await store.read(executionName));
    } catch (error) {
      if (!reported) options.onError(error as Error);
      reported = true;
    }
    await sleep(options.pollMs, undefined, { signal: options.signal }).catch(() => undefined);
  }
}

const TERMINAL = new Set(['ExecutionSucceeded', 'ExecutionFailed', 'ExecutionAborted', 'ExecutionTimedOut']);

/**
 * Follows an execution's history (GetExecutionHistory, oldest first, every page) and reports each event
 * as it appears, until the execution ends; then returns its outcome from DescribeExecution.
 */
export async function followExecution(
  sfn: Pick<SFNClient, 'send'>,
  executionArn: string,
  onEvent: (event: ExecutionEvent) => void,
  options: { pollMs?: number } = {},
): Promise<ExecutionOutcome> {
  const stateOfEvent = new Map<number, string>();
  let lastEventId = 0;
  // The token that fetched the last page: asking again from it returns that page and anything newer.
  let resumeToken: string | undefined;
  let ended = false;
  while (!ended) {
    let token = resumeToken;
    do {
      const page = await sfn
        .send(
          new GetExecutionHistoryCommand({
            executionArn,
            reverseOrder: false,
            maxResults: 1000,
            ...(token ? { nextToken: token } : {}),
          }),
        )
        .catch((error: Error) => {
          throw new UnavailableError(`cannot read the history of ${executionArn}: ${error.message}`);
        });
      for (const raw of page.events ?? []) {
        if ((raw.id ?? 0) <= lastEventId) continue;
        lastEventId = raw.id ?? lastEventId;
        const event = fromHistoryEvent(raw, stateOfEvent);
        if (event) onEvent(event);
        if (raw.type && TERMINAL.has(raw.type)) ended = true;
      }
      if (page.nextToken) resumeToken = page.nextToken;
      token = page.nextToken;
    } while (token);
    if (!ended) await sleep(options.pollMs ?? 2000);
  }
  const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  return {
    executionId: executionArn,
    status: (described.status ?? 'FAILED') as ExecutionStatus,
    ...(described.output !== undefined ? { output: JSON.parse(described.output) as unknown } : {}),
    ...(described.error !== undefined ? { error: described.error } : {}),
    ...(described.cause !== undefined ? { cause: described.cause } : {}),
  };
}

/**
 * Maps a Step Functions history event onto the names the local runner uses. Task bookkeeping
 * (scheduled, started, succeeded) maps to nothing; a failure is attributed to the state it happened in
 * by walking `previousEventId` back to the state's entry.
 */
export function fromHistoryEvent(
  raw: HistoryEvent,
  stateOfEvent: Map<number, string>,
): ExecutionEvent | undefined {
  const type = raw.type ?? '';
  const state =
    raw.stateEnteredEventDetails?.name ??
    raw.stateExitedEventDetails?.name ??
    stateOfEvent.get(raw.previousEventId ?? -1);
  if (state !== undefined && raw.id !== undefined) stateOfEvent.set(raw.id, state);
  const at = (raw.timestamp ?? new Date()).toISOString();
  const details = Object.entries(raw).find(([key]) => key.endsWith('EventDetails'))?.[1] as
    { error?: string; cause?: string } | undefined;
  const failure = {
    ...(details?.error !== undefined ? { error: details.error } : {}),
    ...(details?.cause !== undefined ? { cause: details.cause } : {}),
  };
  if (type.endsWith('StateEntered')) return { type: 'StateEntered', state: state!, at };
  if (type.endsWith('StateExited')) return { type: 'StateExited', state: state!, at };
  if (/^(Task|LambdaFunction)(Failed|TimedOut|StartFailed|SubmitFailed)$/.test(type)) {
    return { type: 'StateFailed', ...(state !== undefined ? { state } : {}), ...failure, at };
  }
  if (type === 'MapIterationFailed' || type === 'ExecutionFailed') return { type, ...failure, at };
  if (type === 'ExecutionSucceeded' || type === 'ExecutionAborted' || type === 'ExecutionTimedOut') {
    return { type, at };
  }
  return undefined;
}
