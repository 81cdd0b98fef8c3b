/**
 * The Lambda service of the local world: each function of the synthesized template runs in worker threads
 * with the `Environment.Variables` of its template entry (only endpoints and credentials overridden, as
 * Lambda injects its own), its memory and timeout, and its `Handler` export, from the TypeScript entry or
 * from the bundle `cdk synth` wrote. One invocation per worker at a time, as in Lambda; a busy function
 * gets another worker (a cold start).
 */
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./lambda-worker.mjs', import.meta.url));

export interface LocalFunction {
  readonly logicalId: string;
  readonly functionName: string;
  /** The module to import: `lambdas/handlers/<workflow>.ts`, or `<asset dir>/index.mjs`. */
  readonly module: string;
  /** The export named by the template's `Handler` (`index.<export>`). */
  readonly handler: string;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  /** The function's environment, as Lambda would give it (template variables plus Lambda's own). */
  readonly environment: Readonly<Record<string, string>>;
}

/** A failed invocation, named as Step Functions sees it (`errorType`). */
export class LambdaInvocationError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

interface Environment {
  readonly worker: Worker;
  busy: boolean;
  /** Terminated (timed out or exited): never handed out again. */
  dead?: boolean;
  /** Set while an invocation runs: what to do when the worker answers or dies. */
  pending?: { resolve(value: unknown): void; reject(error: Error): void };
}

export interface InvokeOptions {
  /** Tests: when it resolves, the function is killed as by its time limit (no clean-up runs). */
  readonly killWhen?: Promise<void>;
}

export interface LocalLambdaService {
  invoke(logicalId: string, event: unknown, options?: InvokeOptions): Promise<unknown>;
  /** Cold starts so far, by function. */
  readonly coldStarts: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

export function startLambdaService(
  functions: ReadonlyMap<string, LocalFunction>,
  options: { onLog?: (functionName: string, line: string) => void; region: string; accountId: string },
): LocalLambdaService {
  const pools = new Map<string, Environment[]>();
  const coldStarts: Record<string, number> = {};
  let nextId = 1;
  let closed = false;

  function spawn(fn: LocalFunction): Promise<Environment> {
    coldStarts[fn.logicalId] = (coldStarts[fn.logicalId] ?? 0) + 1;
    const worker = new Worker(WORKER, {
      env: { ...fn.environment },
      workerData: {
        module: fn.module,
        handler: fn.handler,
        functionName: fn.functionName,
        memoryMiB: fn.memoryMiB,
        region: options.region,
        accountId: options.accountId,
      },
      stdout: true,
      stderr: true,
    });
    worker.unref();
    const forward = (stream: NodeJS.ReadableStream) => {
      let rest = '';
      stream.on('data', (chunk: Buffer) => {
        const lines = (rest + chunk.toString()).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line) options.onLog?.(fn.functionName, line);
      });
    };
    forward(worker.stdout);
    forward(worker.stderr);
    const environment: Environment = { worker, busy: true };
    return new Promise((resolve, reject) => {
      worker.on('message', (message: Record<string, unknown>) => {
        if (message.ready) return resolve(environment);
        if (message.initError) {
          const { errorType, errorMessage } = message.initError as Record<string, string>;
          return reject(
            new LambdaInvocationError(errorType ?? 'Runtime.ImportModuleError', errorMessage ?? ''),
          );
        }
        const pending = environment.pending;
        environment.pending = undefined;
        if (!pending) return;
        if (message.error) {
          const { errorType, errorMessage } = message.error as Record<string, string>;
          pending.reject(new LambdaInvocationError(errorType ?? 'Error', errorMessage ?? ''));
        } else pending.resolve(JSON.parse(message.result as string));
      });
      worker.on('error', (error) => {
        environment.pending?.reject(new LambdaInvocationError('Runtime.ExitError', String(error)));
        environment.pending = undefined;
        reject(error);
      });
      worker.on('exit', () => {
        environment.dead = true;
        environment.pending?.reject(new LambdaInvocationError('Runtime.ExitError', 'the runtime exited'));
        environment.pending = undefined;
        const pool = pools.get(fn.logicalId);
        if (pool)
          pools.set(
            fn.logicalId,
            pool.filter((candidate) => candidate !== environment),
          );
      });
    });
  }

  async function acquire(fn: LocalFunction): Promise<Environment> {
    const pool = pools.get(fn.logicalId) ?? [];
    pools.set(fn.logicalId, pool);
    const idle = pool.find((candidate) => !candidate.busy && !candidate.dead);
    if (idle) {
      idle.busy = true;
      return idle;
    }
    const environment = await spawn(fn);
    pool.push(environment);
    return environment;
  }

  return {
    coldStarts,
    async invoke(logicalId, event, invokeOptions = {}) {
      if (closed) throw new Error('the local Lambda service is closed');
      const fn = functions.get(logicalId);
      if (!fn)
        throw new LambdaInvocationError('ResourceNotFoundException', `Function not found: ${logicalId}`);
      const environment = await acquire(fn);
      const deadline = Date.now() + fn.timeoutSeconds * 1000;
      const outcome = new Promise<unknown>((resolve, reject) => (environment.pending = { resolve, reject }));
      const timedOut = () => {
        // Lambda freezes and discards the environment: nothing in it runs on (no finally, no abort).
        environment.dead = true;
        void environment.worker.terminate();
        environment.pending?.reject(
          new LambdaInvocationError(
            'Sandbox.Timedout',
            `Task timed out after ${((Date.now() - deadline) / 1000 + fn.timeoutSeconds).toFixed(2)} seconds`,
          ),
        );
        environment.pending = undefined;
      };
      const timer = setTimeout(timedOut, fn.timeoutSeconds * 1000);
      timer.unref();
      void invokeOptions.killWhen?.then(() => environment.pending && timedOut());
      environment.worker.postMessage({
        id: nextId++,
        // Lambda passes JSON, not objects: what cannot be serialised never reaches a function.
        event: JSON.stringify(event ?? null),
        deadline,
        traceId: `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=1`,
      });
      try {
        return await outcome;
      } finally {
        clearTimeout(timer);
        environment.busy = false;
      }
    },
    async close() {
      closed = true;
      const all = [...pools.values()].flat();
      pools.clear();
      await Promise.all(all.map((environment) => environment.worker.terminate()));
    },
  };
}
