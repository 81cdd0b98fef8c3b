import { backupSteps } from './backup-runtime.ts';

type Step = ReturnType<typeof backupSteps>['commit'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().commit(event);
