import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { TRANSFER_PROCESS_ENV } from '../../lambdas/transfer/process-env.ts';
import {
  collectTransferResult,
  TRANSFER_ENV,
  transferResultKey,
} from '../../lambdas/transfer/transfer-task.ts';
import type { LocalTarget } from './local-target.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRYPOINT = fileURLToPath(new URL('../../lambdas/container/main.ts', import.meta.url));
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));

/** The environment the infrastructure gives the container, built for a local target. */
function containerEnvironment(target: LocalTarget): Record<string, string> {
  const pool = target.pool ?? 'local';
  const credentials = target.s3.credentials;
  return {
    VDI_VAULT_BUCKET: target.bucket,
    VDI_VAULT_PREFIX: target.prefix ?? 'backups',
    VDI_VAULT_POOLS: JSON.stringify({
      [pool]: { url: target.xapi.url, ...(target.xapi.tls?.caPem ? { caPem: target.xapi.tls.caPem } : {}) },
    }),
    VDI_VAULT_DEFAULT_POOL: pool,
    AWS_REGION: target.s3.region ?? 'us-east-1',
    ...(target.s3.endpoint ? { AWS_ENDPOINT_URL_S3: target.s3.endpoint } : {}),
    ...(credentials
      ? { AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey }
      : {}),
    POWERTOOLS_LOG_LEVEL: 'ERROR',
  };
}

function start(target: LocalTarget, transferEnv: Record<string, string>): ChildProcess {
  return spawn(NODE, [ENTRYPOINT], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      ...TRANSFER_PROCESS_ENV,
      ...containerEnvironment(target),
      ...transferEnv,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

interface EcsRunTaskParameters {
  readonly Overrides?: {
    readonly ContainerOverrides?: { readonly Environment?: { Name: string; Value: string }[] }[];
  };
}

/**
 * What an `ecs:runTask.sync` state does locally: runs the container entrypoint as a child process with the
 * container overrides' environment, and answers like ECS once it stopped. The container writes its result
 * to S3 where the next state reads it, exactly as on Fargate.
 */
export function localContainerRunner(target: LocalTarget) {
  return async (parameters: EcsRunTaskParameters) => {
    const overrides = parameters.Overrides?.ContainerOverrides?.[0]?.Environment ?? [];
    const child = start(target, Object.fromEntries(overrides.map((entry) => [entry.Name, entry.Value])));
    const { code, stderr } = await exited(child);
    if (code !== 0) {
      throw Object.assign(new Error(`the transfer container exited with ${code}: ${stderr.trim()}`), {
        name: 'States.TaskFailed',
      });
    }
    return { StopCode: 'EssentialContainerExited', Containers: [{ ExitCode: code }] };
  };
}

/** A Lambda step killed by its time limit: run here in a child process, SIGKILLed when `killWhen` resolves. */
export interface SimulatedLambdaTimeout {
  /** e.g. `backup.export`. */
  readonly step: string;
  readonly killWhen: () => Promise<void>;
}

/**
 * Runs a transfer step as a Lambda would, but in a child process that is killed without warning when the
 * simulated time limit strikes (no clean-up runs, as in Lambda), then fails with `States.Timeout`.
 */
export function lambdaThatTimesOut(target: LocalTarget, timeout: SimulatedLambdaTimeout) {
  return async (input: unknown) => {
    const catalog = { bucket: target.bucket, prefix: target.prefix ?? 'backups' };
    const resultKey = transferResultKey(catalog, `local-lambda-${randomUUID()}`);
    const child = start(target, {
      [TRANSFER_ENV.step]: timeout.step,
      [TRANSFER_ENV.input]: JSON.stringify(input),
      [TRANSFER_ENV.resultKey]: resultKey,
    });
    const done = exited(child);
    const killed = timeout.killWhen().then(() => 'killed' as const);
    if ((await Promise.race([done.then(() => 'done' as const), killed])) === 'killed') {
      child.kill('SIGKILL');
      await done;
      throw Object.assign(new Error(`${timeout.step} ran out of time`), { name: 'States.Timeout' });
    }
    return collectTransferResult(createS3Client(target.s3), catalog, resultKey);
  };
}
