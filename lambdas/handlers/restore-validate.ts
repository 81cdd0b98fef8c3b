import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['validate'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().validate(event);
