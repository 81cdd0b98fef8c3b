import { backupSteps } from './backup-runtime.ts';
import { addCount, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['cleanup'];

export const handler = instrumentStep(
  'backup.cleanup',
  (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().cleanup(event),
  (_event, result) => addCount('BackupSucceeded', { name: 'kind', value: result.kind ?? 'unknown' }),
);
