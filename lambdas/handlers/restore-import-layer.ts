import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['importLayer'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().importLayer(event);
