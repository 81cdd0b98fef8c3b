/**
 * The backup workflow's Lambda entry: one bundle, one handler per step (the table in
 * `lambdas/runtime/step-table.ts` names them; each function's `Handler` is `index.<step>`). The Fargate task
 * and the local runner call the same handlers.
 */
import { createBackupSteps, type BackupSteps } from '../backup/steps.ts';
import { newestRestorePoints } from '../catalog/newest-points.ts';
import type { BackupItemState, MergeOutcome } from '../backup/state.ts';
import { BACKUP_STEPS } from '../runtime/step-table.ts';
import { addTransferMetrics, publishForJob, publishMetric, stepHandler } from './observability.ts';
import { runtimeFromEnvironment, type RuntimeEnvironment } from './runtime-env.ts';

let runtime: RuntimeEnvironment | undefined;
let built: BackupSteps | undefined;
/** Built on first use, once per container, from this function's environment. */
const environment = (): RuntimeEnvironment => (runtime ??= runtimeFromEnvironment());
const steps = (): BackupSteps => (built ??= createBackupSteps(environment()));

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

const exported = (state: BackupItemState, result: { bytes: number; startedAt: string; endedAt: string }) =>
  addTransferMetrics(
    'Exported',
    result.bytes,
    Date.parse(result.endedAt) - Date.parse(result.startedAt),
    state.job,
  );

export const login = handle('login');
export const snapshotVms = handle('snapshotVms');
export const commitVms = handle('commitVms');
export const plan = handle('plan');
export const snapshot = handle('snapshot');
export const createTask = handle('createTask');
const exportStep = handle('export', (event, result) => exported(event, result));
export { exportStep as export };
export const prepareFargateRetry = handle('prepareFargateRetry');
export const collectExport = handle('collectExport', (event, result) => exported(event, result));
export const commit = handle('commit');
const merged = (state: BackupItemState, result: MergeOutcome) => {
  if (result.status === 'merged') publishForJob('MergeSucceeded', 1, state.job);
  if (result.status === 'failed') publishForJob('MergeFailed', 1, state.job);
};
export const merge = handle('merge', (event, result) => merged(event, result));
export const collectMerge = handle('collectMerge', (event, result) => merged(event, result));
export const cleanup = handle('cleanup', (event, result) =>
  publishForJob('BackupSucceeded', 1, event.job, { kind: result.kind ?? 'unknown' }),
);
export const failureCleanup = handle('failureCleanup', (event) =>
  publishForJob('BackupFailed', 1, event.job),
);
export const logout = handle('logout');

/**
 * Hourly, outside the workflows (`SCHEDULED_STEPS`): the age of each series' newest restore point, so the
 * dashboard shows a series going stale even when no backup runs to say so (docs/design.md § Dashboard and
 * metric names).
 */
export const publishCatalogMetrics = stepHandler('backup.publishCatalogMetrics', async () => {
  const { s3, catalog } = environment();
  const points = await newestRestorePoints(s3, catalog);
  for (const point of points)
    publishMetric('NewestRestorePointAge', point.ageSeconds, { series: point.series });
  return { series: points.length };
});
