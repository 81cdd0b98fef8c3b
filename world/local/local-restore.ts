import type { RestoreResult } from '../../lambdas/restore/state.ts';
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
