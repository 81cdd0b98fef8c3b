import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './paths.ts';

const run = promisify(execFile);
const SCRIPT = join(REPO, 'world', 'swift', 'swift-aio.sh');

export interface SwiftLease {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** True when our start launched Swift (it was not running). */
  readonly startedByBench: boolean;
  /** Ends our lease: Swift stops only if our start launched it and nobody else holds a lease. */
  release(): Promise<void>;
}

/**
 * Swift all-in-one through its script's lease protocol (keyed by this process id): a Swift that was
 * already running, by hand or for another run, is left running when the bench ends.
 */
export async function leaseSwift(log: (line: string) => void): Promise<SwiftLease> {
  const started = await run('bash', [SCRIPT, 'start', '--lease', String(process.pid)], {
    cwd: REPO,
    maxBuffer: 1 << 20,
  }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`Swift did not start: ${(error.stderr ?? error.message).trim()}`);
  });
  const note = started.stderr.trim().split('\n').pop() ?? '';
  log(note);
  let released = false;
  return {
    endpoint: started.stdout.trim(),
    region: 'us-east-1',
    credentials: { accessKeyId: 'test:tester', secretAccessKey: 'testing' },
    startedByBench: !note.includes('already running'),
    async release() {
      if (released) return;
      released = true;
      const done = await run('bash', [SCRIPT, 'release', String(process.pid)], { cwd: REPO });
      const message = done.stderr.trim();
      if (message) log(message);
    },
  };
}
