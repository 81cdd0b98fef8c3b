import { backupSteps } from './backup-runtime.ts';
import { addTransferMetrics, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['collectExport'];

export const handler = instrumentStep(
  'backup.collectExport',
  (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().collectExport(event),
  (_event, result) =>
    addTransferMetrics('Exported', result.bytes, Date.parse(result.endedAt) - Date.parse(result.startedAt)),
);
