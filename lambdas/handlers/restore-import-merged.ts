import { restoreSteps } from './restore-runtime.ts';
import { addTransferMetrics, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof restoreSteps>['importMerged'];

export const handler = instrumentStep(
  'restore.importMerged',
  (event: Parameters<Step>[0]): ReturnType<Step> => restoreSteps().importMerged(event),
  (_event, result, durationMs) =>
    addTransferMetrics(
      'Imported',
      result.reduce((sum, layer) => sum + layer.bytes, 0),
      durationMs,
    ),
);
