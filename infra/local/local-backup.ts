import { createBackupSteps } from '../../lambdas/backup/steps.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import { localDeps, localHandlers, type LocalTarget } from './local-target.ts';
import { runWorkflow, type WorkflowEvent, type WorkflowRun } from './run-workflow.ts';
import { synthesizeWorkflows } from './synthesized-workflows.ts';

export type { LocalTarget } from './local-target.ts';

/** The backup steps wired to a local target: the same domain functions the Lambdas run. */
export function localBackupSteps(target: LocalTarget) {
  return createBackupSteps({
    ...localDeps(target),
    ...(target.exportTuning ? { exportTuning: target.exportTuning } : {}),
    ...(target.onExportProgress ? { onExportProgress: target.onExportProgress } : {}),
    ...(target.lock ? { lock: target.lock } : {}),
  });
}

export type LocalBackupRun = WorkflowRun & { readonly summary?: BackupSummary };

/** Runs the synthesized backup state machine locally. */
export async function runLocalBackup(
  target: LocalTarget,
  input: unknown,
  onEvent?: (event: WorkflowEvent) => void,
): Promise<LocalBackupRun> {
  const run = await runWorkflow(
    synthesizeWorkflows().backup,
    localHandlers(target, localBackupSteps(target)),
    input,
    onEvent,
  );
  return run.status === 'SUCCEEDED' ? { ...run, summary: run.output as BackupSummary } : run;
}
