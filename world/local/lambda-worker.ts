/**
 * One local Lambda execution environment: a worker thread with the function's own environment that
 * imports its code (the TypeScript entry, or the bundle from cdk.out) once, then runs one invocation at a
 * time, like the Lambda runtime: a JSON result, or an error reported by its name.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';

interface WorkerData {
  readonly module: string;
  readonly handler: string;
  readonly functionName: string;
  readonly memoryMiB: number;
  readonly region: string;
  readonly accountId: string;
}

interface Invocation {
  readonly id: number;
  readonly event: string;
  readonly deadline: number;
  readonly traceId: string;
}

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

const data = workerData as WorkerData;
const port = parentPort!;
let handler: Handler;
try {
  const module = (await import(pathToFileURL(data.module).href)) as Record<string, unknown>;
  const exported = module[data.handler];
  if (typeof exported !== 'function') {
    throw new Error(`${data.module} has no handler export "${data.handler}" (Runtime.HandlerNotFound)`);
  }
  handler = exported as Handler;
  port.postMessage({ ready: true });
} catch (error) {
  port.postMessage({ initError: describe(error) });
}

port.on('message', (invocation: Invocation) => {
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
    (error: unknown) => port.postMessage({ id: invocation.id, error: describe(error) }),
  );
});

function describe(error: unknown): { errorType: string; errorMessage: string } {
  return error instanceof Error
    ? { errorType: error.name, errorMessage: error.message }
    : { errorType: 'Error', errorMessage: String(error) };
}
