// qemu-img (Debian's qemu-utils, installed by `npm test`): an independent VHD implementation the tests
// check our codec, the simulator and stored backups against.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Converts between formats, e.g. `qemuConvert('vpc', 'raw', a.vhd, a.raw)`; `options` is `-o` for the target. */
export async function qemuConvert(
  from: string,
  to: string,
  source: string,
  target: string,
  options?: string,
) {
  await run('qemu-img', [
    'convert',
    '-f',
    from,
    '-O',
    to,
    ...(options ? ['-o', options] : []),
    source,
    target,
  ]);
}

/** The virtual size qemu sees (for VHDs of unknown creators it comes from the CHS geometry). */
export async function qemuVirtualSize(path: string, format?: string): Promise<number> {
  const { stdout } = await run('qemu-img', [
    'info',
    '--output=json',
    ...(format ? ['-f', format] : []),
    path,
  ]);
  return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'];
}

/** `qemu-img check`: resolves with its report when the image is clean, rejects (with the report) otherwise. */
export async function qemuCheck(path: string, format: string): Promise<string> {
  const { stdout } = await run('qemu-img', ['check', '-f', format, path]);
  return stdout;
}

/** Runs qemu-img with these arguments (for what the helpers above do not cover); resolves with its stdout. */
export async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await run('qemu-img', args);
  return stdout;
}
