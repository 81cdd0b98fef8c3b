import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['logout'];

export const handler = instrumentStep('backup.logout', (event: Parameters<Step>[0]): ReturnType<Step> =>
  backupSteps().logout(event),
);
