import { loadConfigFile } from '../../infra/config/config.ts';
import { parseBackupInput, type ParsedBackupInput } from '../../lambdas/backup/input.ts';
import {
  COMMON_FLAGS,
  EXECUTION_FLAGS,
  helpText,
  parseCommandArgs,
  stringFlag,
  type FlagValues,
} from '../args.ts';
import { UsageError, type ExitCode } from '../exit-codes.ts';
import { execute, type CommandContext } from '../execute.ts';
import { printLine } from '../output.ts';
import { reportOutcome } from '../summaries.ts';
import { validated } from '../validated.ts';

const FLAGS = {
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
  'vdi-vault backup [<vdi-uuid>…] [--mode auto|full] [--job <name> --config <file>] [--local …] [--json]';
const DESCRIPTION =
  'Backs up VDIs now: a snapshot, a full or delta VHD export streamed into S3, a manifest in the catalog.';

export async function backupCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs('backup', args, FLAGS);
  if (values.help) {
    printLine(context.output, helpText(USAGE, DESCRIPTION, FLAGS));
    return 0;
  }
  const input = backupInput(values, positionals);
  return reportOutcome(context.output, await execute('backup', input, values, context));
}

/** The workflow input from the command line, validated as the workflow will validate it. */
function backupInput(values: FlagValues, positionals: readonly string[]): ParsedBackupInput {
  const jobName = stringFlag(values, 'job');
  const mode = stringFlag(values, 'mode');
  const pool = stringFlag(values, 'pool');
  if (jobName === undefined) {
    if (positionals.length === 0) {
      throw new UsageError('backup needs at least one VDI uuid, or --job <name> with --config <file>');
    }
    return validated(() =>
      parseBackupInput({
        vdiUuids: positionals,
        ...(mode !== undefined ? { mode } : {}),
        ...(pool !== undefined ? { pool } : {}),
      }),
    );
  }
  if (positionals.length) throw new UsageError('give either VDI uuids or --job, not both');
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
      vdiUuids: job.vdiUuids,
      pool: job.pool,
      mode: mode ?? job.mode ?? 'auto',
      ...(job.retention ? { retention: job.retention } : {}),
    }),
  );
}
