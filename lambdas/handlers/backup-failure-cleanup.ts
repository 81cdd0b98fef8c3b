import { backupSteps } from './backup-runtime.ts';
import { addCount, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['failureCleanup'];

export const handler = instrumentStep(
  'backup.failureCleanup',
  (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().failureCleanup(event),
  () => addCount('BackupFailed'),
);
