import { createBackupSteps, type BackupSteps } from '../backup/steps.ts';
import { runtimeFromEnvironment } from './runtime-env.ts';

let steps: BackupSteps | undefined;

/** The backup steps wired to this function's environment, built once per container. */
export function backupSteps(): BackupSteps {
  steps ??= createBackupSteps(runtimeFromEnvironment());
  return steps;
}
