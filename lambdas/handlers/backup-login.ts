import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['login'];

export const handler = instrumentStep('backup.login', (event: Parameters<Step>[0]): ReturnType<Step> =>
  backupSteps().login(event),
);
