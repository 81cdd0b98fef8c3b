import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['importMerged'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().importMerged(event);
