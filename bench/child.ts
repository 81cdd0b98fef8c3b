import { spawn } from 'node:child_process';
import { TRANSFER_PROCESS_ENV } from '../lambdas/transfer/process-env.ts';
import { childEnv, NODE, REPO } from './paths.ts';

export interface TimedChild<T> {
  /** Spawn to exit: start-up, module loading, login and logout included, as for the peer's processes. */
  readonly seconds: number;
  /** The child's last stdout line, parsed. */
  readonly result: T;
}

/**
 * Runs `node <script>` from the repository with `input` as JSON in the environment variable `inputEnv`
 * (the environment, not argv: it carries the simulator's password) and the environment a deployed
 * transfer gets (TRANSFER_PROCESS_ENV), and times it from spawn to exit. A crash fails this one
 * measurement with the child's last words. `nodeArgs` go before the script (e.g. `--cpu-prof`).
 */
export function timedChild<T>(
  script: string,
  inputEnv: string,
  input: unknown,
  nodeArgs: readonly string[] = [],
): Promise<TimedChild<T>> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(NODE, [...nodeArgs, script], {
      cwd: REPO,
      env: childEnv({ ...TRANSFER_PROCESS_ENV, [inputEnv]: JSON.stringify(input) }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const seconds = (performance.now() - started) / 1000;
      if (code === 0) {
        const last = stdout.trim().split('\n').pop() ?? '';
        resolve({ seconds, result: JSON.parse(last) as T });
        return;
      }
      const lines = stderr.split('\n').filter((line) => line.trim() && !line.includes('ExperimentalWarning'));
      const reason =
        lines.find((line) => /Error|assert/.test(line)) ?? lines.at(-1) ?? `exit ${code ?? signal}`;
      reject(new Error(`${script} failed: ${reason.trim()}`));
    });
  });
}

/** One figure over several runs: the median is the figure, min and max say how steady it was. */
export interface Spread {
  readonly min: number;
  readonly max: number;
  /** Each run's value, in run order. */
  readonly runs: readonly number[];
}

export function median(values: readonly number[]): number {
  if (!values.length) throw new Error('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function spreadOf(values: readonly number[], digits = 1): Spread {
  const round = (value: number) => Math.round(value * 10 ** digits) / 10 ** digits;
  return { min: round(Math.min(...values)), max: round(Math.max(...values)), runs: values.map(round) };
}
