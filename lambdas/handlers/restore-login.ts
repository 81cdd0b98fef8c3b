import { restoreSteps } from './restore-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['login'];

export const handler = instrumentStep('restore.login', (event: Parameters<Step>[0]): ReturnType<Step> =>
  restoreSteps().login(event),
);
