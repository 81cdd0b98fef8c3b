import { restoreSteps } from './restore-runtime.ts';
import { instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['collectImport'];

export const handler = instrumentStep(
  'restore.collectImport',
  (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().collectImport(event),
);
