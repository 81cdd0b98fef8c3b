/**
 * The backup workflow's Lambda entry: one bundle, one handler per step (the table in
 * `lambdas/runtime/step-table.ts` names them; each function's `Handler` is `index.<step>`). The Fargate task
 * and the local runner call the same handlers.
 */
import { createBackupSteps, type BackupSteps } from '../backup/steps.ts';
import type { MergeOutcome } from '../backup/state.ts';
import { BACKUP_STEPS } from '../runtime/step-table.ts';
import { addCount, addTransferMetrics, stepHandler } from './observability.ts';
import { runtimeFromEnvironment } from './runtime-env.ts';

let built: BackupSteps | undefined;
/** Built on first use, once per container, from this function's environment. */
const steps = (): BackupSteps => (built ??= createBackupSteps(runtimeFromEnvironment()));

type Step<K extends keyof BackupSteps> = BackupSteps[K];
const handle = <K extends keyof typeof BACKUP_STEPS & keyof BackupSteps>(
  name: K,
  measure?: (event: Parameters<Step<K>>[0], result: Awaited<ReturnType<Step<K>>>, ms: number) => void,
) =>
  stepHandler(
    `backup.${name}`,
    (event: Parameters<Step<K>>[0]) =>
      (steps()[name] as (e: typeof event) => Promise<Awaited<ReturnType<Step<K>>>>)(event),
    measure,
  );

const exported = (result: { bytes: number; startedAt: string; endedAt: string }) =>
  addTransferMetrics('Exported', result.bytes, Date.parse(result.endedAt) - Date.parse(result.startedAt));

export const login = handle('login');
export const snapshotVms = handle('snapshotVms');
export const commitVms = handle('commitVms');
export const plan = handle('plan');
export const snapshot = handle('snapshot');
export const createTask = handle('createTask');
const exportStep = handle('export', (_event, result) => exported(result));
export { exportStep as export };
export const prepareFargateRetry = handle('prepareFargateRetry');
export const collectExport = handle('collectExport', (_event, result) => exported(result));
export const commit = handle('commit');
const merged = (result: MergeOutcome) => {
  if (result.status === 'merged') addCount('MergeSucceeded');
  if (result.status === 'failed') addCount('MergeFailed');
};
export const merge = handle('merge', (_event, result) => merged(result));
export const collectMerge = handle('collectMerge', (_event, result) => merged(result));
export const cleanup = handle('cleanup', (_event, result) =>
  addCount('BackupSucceeded', { name: 'kind', value: result.kind ?? 'unknown' }),
);
export const failureCleanup = handle('failureCleanup', () => addCount('BackupFailed'));
export const logout = handle('logout');
