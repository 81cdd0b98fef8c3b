// @ts-check
/**
 * One local Lambda execution environment: a worker thread with the function's own environment that
 * imports its code (the bundle from cdk.out, or the TypeScript entry) once, then runs one invocation at a
 * time, like the Lambda runtime: a JSON result, or an error reported by its name.
 *
 * Plain JavaScript (type-checked from its JSDoc), not TypeScript: a `.ts` worker entry makes every new
 * worker load Node's type stripper first, which doubled each cold start (about 150 ms more), and a test
 * suite cold-starts functions thousands of times.
 */
import { enableCompileCache, flushCompileCache } from 'node:module';
import { tmpdir } from 'node:os';
import process from 'node:process';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';

/**
 * @typedef {{ readonly module: string; readonly handler: string; readonly functionName: string;
 *   readonly memoryMiB: number; readonly region: string; readonly accountId: string }} WorkerData
 * @typedef {{ readonly id: number; readonly event: string; readonly deadline: number;
 *   readonly traceId: string }} Invocation
 * @typedef {(event: unknown, context: unknown) => Promise<unknown>} Handler
 */

// V8's code cache on disk makes each import of a 1 MB bundle about a third cheaper; it changes no
// behaviour, only what parsing costs.
enableCompileCache(join(tmpdir(), 'vdi-vault-compile-cache'));

const data = /** @type {WorkerData} */ (workerData);
const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);
/** @type {Handler} */
let handler;
try {
  const module = /** @type {Record<string, unknown>} */ (await import(pathToFileURL(data.module).href));
  const exported = module[data.handler];
  if (typeof exported !== 'function') {
    throw new Error(`${data.module} has no handler export "${data.handler}" (Runtime.HandlerNotFound)`);
  }
  handler = /** @type {Handler} */ (exported);
  flushCompileCache(); // now, not at exit: the service terminates its workers
  port.postMessage({ ready: true });
} catch (error) {
  port.postMessage({ initError: describe(error) });
}

port.on('message', (/** @type {Invocation} */ invocation) => {
  // The runtime hands each invocation its trace header; Powertools' tracer reads it from here.
  process.env._X_AMZN_TRACE_ID = invocation.traceId;
  const requestId = `${invocation.id.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: data.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${data.region}:${data.accountId}:function:${data.functionName}`,
    memoryLimitInMB: String(data.memoryMiB),
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${data.functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, invocation.deadline - Date.now()),
  };
  handler(JSON.parse(invocation.event), context).then(
    (result) => port.postMessage({ id: invocation.id, result: JSON.stringify(result ?? null) }),
    (/** @type {unknown} */ error) => port.postMessage({ id: invocation.id, error: describe(error) }),
  );
});

/**
 * @param {unknown} error
 * @returns {{ errorType: string; errorMessage: string }}
 */
function describe(error) {
  return error instanceof Error
    ? { errorType: error.name, errorMessage: error.message }
    : { errorType: 'Error', errorMessage: String(error) };
}
