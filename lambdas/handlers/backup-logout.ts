import { backupSteps } from './backup-runtime.ts';

type Step = ReturnType<typeof backupSteps>['logout'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().logout(event);
