import { booleanFlag, COMMON_FLAGS, helpText, parseCommandArgs, stringFlag } from '../args.ts';
import type { ExecutionEvent, ExecutionOutcome } from '../execution-events.ts';
import { DEFAULT_STATE_DIR } from '../../lambdas/runtime/defaults.ts';
import { executionLogPath, readExecutionLog, type ExecutionLogHeader } from '../execution-log.ts';
import { EXIT, UsageError, type ExitCode } from '../exit-codes.ts';
import { StackOutputs } from '../deployed.ts';
import { watchDeployed, type CommandContext } from '../execute.ts';
import { LiveDisplay } from '../live-display.ts';
import { note, printLine } from '../output.ts';
import { reportOutcome } from '../summaries.ts';

const FLAGS = { ...COMMON_FLAGS } as const;
const USAGE =
  'vdi-vault watch <execution-arn> | vdi-vault watch --local <execution-id> [--state-dir <dir>] [--json]';
const DESCRIPTION =
  'Follows an execution step by step until it ends (at once if it already has), then shows its summary or the cause of failure.';

export async function watchCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { output } = context;
  const { values, positionals } = parseCommandArgs('watch', args, FLAGS);
  if (values.help) {
    printLine(output, helpText(USAGE, DESCRIPTION, FLAGS));
    return EXIT.ok;
  }
  const id = positionals[0];
  if (positionals.length !== 1 || id === undefined)
    throw new UsageError(`watch takes one execution, got ${positionals.length}`);
  if (!booleanFlag(values, 'local')) {
    if (!id.startsWith('arn:')) {
      throw new UsageError(
        `"${id}" is not an execution ARN (for an execution started with --local, add --local)`,
      );
    }
    const clients = context.aws(stringFlag(values, 'region'));
    const outcome = await watchDeployed(id, output, clients, new StackOutputs(clients, values));
    return reportOutcome(output, outcome);
  }
  const path = executionLogPath(stringFlag(values, 'state-dir') ?? DEFAULT_STATE_DIR, id);
  const display = new LiveDisplay(output);
  const events: ExecutionEvent[] = [];
  let header: ExecutionLogHeader | undefined;
  let outcome: ExecutionOutcome = { executionId: id, status: 'RUNNING' };
  for await (const record of readExecutionLog(path, { follow: true })) {
    if (record.type === 'Execution') {
      header = record as ExecutionLogHeader;
      note(output, `${header.kind} execution ${id}, started ${header.at} by process ${header.pid}`);
    } else if (record.type === 'ExecutionResult') {
      const {
        type: _type,
        at: _at,
        ...result
      } = record as Extract<typeof record, { type: 'ExecutionResult' }>;
      outcome = { executionId: id, ...result };
    } else {
      events.push(record as ExecutionEvent);
      display.event(record as ExecutionEvent);
    }
  }
  display.close();
  if (outcome.status === 'INTERRUPTED')
    display.event({
      type: 'ExecutionFailed',
      error: outcome.error,
      cause: outcome.cause,
      at: new Date().toISOString(),
    });
  return reportOutcome(output, outcome, { kind: header?.kind, input: header?.input, events });
}
