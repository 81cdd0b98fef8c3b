import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['plan'];

export const handler = instrumentStep('backup.plan', (event: Parameters<Step>[0]): ReturnType<Step> =>
  backupSteps().plan(event),
);
