/**
 * The container entrypoint: runs one transfer step (an export or an import) on ECS Fargate with the same
 * domain code the Lambdas run, for transfers that may outlive a Lambda's 15 minutes. It reads its
 * parameters from the environment the workflow sets, and writes its result to S3 where the workflow's next
 * state reads it. Exit codes: 0 a result was written (success or the step's own failure), 1 no result could
 * be written, 2 bad parameters.
 */
import type { Context } from 'aws-lambda';
import * as backup from '../handlers/backup.ts';
import * as restore from '../handlers/restore.ts';
import { logger } from '../handlers/observability.ts';
import { runtimeFromEnvironment } from '../handlers/runtime-env.ts';
import { XapiSession } from '../xapi/index.ts';
import {
  parseTransferParameters,
  writeTransferResult,
  type TransferParameters,
  type TransferStep,
} from '../transfer/transfer-task.ts';

async function main(): Promise<number> {
  let parameters;
  try {
    parameters = parseTransferParameters(process.env);
  } catch (error) {
    process.stderr.write(`vdi-vault transfer: ${(error as Error).message}\n`);
    return 2;
  }
  const runtime = runtimeFromEnvironment();
  let result;
  try {
    result = {
      status: 'succeeded' as const,
      step: parameters.step,
      output: await withTaskSession(runtime, parameters.input as { pool: string }, (input) =>
        handlerOf(parameters.step)(input as never, fargateContext(parameters)),
      ),
    };
  } catch (error) {
    const failure = error instanceof Error ? error : new Error(String(error));
    logger.error('transfer failed', {
      step: parameters.step,
      error: failure.name,
      cause: failure.message,
    });
    result = {
      status: 'failed' as const,
      step: parameters.step,
      error: failure.name,
      cause: failure.message,
    };
  }
  try {
    await writeTransferResult(runtime.s3, runtime.catalog, parameters.resultKey, {
      ...result,
      endedAt: new Date().toISOString(),
    });
  } catch (error) {
    process.stderr.write(`vdi-vault transfer: could not write the result: ${String(error)}\n`);
    return 1;
  }
  return 0;
}

/**
 * The task gets no session (RunTask's parameters reach CloudTrail): it logs in once for the whole transfer
 * (a replay imports every layer on it) and logs out at the end. An expired session still logs in again.
 */
async function withTaskSession<T>(
  runtime: ReturnType<typeof runtimeFromEnvironment>,
  input: { readonly pool: string },
  run: (input: unknown) => Promise<T>,
): Promise<T> {
  const access = runtime.pools.get(input.pool);
  const session = await XapiSession.login(
    { ...access.connection, log: runtime.log },
    await access.credentials(),
  );
  try {
    return await run({ ...input, session: session.handle });
  } finally {
    await session.logout().catch(() => session.close());
  }
}

/** The same handler the step's Lambda runs (Powertools middleware included). */
function handlerOf(step: TransferStep): (input: never, context: Context) => Promise<unknown> {
  switch (step) {
    case 'backup.export':
      return backup.export;
    case 'backup.merge':
      return backup.merge;
    case 'restore.importLayer':
      return restore.importLayer;
    case 'restore.importMerged':
      return restore.importMerged;
    case 'restore.replayChain':
      return restore.replayChain;
  }
}

/** What the middleware reads of a Lambda context; a Fargate task has no deadline but XAPI's 24 hours. */
function fargateContext({ step, resultKey }: TransferParameters): Context {
  const deadline = Date.now() + 24 * 3600 * 1000;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: `fargate:${step}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `fargate:${step}`,
    memoryLimitInMB: '0',
    awsRequestId: resultKey,
    logGroupName: 'transfer',
    logStreamName: 'transfer',
    getRemainingTimeInMillis: () => deadline - Date.now(),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`vdi-vault transfer: ${String(error)}\n`);
    process.exit(1);
  },
);
