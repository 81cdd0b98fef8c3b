import { parseArgs } from 'node:util';
import {
  DEFAULT_CATALOG_PREFIX,
  DEFAULT_LOCAL_POOL,
  DEFAULT_STACK_NAME,
  DEFAULT_STATE_DIR,
  DEFAULT_XAPI_USER,
} from '../lambdas/runtime/defaults.ts';
import { UsageError } from './exit-codes.ts';

/** One flag: what parseArgs needs, plus what `--help` shows. */
export interface Flag {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  /** Shown after the flag in help, e.g. `<uuid>`. */
  readonly value?: string;
  readonly help: string;
}

export type Flags = Readonly<Record<string, Flag>>;

/** Where the command works: output, the catalog in S3, and a deployed stack (or `--local`). */
export const COMMON_FLAGS = {
  json: { type: 'boolean', help: 'print one JSON document on stdout (no progress, no colour)' },
  help: { type: 'boolean', help: 'show this help' },
  local: { type: 'boolean', help: 'run against --xapi-url and --s3-endpoint, without AWS' },
  pool: {
    type: 'string',
    value: '<name>',
    help: `pool name (local default \`${DEFAULT_LOCAL_POOL}\`; deployed default: the stack output DefaultPool)`,
  },
  bucket: {
    type: 'string',
    value: '<name>',
    help: 'backup bucket (deployed default: stack output BucketName)',
  },
  prefix: {
    type: 'string',
    value: '<prefix>',
    help: `catalog key prefix (local default \`${DEFAULT_CATALOG_PREFIX}\`; deployed default: stack output CatalogPrefix)`,
  },
  stack: {
    type: 'string',
    value: '<name>',
    help: `CloudFormation stack to read outputs from (default \`${DEFAULT_STACK_NAME}\`)`,
  },
  region: { type: 'string', value: '<region>', help: 'AWS region (default: the SDK chain, AWS_REGION)' },
  's3-endpoint': { type: 'string', value: '<url>', help: 'S3-compatible endpoint (default: AWS S3)' },
  's3-access-key': {
    type: 'string',
    value: '<key>',
    help: 'S3 access key (or VDI_VAULT_S3_ACCESS_KEY; default: the SDK chain)',
  },
  's3-secret-key': { type: 'string', value: '<key>', help: 'S3 secret key (or VDI_VAULT_S3_SECRET_KEY)' },
  // Accepted by every command (used by backup, restore and watch) so that one alias or script serves all.
  'xapi-url': { type: 'string', value: '<url>', help: '--local: pool master URL, e.g. https://xcp-master' },
  'xapi-user': {
    type: 'string',
    value: '<name>',
    help: `--local: XAPI user (default \`${DEFAULT_XAPI_USER}\`)`,
  },
  'xapi-password': {
    type: 'string',
    value: '<password>',
    help: '--local: XAPI password (better: VDI_VAULT_XAPI_PASSWORD; never printed)',
  },
  'xapi-ca': { type: 'string', value: '<file>', help: "--local: PEM file of the pool's CA or certificate" },
  'state-dir': {
    type: 'string',
    value: '<dir>',
    help: `--local: where execution logs go (default \`${DEFAULT_STATE_DIR}\`)`,
  },
} as const satisfies Flags;

/** Starting and following deployed executions. */
export const EXECUTION_FLAGS = {
  'backup-arn': { type: 'string', value: '<arn>', help: 'backup state machine (default: stack output)' },
  'restore-arn': { type: 'string', value: '<arn>', help: 'restore state machine (default: stack output)' },
  'no-wait': { type: 'boolean', help: 'deployed: print the execution ARN and return at once' },
} as const satisfies Flags;

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export interface ParsedArgs {
  readonly values: FlagValues;
  readonly positionals: readonly string[];
}

/** parseArgs in strict mode, with its errors turned into usage errors that name the flag. */
export function parseCommandArgs(command: string, args: readonly string[], flags: Flags): ParsedArgs {
  const options = Object.fromEntries(
    Object.entries(flags).map(([name, flag]) => [
      name,
      { type: flag.type, ...(flag.multiple ? { multiple: true } : {}) },
    ]),
  );
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options,
      strict: true,
      allowPositionals: true,
    });
    for (const [name, flag] of Object.entries(flags)) {
      // `--bucket=` is as missing as `--bucket` with nothing after it.
      if (flag.type === 'string' && values[name] === '') throw new UsageError(`missing value for --${name}`);
    }
    return { values: values as FlagValues, positionals };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const { code, message } = error as { code?: string; message: string };
    const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw new UsageError(`unknown flag ${flag} for \`vdi-vault ${command}\``);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      if (/does not take an argument/.test(message)) throw new UsageError(`${flag} takes no value`);
      throw new UsageError(`missing value for ${flag}`);
    }
    throw new UsageError(message);
  }
}

export function stringFlag(values: FlagValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A flag given any number of times (`multiple`): its values in order, none when absent. */
export function stringsFlag(values: FlagValues, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

export function booleanFlag(values: FlagValues, name: string): boolean {
  return values[name] === true;
}

/** Refuses flags that only make sense in the other mode, so a forgotten `--local` is not silently ignored. */
export function rejectFlags(values: FlagValues, names: readonly string[], why: string): void {
  const given = names.filter((name) => values[name] !== undefined);
  if (given.length) throw new UsageError(`${given.map((name) => `--${name}`).join(', ')}: ${why}`);
}

/** `--help` text: the usage line, a description, then every flag with its value and help. */
export function helpText(usage: string, description: string, flags: Flags): string {
  const rows = Object.entries(flags).map(([name, flag]) => [
    `--${name}${flag.value ? ' ' + flag.value : ''}`,
    flag.help,
  ]);
  const width = Math.max(...rows.map(([left]) => left!.length));
  return [
    `usage: ${usage}`,
    '',
    description,
    '',
    'flags:',
    ...rows.map(([left, right]) => `  ${left!.padEnd(width)}  ${right}`),
    '',
    'Exit codes: 0 ok, 1 execution failed, 2 usage error, 3 verification failed, 4 unavailable (docs/cli.md).',
  ].join('\n');
}
