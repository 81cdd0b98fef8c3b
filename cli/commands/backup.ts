import { loadConfigFile } from '../../infra/config/config.ts';
import { parseBackupInput, type ParsedBackupInput } from '../../lambdas/backup/input.ts';
import {
  COMMON_FLAGS,
  EXECUTION_FLAGS,
  helpText,
  parseCommandArgs,
  stringFlag,
  stringsFlag,
  type FlagValues,
} from '../args.ts';
import { UsageError, type ExitCode } from '../exit-codes.ts';
import { execute, type CommandContext } from '../execute.ts';
import { printLine } from '../output.ts';
import { reportOutcome } from '../summaries.ts';
import { validated } from '../validated.ts';

const FLAGS = {
  vm: {
    type: 'string',
    multiple: true,
    value: '<vm-uuid>',
    help: 'back up a whole VM: every disk at once, and a VM restore point (repeatable)',
  },
  tag: {
    type: 'string',
    multiple: true,
    value: '<tag>',
    help: 'back up every VM carrying this tag when the run starts (repeatable)',
  },
  mode: {
    type: 'string',
    value: 'auto|full',
    help: 'auto (default): a delta when a base exists; full: always a full',
  },
  job: {
    type: 'string',
    value: '<name>',
    help: "back up a job's VDIs, pool, mode and retention (needs --config)",
  },
  config: { type: 'string', value: '<file>', help: 'the deployment configuration that defines --job' },
  ...COMMON_FLAGS,
  ...EXECUTION_FLAGS,
} as const;

const USAGE =
  'vdi-vault backup [<vdi-uuid>…] [--vm <vm-uuid>…] [--tag <tag>…] [--mode auto|full] [--job <name> --config <file>] [--local …] [--json]';
const DESCRIPTION =
  'Backs up VDIs and VMs now: a snapshot, a full or delta export streamed into S3, a manifest in the catalog ' +
  '(and for a VM, a VM restore point once every disk is in).';

export async function backupCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs('backup', args, FLAGS);
  if (values.help) {
    printLine(context.output, helpText(USAGE, DESCRIPTION, FLAGS));
    return 0;
  }
  const input = backupInput(values, positionals);
  return reportOutcome(context.output, await execute('backup', asStarted(input), values, context));
}

/** The input as the execution gets it: only the selections given (the console shows it so). */
function asStarted(input: ParsedBackupInput): Omit<ParsedBackupInput, 'vdiUuids' | 'vmUuids' | 'tags'> {
  const { vdiUuids, vmUuids, tags, ...rest } = input;
  return {
    ...(vdiUuids.length ? { vdiUuids } : {}),
    ...(vmUuids.length ? { vmUuids } : {}),
    ...(tags.length ? { tags } : {}),
    ...rest,
  };
}

/** The workflow input from the command line, validated as the workflow will validate it. */
function backupInput(values: FlagValues, positionals: readonly string[]): ParsedBackupInput {
  const jobName = stringFlag(values, 'job');
  const mode = stringFlag(values, 'mode');
  const pool = stringFlag(values, 'pool');
  const vmUuids = stringsFlag(values, 'vm');
  const tags = stringsFlag(values, 'tag');
  if (jobName === undefined) {
    if (positionals.length + vmUuids.length + tags.length === 0) {
      throw new UsageError(
        'backup needs a VDI uuid, --vm <vm-uuid> or --tag <tag>, or --job <name> with --config <file>',
      );
    }
    return validated(() =>
      parseBackupInput({
        ...(positionals.length ? { vdiUuids: positionals } : {}),
        ...(vmUuids.length ? { vmUuids } : {}),
        ...(tags.length ? { tags } : {}),
        ...(mode !== undefined ? { mode } : {}),
        ...(pool !== undefined ? { pool } : {}),
      }),
    );
  }
  if (positionals.length + vmUuids.length + tags.length)
    throw new UsageError('give either VDI uuids, --vm or --tag, or --job, not both');
  const configFile = stringFlag(values, 'config');
  if (configFile === undefined)
    throw new UsageError('--job needs --config <file> (the deployment configuration)');
  const config = validated(() => loadConfigFile(configFile));
  const job = config.jobs?.find((candidate) => candidate.name === jobName);
  if (!job) {
    const names = (config.jobs ?? []).map((candidate) => candidate.name).join(', ') || 'none';
    throw new UsageError(`--job: ${configFile} has no job "${jobName}" (jobs: ${names})`);
  }
  if (pool !== undefined && pool !== job.pool)
    throw new UsageError(`--pool ${pool}: job ${jobName} backs up pool ${job.pool}`);
  return validated(() =>
    parseBackupInput({
      ...(job.vdiUuids ? { vdiUuids: job.vdiUuids } : {}),
      ...(job.vmUuids ? { vmUuids: job.vmUuids } : {}),
      ...(job.tags ? { tags: job.tags } : {}),
      pool: job.pool,
      mode: mode ?? job.mode ?? 'auto',
      ...(job.retention ? { retention: job.retention } : {}),
    }),
  );
}
