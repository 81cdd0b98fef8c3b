import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root; the bench runs its children from here. */
export const REPO = fileURLToPath(new URL('..', import.meta.url));
/** The pinned Node 24 (`npm ci` installs it): children run on it even when the system node is older. */
export const NODE = join(REPO, 'node_modules', '.bin', 'node');
/** Scratch space ignored by git, eslint and prettier (synth output, temporary configs). */
export const SCRATCH = join(REPO, '.bench');

/** The environment for child processes: node_modules/.bin first, so `node` and `cdk` are the pinned ones. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${join(REPO, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}`,
    ...extra,
  };
}
