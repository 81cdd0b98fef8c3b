import { createS3Client, type S3Endpoint } from '../../lambdas/s3/client.ts';
import { silentLog, type Log } from '../../lambdas/shared/log.ts';
import { poolDirectory } from '../../lambdas/shared/pools.ts';
import type { XapiTlsOptions } from '../../lambdas/xapi/index.ts';
import type { BackupDeps } from '../../lambdas/backup/steps.ts';
import type { BackupLockTable } from '../../lambdas/backup/backup-lock.ts';
import type { TransferRouting } from '../../lambdas/transfer/routing.ts';
import { lambdaThatTimesOut, localContainerRunner, type SimulatedLambdaTimeout } from './run-container.ts';
import { CONTAINER_STEP } from './synthesized-workflows.ts';
import type { RestoreDeps } from '../../lambdas/restore/steps.ts';

/** A pool and an S3 endpoint to run the workflows against, with no AWS account. */
export interface LocalTarget {
  readonly xapi: {
    readonly url: string;
    readonly username: string;
    readonly password: string;
    readonly tls?: XapiTlsOptions;
    readonly timeoutMs?: number;
  };
  /** Default pool name `local`. */
  readonly pool?: string;
  readonly s3: S3Endpoint;
  readonly bucket: string;
  /** Default `backups`. */
  readonly prefix?: string;
  readonly log?: Log;
  readonly exportTuning?: BackupDeps['exportTuning'];
  readonly onExportProgress?: BackupDeps['onExportProgress'];
  readonly onImportProgress?: RestoreDeps['onImportProgress'];
  /** The series lock table (one backup per VDI at a time). Default: none, runs are not serialised. */
  readonly lock?: BackupLockTable;
  /** Which transfers go to the (local) Fargate container. Default: all on Lambda. */
  readonly routing?: TransferRouting;
  /** Tests: one Lambda transfer step runs in a child process killed as by Lambda's time limit. */
  readonly simulateLambdaTimeout?: SimulatedLambdaTimeout;
}

/** What every step needs, built for a local target the way runtime-env builds it in Lambda. */
export function localDeps(target: LocalTarget) {
  const pool = target.pool ?? 'local';
  return {
    s3: createS3Client(target.s3),
    catalog: { bucket: target.bucket, prefix: target.prefix ?? 'backups' },
    pools: poolDirectory({
      [pool]: {
        connection: {
          url: target.xapi.url,
          ...(target.xapi.tls ? { tls: target.xapi.tls } : {}),
          ...(target.xapi.timeoutMs ? { timeoutMs: target.xapi.timeoutMs } : {}),
        },
        credentials: async () => ({ username: target.xapi.username, password: target.xapi.password }),
      },
    }),
    log: target.log ?? silentLog,
    ...(target.routing ? { routing: target.routing } : {}),
  };
}

/**
 * The local handlers of a workflow: its steps, the container runner for ECS task states, and, when a test
 * asks, one step replaced by a Lambda that runs out of time.
 */
export function localHandlers<T extends object>(
  target: LocalTarget,
  steps: T,
): Record<string, (input: never) => unknown> {
  const handlers: Record<string, (input: never) => unknown> = {
    ...(steps as Record<string, (input: never) => unknown>),
    [CONTAINER_STEP]: localContainerRunner(target) as (input: never) => unknown,
  };
  const timeout = target.simulateLambdaTimeout;
  if (timeout) handlers[timeout.step.split('.')[1]!] = lambdaThatTimesOut(target, timeout);
  return handlers;
}
