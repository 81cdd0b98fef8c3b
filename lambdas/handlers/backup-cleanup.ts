import { backupSteps } from './backup-runtime.ts';

type Step = ReturnType<typeof backupSteps>['cleanup'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().cleanup(event);
