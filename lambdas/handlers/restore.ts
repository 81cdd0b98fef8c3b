/**
 * The restore workflow's Lambda entry: one bundle, one handler per step (the table in
 * `lambdas/runtime/step-table.ts` names them; each function's `Handler` is `index.<step>`). The Fargate task
 * and the local runner call the same handlers.
 */
import { createRestoreSteps, type RestoreSteps } from '../restore/steps.ts';
import { RESTORE_STEPS } from '../runtime/step-table.ts';
import { addTransferMetrics, publishMetric, stepHandler } from './observability.ts';
import { runtimeFromEnvironment } from './runtime-env.ts';

let built: RestoreSteps | undefined;
/** Built on first use, once per container, from this function's environment. */
const steps = (): RestoreSteps => (built ??= createRestoreSteps(runtimeFromEnvironment()));

type Step<K extends keyof RestoreSteps> = RestoreSteps[K];
const handle = <K extends keyof typeof RESTORE_STEPS & keyof RestoreSteps>(
  name: K,
  measure?: (event: Parameters<Step<K>>[0], result: Awaited<ReturnType<Step<K>>>, ms: number) => void,
) =>
  stepHandler(
    `restore.${name}`,
    (event: Parameters<Step<K>>[0]) =>
      (steps()[name] as (e: typeof event) => Promise<Awaited<ReturnType<Step<K>>>>)(event),
    measure,
  );

export const validate = handle('validate');
export const login = handle('login');
export const resolveChain = handle('resolveChain');
export const createVdi = handle('createVdi');
export const importLayer = handle('importLayer', (_event, result, ms) =>
  addTransferMetrics('Imported', result.bytes, ms),
);
export const importMerged = handle('importMerged', (_event, result, ms) =>
  addTransferMetrics(
    'Imported',
    result.reduce((sum, layer) => sum + layer.bytes, 0),
    ms,
  ),
);
export const replayChain = handle('replayChain', (_event, result, ms) =>
  addTransferMetrics(
    'Imported',
    result.reduce((sum, layer) => sum + layer.bytes, 0),
    ms,
  ),
);
export const collectImport = handle('collectImport');
export const resolveVm = handle('resolveVm');
export const createVm = handle('createVm');
export const attachVmDisk = handle('attachVmDisk');
export const finishVm = handle('finishVm');
export const vmFailureCleanup = handle('vmFailureCleanup', () => publishMetric('RestoreFailed', 1));
export const cleanup = handle('cleanup');
export const logout = handle('logout', () => publishMetric('RestoreSucceeded', 1));
export const failureCleanup = handle('failureCleanup', () => publishMetric('RestoreFailed', 1));
