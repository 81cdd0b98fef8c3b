import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['createTask'];

export const handler = instrumentStep('backup.createTask', (event: Parameters<Step>[0]): ReturnType<Step> =>
  backupSteps().createTask(event),
);
