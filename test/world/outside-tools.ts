// The outside readers the tests judge our disk images with. A missing one fails the whole run before any
// test starts, naming the Debian package to install: a suite that skipped them would prove nothing.
import { spawnSync } from 'node:child_process';
import { DEBIAN_PYTHON } from './outside-readers.ts';

export interface OutsideTool {
  readonly name: string;
  readonly debianPackage: string;
  /** A command that exits 0 when the tool works. */
  readonly probe: readonly [string, ...string[]];
}

export const OUTSIDE_TOOLS: readonly OutsideTool[] = [
  { name: 'qemu-img', debianPackage: 'qemu-utils', probe: ['qemu-img', '--version'] },
  {
    name: 'libvhdi (pyvhdi for Debian python3)',
    debianPackage: 'python3-libvhdi',
    probe: [DEBIAN_PYTHON, '-c', 'import pyvhdi'],
  },
];

/** The tools that do not run with this environment, e.g. `missingOutsideTools({ ...process.env, PATH: '' })`. */
export function missingOutsideTools(env: NodeJS.ProcessEnv = process.env): OutsideTool[] {
  return OUTSIDE_TOOLS.filter(
    ({ probe: [command, ...args] }) => spawnSync(command, args, { env, stdio: 'ignore' }).status !== 0,
  );
}

/** Throws, naming what to install, unless every outside reader runs. */
export function requireOutsideTools(env: NodeJS.ProcessEnv = process.env): void {
  const missing = missingOutsideTools(env);
  if (missing.length === 0) return;
  const packages = missing.map((tool) => tool.debianPackage).join(' ');
  throw new Error(
    `the tests read every disk image with outside implementations, and these do not run: ` +
      `${missing.map((tool) => tool.name).join(', ')}. Install them with: ` +
      `sudo apt-get install --no-install-recommends ${packages} (npm test does this on Debian as root)`,
  );
}
