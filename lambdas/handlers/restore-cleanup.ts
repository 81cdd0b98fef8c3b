import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['cleanup'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().cleanup(event);
