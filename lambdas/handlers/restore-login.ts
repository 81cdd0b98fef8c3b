import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['login'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().login(event);
