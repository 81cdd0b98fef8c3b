/**
 * vitest globalSetup: makes sure the Swift all-in-one (S3 API on loopback) is running and hands its
 * coordinates to the tests as `inject('s3')`, and builds the stack's bundles (the code every local run
 * executes) once. It first refuses to run without the outside readers (qemu-img, libvhdi).
 *
 * Each run takes a lease (its pid) on the shared Swift: the last run to finish stops a Swift that test
 * runs started, so CI ends clean, while concurrent runs keep theirs and a Swift started by hand
 * (`bash world/swift/swift-aio.sh start`) is reused and left alone. VDI_VAULT_SWIFT_KEEP=1 claims
 * it as started by hand: it keeps running after the tests (faster reruns; `swift-aio.sh stop` ends it).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { bundledCode } from '../../world/local/synthesized-workflows.ts';
import { requireOutsideTools } from './outside-tools.ts';

/** How tests reach the S3 server: a path-style endpoint with static credentials. */
export interface S3World {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3World;
  }
}

const swiftScript = fileURLToPath(new URL('../../world/swift/swift-aio.sh', import.meta.url));
const run = promisify(execFile);

/** Runs swift-aio.sh; resolves with its stdout (the endpoint), rejects with its stderr (log tails). */
async function swift(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('bash', [swiftScript, ...args], { timeout: 180_000 });
    return stdout.trim();
  } catch (error) {
    const { stderr, code } = error as { stderr?: string; code?: number | string };
    throw new Error(`swift-aio.sh ${args.join(' ')} failed (${code ?? 'no exit code'}):\n${stderr ?? ''}`, {
      cause: error,
    });
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  requireOutsideTools();
  const keep = process.env.VDI_VAULT_SWIFT_KEEP === '1';
  const lease = String(process.pid);
  // A no-op when Swift is already healthy.
  // Swift starts while the bundles are built once, before any test file needs them.
  const [endpoint] = await Promise.all([
    swift(...(keep ? ['start'] : ['start', '--lease', lease])),
    bundledCode(),
  ]);
  project.provide('s3', {
    endpoint,
    region: 'us-east-1',
    accessKeyId: 'test:tester',
    secretAccessKey: 'testing',
  });
  return async () => {
    if (!keep) await swift('release', lease);
  };
}
