import { restoreSteps } from './restore-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['validate'];

export const handler = instrumentStep('restore.validate', (event: Parameters<Step>[0]): ReturnType<Step> =>
  restoreSteps().validate(event),
);
