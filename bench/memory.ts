import type { OneExportInput } from './one-export.ts';
import { timedChild } from './child.ts';

export interface ChildExport {
  readonly bytes: number;
  /** The exportToS3 call alone (GET, validation, sha256, every part, the completion). */
  readonly seconds: number;
  /** Spawn to exit, as the bench timed it. */
  readonly processSeconds: number;
  readonly partSize: number;
  readonly maxRssKiB: number;
  /** Sampled every 50 ms: V8's heap and the Buffers outside it. */
  readonly peakHeapMiB: number;
  readonly peakArrayBuffersMiB: number;
  /** User and system CPU of the whole process. */
  readonly cpuMs: number;
}

/**
 * Runs bench/export-child.ts in a fresh Node process and returns what it measured, with the process's
 * own wall time. `nodeArgs` go to that process (the bench's `--cpu-prof`).
 */
export async function exportInChild(
  input: OneExportInput,
  nodeArgs: readonly string[] = [],
): Promise<ChildExport> {
  const run = await timedChild<Omit<ChildExport, 'processSeconds'>>(
    'bench/export-child.ts',
    'VDI_VAULT_BENCH_EXPORT',
    input,
    nodeArgs,
  );
  return { ...run.result, processSeconds: run.seconds };
}
