import { parseVmRestoreRequest } from '../../lambdas/restore/input.ts';
import {
  booleanFlag,
  COMMON_FLAGS,
  EXECUTION_FLAGS,
  helpText,
  parseCommandArgs,
  stringFlag,
  stringsFlag,
} from '../args.ts';
import { UsageError, type ExitCode } from '../exit-codes.ts';
import { execute, type CommandContext } from '../execute.ts';
import { printLine } from '../output.ts';
import { reportOutcome } from '../summaries.ts';
import { validated } from '../validated.ts';

/** One flag per field of the console input (README: "Restore a VM from the console"). */
const FLAGS = {
  'sr-uuid': { type: 'string', value: '<uuid>', help: 'the SR for every disk (or give --sr-map per disk)' },
  'sr-map': {
    type: 'string',
    multiple: true,
    value: '<slot|vdi-uuid>=<sr-uuid>',
    help: 'the SR for one disk, by slot or source VDI uuid (repeatable)',
  },
  'network-map': {
    type: 'string',
    multiple: true,
    value: '<old-uuid>=<new-uuid>',
    help: "a source network and the target pool's network for its VIFs (repeatable)",
  },
  'restore-point': {
    type: 'string',
    value: '<point>',
    help: '`latest` (default), a VM restore point id (`list --vm`), or an ISO time',
  },
  'name-label': { type: 'string', value: '<label>', help: "the new VM's name (default: the source's)" },
  'new-macs': { type: 'boolean', help: 'give the VIFs new MACs (when the source VM still runs)' },
  'keep-partial': { type: 'boolean', help: 'keep a partially restored VM and its disks after a failure' },
  ...COMMON_FLAGS,
  ...EXECUTION_FLAGS,
} as const;

const USAGE =
  'vdi-vault restore-vm <vm-uuid> --sr-uuid <uuid> [--sr-map <slot>=<sr>…] [--network-map <old>=<new>…] [--restore-point <point>] [--local …] [--json]';
const DESCRIPTION =
  'Restores a VM restore point into a new VM (never started): its disks in their slots, VIFs, NVRAM and vTPM.';

/** `a=b` pairs of a repeatable flag, as the input's map. */
function pairs(values: readonly string[], flag: string): Record<string, string> | undefined {
  if (values.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const value of values) {
    const [key, target, ...rest] = value.split('=');
    if (!key || !target || rest.length) throw new UsageError(`--${flag} takes <from>=<to>, got "${value}"`);
    map[key] = target;
  }
  return map;
}

export async function restoreVmCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs('restore-vm', args, FLAGS);
  if (values.help) {
    printLine(context.output, helpText(USAGE, DESCRIPTION, FLAGS));
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(`restore-vm takes one VM uuid (the backed-up VM), got ${positionals.length}`);
  }
  const field = (name: string, flag: string) => {
    const value = stringFlag(values, flag);
    return value !== undefined ? { [name]: value } : {};
  };
  const srMap = pairs(stringsFlag(values, 'sr-map'), 'sr-map');
  const networkMap = pairs(stringsFlag(values, 'network-map'), 'network-map');
  const request = validated(() =>
    parseVmRestoreRequest({
      vmUuid: positionals[0],
      ...field('srUuid', 'sr-uuid'),
      ...(srMap ? { srMap } : {}),
      ...(networkMap ? { networkMap } : {}),
      ...field('restorePoint', 'restore-point'),
      ...field('nameLabel', 'name-label'),
      ...field('pool', 'pool'),
      ...(booleanFlag(values, 'new-macs') ? { newMacs: true } : {}),
      ...(booleanFlag(values, 'keep-partial') ? { keepPartial: true } : {}),
    }),
  );
  return reportOutcome(context.output, await execute('restore', request, values, context));
}
