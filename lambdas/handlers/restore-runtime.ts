import { createRestoreSteps, type RestoreSteps } from '../restore/steps.ts';
import { runtimeFromEnvironment } from './runtime-env.ts';

let steps: RestoreSteps | undefined;

/** The restore steps wired to this function's environment, built once per container. */
export function restoreSteps(): RestoreSteps {
  steps ??= createRestoreSteps(runtimeFromEnvironment());
  return steps;
}
