import { backupSteps } from './backup-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['prepareFargateRetry'];

export const handler = instrumentStep(
  'backup.prepareFargateRetry',
  (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().prepareFargateRetry(event),
);
