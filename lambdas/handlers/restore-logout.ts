import { restoreSteps } from './restore-runtime.ts';
import { addCount, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['logout'];

export const handler = instrumentStep(
  'restore.logout',
  (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().logout(event),
  () => addCount('RestoreSucceeded'),
);
