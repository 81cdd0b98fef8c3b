import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['failureCleanup'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().failureCleanup(event);
