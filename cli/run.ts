import { backupCommand } from './commands/backup.ts';
import { listCommand } from './commands/list.ts';
import { restoreCommand } from './commands/restore.ts';
import { restoreVmCommand } from './commands/restore-vm.ts';
import { verifyCommand } from './commands/verify.ts';
import { watchCommand } from './commands/watch.ts';
import { awsClients } from './deployed.ts';
import { EXIT, UnavailableError, UsageError, type ExitCode } from './exit-codes.ts';
import type { CommandContext } from './execute.ts';
import { createOutput, printJson, printLine } from './output.ts';

const COMMANDS = {
  backup: { run: backupCommand, summary: 'back up VDIs now (full or delta), or a job' },
  restore: { run: restoreCommand, summary: 'restore a restore point into a new VDI' },
  'restore-vm': {
    run: restoreVmCommand,
    summary: 'restore a VM restore point into a new VM (never started)',
  },
  list: { run: listCommand, summary: 'list the restore points of a VDI, with their chains' },
  watch: { run: watchCommand, summary: 'follow an execution step by step until it ends' },
  verify: {
    run: verifyCommand,
    summary: 're-read a chain from S3: VHD structure, size and sha256 against the manifests',
  },
} as const;

const HELP = [
  'usage: vdi-vault <command> [arguments] [flags]',
  '',
  'Backup and restore of XenServer / XCP-ng VDIs into S3, against a deployed stack or --local.',
  '',
  'commands:',
  ...Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(8)} ${command.summary}`),
  '',
  '`vdi-vault <command> --help` lists its flags. Reference: docs/cli.md.',
  'Exit codes: 0 ok, 1 execution failed, 2 usage error, 3 verification failed, 4 unavailable.',
].join('\n');

/** Runs one command line; returns the exit code. Everything that talks to the world comes in `context`. */
export async function run(argv: readonly string[], context: Partial<CommandContext> = {}): Promise<ExitCode> {
  const json = argv.includes('--json');
  const full: CommandContext = {
    output: context.output ?? createOutput(json),
    env: context.env ?? process.env,
    aws: context.aws ?? awsClients,
  };
  const { output } = full;
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    printLine(output, HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name as keyof typeof COMMANDS];
  try {
    if (!command)
      throw new UsageError(`unknown command "${name}" (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return await command.run(args, full);
  } catch (error) {
    const usage = error instanceof UsageError;
    const message = `vdi-vault${command ? ' ' + name : ''}: ${describeError(error)}`;
    output.stderr.write(`${output.errColour.red(message)}\n`);
    if (usage) output.stderr.write(`see \`vdi-vault ${command ? name + ' ' : ''}--help\`\n`);
    if (output.json) {
      printJson(output, {
        error: usage ? 'UsageError' : (error as Error).name,
        message: describeError(error),
      });
    }
    return usage ? EXIT.usage : EXIT.unavailable;
  }
}

function describeError(error: unknown): string {
  if (error instanceof UsageError || error instanceof UnavailableError) return error.message;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
