import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['snapshot'];

export const handler = instrumentStep('backup.snapshot', (event: Parameters<Step>[0]): ReturnType<Step> =>
  backupSteps().snapshot(event),
);
