import { TRANSFER_PROCESS_ENV } from '../lambdas/transfer/process-env.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { OneExportInput } from './one-export.ts';
import { childEnv, NODE, REPO } from './paths.ts';

const run = promisify(execFile);

export interface ChildExport {
  readonly bytes: number;
  readonly seconds: number;
  readonly partSize: number;
  readonly maxRssKiB: number;
  /** Sampled every 50 ms: V8's heap and the Buffers outside it. */
  readonly peakHeapMiB: number;
  readonly peakArrayBuffersMiB: number;
}

/**
 * Runs bench/export-child.ts in a fresh Node process and returns what it measured. A crash there (even an
 * uncatchable one inside a dependency) fails this one measurement, with the child's last words.
 */
export async function exportInChild(input: OneExportInput): Promise<ChildExport> {
  const { stdout } = await run(NODE, ['bench/export-child.ts'], {
    cwd: REPO,
    // The environment a deployed transfer gets (TRANSFER_PROCESS_ENV), so memory is measured as in AWS.
    env: childEnv({ ...TRANSFER_PROCESS_ENV, VDI_VAULT_BENCH_EXPORT: JSON.stringify(input) }),
    maxBuffer: 1 << 20,
  }).catch((error: { stderr?: string; message: string }) => {
    const lines = (error.stderr ?? '')
      .split('\n')
      .filter((line) => line.trim() && !line.includes('ExperimentalWarning'));
    const reason = lines.find((line) => /Error|assert/.test(line)) ?? lines.at(-1) ?? error.message;
    throw new Error(`the export process failed: ${reason.trim()}`, { cause: error });
  });
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as ChildExport;
}
