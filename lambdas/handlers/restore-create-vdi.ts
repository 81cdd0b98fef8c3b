import { restoreSteps } from './restore-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['createVdi'];

export const handler = instrumentStep('restore.createVdi', (event: Parameters<Step>[0]): ReturnType<Step> =>
  restoreSteps().createVdi(event),
);
