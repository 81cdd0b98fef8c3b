/**
 * The CLI's `--local` mode: the one module of the product that imports the development world (`world/`),
 * because `--local` runs the stack on this machine through the local runner instead of in AWS. `execute.ts`
 * loads it by dynamic import only when `--local` is given, so a deployed run, `list`, `verify` and
 * `--help` never load the runner (nor the CDK app it synthesizes); the runner itself is loaded only once
 * the flags are known good.
 */
import { readFileSync } from 'node:fs';
import type { LocalTarget } from '../world/local/local-target.ts';
import {
  DEFAULT_CATALOG_PREFIX,
  DEFAULT_LOCAL_POOL,
  DEFAULT_XAPI_USER,
} from '../lambdas/runtime/defaults.ts';
import { stringFlag, type FlagValues } from './args.ts';
import { requireBucket, s3EndpointFromFlags } from './catalog-access.ts';
import type { ExecutionEvent } from './execution-events.ts';
import { UsageError } from './exit-codes.ts';

/**
 * A step of an execution as the CLI shows it, local or deployed: the local runner's event, whose names are
 * those of Step Functions' history (`StateEntered`, `StateFailed`…), onto which deployed.ts maps a
 * deployed execution's history.
 */
export type { WorkflowEvent } from '../world/local/run-workflow.ts';

/** What the local runner needs, from `--xapi-*`, `--s3-*`, `--bucket`, `--prefix` and `--pool`. */
export function localTargetFromFlags(values: FlagValues, env: NodeJS.ProcessEnv, pool?: string): LocalTarget {
  const url = stringFlag(values, 'xapi-url');
  if (url === undefined)
    throw new UsageError('--local needs --xapi-url (the pool master, e.g. https://xcp-master)');
  const password = stringFlag(values, 'xapi-password') ?? env.VDI_VAULT_XAPI_PASSWORD;
  if (password === undefined) {
    throw new UsageError(
      '--local needs the XAPI password: set VDI_VAULT_XAPI_PASSWORD (or give --xapi-password)',
    );
  }
  const caFile = stringFlag(values, 'xapi-ca');
  let caPem: string | undefined;
  if (caFile !== undefined) {
    try {
      caPem = readFileSync(caFile, 'utf8');
    } catch (error) {
      throw new UsageError(`--xapi-ca: cannot read ${caFile}: ${(error as Error).message}`);
    }
  }
  return {
    xapi: {
      url,
      username: stringFlag(values, 'xapi-user') ?? DEFAULT_XAPI_USER,
      password,
      ...(caPem !== undefined ? { tls: { caPem } } : {}),
    },
    pool: pool ?? stringFlag(values, 'pool') ?? DEFAULT_LOCAL_POOL,
    s3: s3EndpointFromFlags(values, env),
    bucket: requireBucket(values),
    prefix: stringFlag(values, 'prefix') ?? DEFAULT_CATALOG_PREFIX,
  };
}

/** Where a local run goes, for its execution log: no credentials. */
export function describeLocalTarget(target: LocalTarget) {
  return {
    xapiUrl: target.xapi.url,
    xapiUser: target.xapi.username,
    pool: target.pool,
    s3Endpoint: target.s3.endpoint ?? null,
    bucket: target.bucket,
    prefix: target.prefix,
  };
}

/** Runs the synthesized workflow through the local runner, then closes the local deployment it started. */
export async function runLocally(
  kind: 'backup' | 'restore',
  target: LocalTarget,
  input: { readonly pool?: string },
  onEvent: (event: ExecutionEvent) => void,
) {
  try {
    return kind === 'backup'
      ? await (await import('../world/local/local-backup.ts')).runLocalBackup(target, input, onEvent)
      : await (await import('../world/local/local-restore.ts')).runLocalRestore(target, input, onEvent);
  } finally {
    await (await import('../world/local/local-deployments.ts')).closeLocalDeployment(target);
  }
}
