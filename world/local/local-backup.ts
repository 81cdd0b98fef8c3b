import type { BackupSummary } from '../../lambdas/backup/state.ts';
import { localDeploymentOf } from './local-deployments.ts';
import type { LocalTarget } from './local-target.ts';
import type { WorkflowEvent, WorkflowRun } from './run-workflow.ts';

export type { LocalTarget } from './local-target.ts';

export type LocalBackupRun = WorkflowRun & { readonly summary?: BackupSummary };

/** Runs the synthesized backup state machine locally, as deployed. */
export async function runLocalBackup(
  target: LocalTarget,
  input: unknown,
  onEvent?: (event: WorkflowEvent) => void,
): Promise<LocalBackupRun> {
  const run = await (await localDeploymentOf(target)).runBackup(input, onEvent);
  return run.status === 'SUCCEEDED' ? { ...run, summary: run.output as BackupSummary } : run;
}
