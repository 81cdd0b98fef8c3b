import { restoreSteps } from './restore-runtime.ts';

type Step = ReturnType<typeof restoreSteps>['logout'];

export const handler = (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().logout(event);
