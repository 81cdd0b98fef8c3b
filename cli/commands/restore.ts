import { parseRestoreRequest } from '../../lambdas/restore/input.ts';
import {
  booleanFlag,
  COMMON_FLAGS,
  EXECUTION_FLAGS,
  helpText,
  parseCommandArgs,
  stringFlag,
} from '../args.ts';
import { UsageError, type ExitCode } from '../exit-codes.ts';
import { execute, type CommandContext } from '../execute.ts';
import { printLine } from '../output.ts';
import { reportOutcome } from '../summaries.ts';
import { validated } from '../validated.ts';

/** One flag per field of the console input (README: "Restore from the console"). */
const FLAGS = {
  'sr-uuid': { type: 'string', value: '<uuid>', help: 'the SR to create the restored VDI in (required)' },
  'restore-point': {
    type: 'string',
    value: '<point>',
    help: '`latest` (default), a backup id, or an ISO time (the newest point at or before it)',
  },
  'name-label': {
    type: 'string',
    value: '<label>',
    help: "the new VDI's name (default: the source's, marked restored)",
  },
  strategy: {
    type: 'string',
    value: 'replay|merge',
    help: 'replay each layer (default) or import one merged stream',
  },
  'keep-partial': { type: 'boolean', help: 'keep a partially restored VDI after a failure, for inspection' },
  ...COMMON_FLAGS,
  ...EXECUTION_FLAGS,
} as const;

const USAGE =
  'vdi-vault restore <vdi-uuid> --sr-uuid <uuid> [--restore-point <point>] [--strategy replay|merge] [--local …] [--json]';
const DESCRIPTION = 'Restores a restore point of a backed-up VDI into a new VDI on the given SR.';

export async function restoreCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs('restore', args, FLAGS);
  if (values.help) {
    printLine(context.output, helpText(USAGE, DESCRIPTION, FLAGS));
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(`restore takes one VDI uuid (the backed-up VDI), got ${positionals.length}`);
  }
  const field = (name: string, flag: string) => {
    const value = stringFlag(values, flag);
    return value !== undefined ? { [name]: value } : {};
  };
  const request = validated(() =>
    parseRestoreRequest({
      vdiUuid: positionals[0],
      srUuid: stringFlag(values, 'sr-uuid'),
      ...field('restorePoint', 'restore-point'),
      ...field('nameLabel', 'name-label'),
      ...field('strategy', 'strategy'),
      ...field('pool', 'pool'),
      ...(booleanFlag(values, 'keep-partial') ? { keepPartial: true } : {}),
    }),
  );
  return reportOutcome(context.output, await execute('restore', request, values, context));
}
