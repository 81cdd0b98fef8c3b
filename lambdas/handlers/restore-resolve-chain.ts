import { restoreSteps } from './restore-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['resolveChain'];

export const handler = instrumentStep(
  'restore.resolveChain',
  (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().resolveChain(event),
);
