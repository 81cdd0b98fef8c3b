import type { RestoreResult } from '../../lambdas/restore/state.ts';
import type { VmRestoreResult } from '../../lambdas/vm/restore-vm.ts';
import { localDeploymentOf } from './local-deployments.ts';
import type { LocalTarget } from './local-target.ts';
import type { WorkflowEvent, WorkflowRun } from './run-workflow.ts';

export type LocalRestoreRun = WorkflowRun & { readonly result?: RestoreResult };

/** Runs the synthesized restore state machine locally, as deployed. */
export async function runLocalRestore(
  target: LocalTarget,
  input: unknown,
  onEvent?: (event: WorkflowEvent) => void,
): Promise<LocalRestoreRun> {
  const run = await (await localDeploymentOf(target)).runRestore(input, onEvent);
  return run.status === 'SUCCEEDED' ? { ...run, result: run.output as RestoreResult } : run;
}

export type LocalVmRestoreRun = WorkflowRun & { readonly result?: VmRestoreResult };

/** A VM restore (input naming `vmUuid`) through the same synthesized restore state machine. */
export async function runLocalVmRestore(
  target: LocalTarget,
  input: unknown,
  onEvent?: (event: WorkflowEvent) => void,
): Promise<LocalVmRestoreRun> {
  const run = await (await localDeploymentOf(target)).runRestore(input, onEvent);
  return run.status === 'SUCCEEDED' ? { ...run, result: run.output as VmRestoreResult } : run;
}
