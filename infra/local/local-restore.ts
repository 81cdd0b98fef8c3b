import { createRestoreSteps } from '../../lambdas/restore/steps.ts';
import type { RestoreResult } from '../../lambdas/restore/state.ts';
import { localDeps, localHandlers, type LocalTarget } from './local-target.ts';
import { runWorkflow, type WorkflowEvent, type WorkflowRun } from './run-workflow.ts';
import { synthesizeWorkflows } from './synthesized-workflows.ts';

export function localRestoreSteps(target: LocalTarget) {
  return createRestoreSteps({
    ...localDeps(target),
    ...(target.onImportProgress ? { onImportProgress: target.onImportProgress } : {}),
  });
}

export type LocalRestoreRun = WorkflowRun & { readonly result?: RestoreResult };

/** Runs the synthesized restore state machine locally. */
export async function runLocalRestore(
  target: LocalTarget,
  input: unknown,
  onEvent?: (event: WorkflowEvent) => void,
): Promise<LocalRestoreRun> {
  const run = await runWorkflow(
    synthesizeWorkflows().restore,
    localHandlers(target, localRestoreSteps(target)),
    input,
    onEvent,
  );
  return run.status === 'SUCCEEDED' ? { ...run, result: run.output as RestoreResult } : run;
}
