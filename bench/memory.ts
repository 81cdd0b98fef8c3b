import type { OneExportInput } from './one-export.ts';
import type { RestoreChildInput } from './restore-child.ts';
import { timedChild } from './child.ts';
import type { SampledResources } from './sampler.ts';

export interface ChildExport extends SampledResources {
  readonly bytes: number;
  /** What the export hashed: the manifest's sha256 of the stored object. */
  readonly sha256: string;
  /** The exportToS3 call alone (GET, validation, sha256, every part, the completion). */
  readonly seconds: number;
  /** Spawn to exit, as the bench timed it. */
  readonly processSeconds: number;
  readonly partSize: number;
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

/** Runs bench/restore-child.ts in a fresh Node process (the environment a deployed transfer gets). */
export async function restoreInChild(input: RestoreChildInput) {
  const run = await timedChild<SampledResources & { readonly bytes: number; readonly seconds: number }>(
    'bench/restore-child.ts',
    'VDI_VAULT_BENCH_RESTORE',
    input,
  );
  return run.result;
}
