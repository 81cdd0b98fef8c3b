import { restoreSteps } from './restore-runtime.ts';
import { addCount, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['failureCleanup'];

export const handler = instrumentStep(
  'restore.failureCleanup',
  (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().failureCleanup(event),
  () => addCount('RestoreFailed'),
);
