import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['commit'];

export const handler = instrumentStep('backup.commit', (event: Parameters<Step>[0]): ReturnType<Step> =>
  backupSteps().commit(event),
);
