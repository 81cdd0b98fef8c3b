import { backupSteps } from './backup-runtime.ts';
import { addTransferMetrics, instrumentStep } from './observability.ts';

type Step = ReturnType<typeof backupSteps>['export'];

export const handler = instrumentStep(
  'backup.export',
  (event: Parameters<Step>[0]): ReturnType<Step> => backupSteps().export(event),
  (_event, result) =>
    addTransferMetrics('Exported', result.bytes, Date.parse(result.endedAt) - Date.parse(result.startedAt)),
);
