/**
 * The container entrypoint: runs one transfer step (an export or an import) on ECS Fargate with the same
 * domain code the Lambdas run, for transfers that may outlive a Lambda's 15 minutes. It reads its
 * parameters from the environment the workflow sets, and writes its result to S3 where the workflow's next
 * state reads it. Exit codes: 0 a result was written (success or the step's own failure), 1 no result could
 * be written, 2 bad parameters.
 */
import { createBackupSteps } from '../backup/steps.ts';
import { createRestoreSteps } from '../restore/steps.ts';
import { runtimeFromEnvironment } from '../handlers/runtime-env.ts';
import {
  parseTransferParameters,
  writeTransferResult,
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
  const run = stepRunner(runtime, parameters.step);
  let result;
  try {
    result = {
      status: 'succeeded' as const,
      step: parameters.step,
      output: await run(parameters.input as never),
    };
  } catch (error) {
    const failure = error instanceof Error ? error : new Error(String(error));
    runtime.log.error('transfer failed', {
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

function stepRunner(
  runtime: ReturnType<typeof runtimeFromEnvironment>,
  step: TransferStep,
): (input: never) => Promise<unknown> {
  switch (step) {
    case 'backup.export':
      return createBackupSteps(runtime).export;
    case 'restore.importLayer':
      return createRestoreSteps(runtime).importLayer;
    case 'restore.importMerged':
      return createRestoreSteps(runtime).importMerged;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`vdi-vault transfer: ${String(error)}\n`);
    process.exit(1);
  },
);
