import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { childEnv, NODE, REPO } from './paths.ts';

export interface SimInfo {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** The shared SR: restores in the memory runs go there. */
  readonly srUuid: string;
  readonly vdis: Readonly<Record<string, { readonly uuid: string; readonly virtualSize: number }>>;
}

export interface SimProcess extends SimInfo {
  readonly pid: number;
  stop(): Promise<void>;
}

/** One disk of the simulator process: its virtual size, and (bench/sim-server.ts) its format and allocation. */
export interface SimDisk {
  readonly size: number;
  /** Default vhd. */
  readonly format?: 'vhd' | 'qcow2';
  /** One 64 KiB write every 4 GiB instead of every block generated. */
  readonly spread?: boolean;
}

/** Starts bench/sim-server.ts with the given disks (a number: a generated VHD disk of that size). */
export async function startSimProcess(
  disks: Readonly<Record<string, number | SimDisk>>,
): Promise<SimProcess> {
  const args = Object.entries(disks).map(([name, disk]) => {
    const { size, format, spread } = typeof disk === 'number' ? { size: disk } : disk;
    return `${name}=${size}${format === 'qcow2' ? ':qcow2' : ''}${spread ? ':spread' : ''}`;
  });
  const child = spawn(NODE, ['bench/sim-server.ts', ...args], {
    cwd: REPO,
    env: childEnv(),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const info = await new Promise<SimInfo>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => resolve(JSON.parse(line) as SimInfo));
    child.once('error', reject);
    child.once('exit', (code) =>
      reject(new Error(`the simulator process exited (${code}) before it was ready`)),
    );
  });
  return { ...info, pid: child.pid!, stop: () => stopChild(child) };
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the child is gone. */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
