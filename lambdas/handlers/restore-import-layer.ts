import { restoreSteps } from './restore-runtime.ts';
import { addTransferMetrics, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['importLayer'];

export const handler = instrumentStep(
  'restore.importLayer',
  (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().importLayer(event),
  (_event, result, durationMs) => addTransferMetrics('Imported', result.bytes, durationMs),
);
