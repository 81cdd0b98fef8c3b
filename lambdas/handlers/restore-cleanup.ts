import { restoreSteps } from './restore-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['cleanup'];

export const handler = instrumentStep('restore.cleanup', (event: Parameters<Step>[0]): ReturnType<Step> =>
  restoreSteps().cleanup(event),
);
