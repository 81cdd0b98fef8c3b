import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { LocalTarget } from '../world/local/local-backup.ts';
import type { XapiSimulator } from '../world/xapi-simulator/index.ts';
import type { BackupChain } from './restore-chain.ts';

const MODULE = new URL('../world/local/local-restore.ts', import.meta.url);

interface RestoreRun {
  readonly status: string;
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  readonly statesEntered: readonly string[];
}
type RunLocalRestore = (target: LocalTarget, input: unknown) => Promise<RestoreRun>;

/**
 * The restore workflow's local runner, when it exists. Typed loosely on purpose: the bench must compile
 * and run before that module lands, so it is reached only by a dynamic import.
 */
export async function loadRestoreRunner(): Promise<RunLocalRestore | undefined> {
  if (!existsSync(fileURLToPath(MODULE))) return undefined;
  const loaded = (await import(MODULE.href)) as { runLocalRestore?: RunLocalRestore };
  if (typeof loaded.runLocalRestore !== 'function') {
    throw new Error('world/local/local-restore.ts exports no runLocalRestore');
  }
  return loaded.runLocalRestore;
}

export interface RestoreMeasure {
  readonly strategy: string;
  readonly restorePoint: string;
  readonly layers: number;
  /** Bytes the host read from the restore's import PUTs, counted at the simulator. */
  readonly bytes: number;
  /** The whole workflow, Validate to Logout. */
  readonly seconds: number;
  readonly transitions: number;
  /** The restored disk's sha256 equals the source's at that restore point (undefined: not checked). */
  readonly sha256Match: boolean | undefined;
}

/** One restore through the synthesized workflow into the shared SR; the restored VDI is then removed. */
export async function restoreOnce(
  runLocalRestore: RunLocalRestore,
  target: LocalTarget,
  sim: XapiSimulator,
  chain: BackupChain,
  restorePoint: string,
  strategy: 'replay' | 'merge' | undefined,
): Promise<RestoreMeasure> {
  const input = {
    vdiUuid: chain.vdiUuid,
    srUuid: sim.srs.shared.uuid,
    restorePoint,
    nameLabel: `bench restore ${strategy ?? 'default'}`,
    ...(strategy ? { strategy } : {}),
  };
  const transfersBefore = sim.transfers().length;
  const started = performance.now();
  const run = await runLocalRestore(target, input);
  const seconds = (performance.now() - started) / 1000;
  if (run.status !== 'SUCCEEDED') {
    throw new Error(`restore (${strategy ?? 'default'}) failed: ${run.error}: ${run.cause}`);
  }
  const output = (run.output ?? {}) as Record<string, unknown>;
  const layers = output.layersApplied ?? output.layers;
  const vdiUuid = typeof output.vdiUuid === 'string' ? output.vdiUuid : undefined;
  const expected = chain.sha256After.get(restorePoint);
  const sha256Match = vdiUuid && expected ? sim.diskSha256(vdiUuid) === expected : undefined;
  const imports = sim
    .transfers()
    .slice(transfersBefore)
    .filter((transfer) => transfer.direction === 'import' && transfer.vdiUuid === vdiUuid);
  // A PUT the host refuses before reading a byte (our redirect probe) moves nothing; every other one must succeed.
  const moved = imports.filter((transfer) => transfer.bytes > 0);
  if (!moved.length || moved.some((transfer) => transfer.outcome !== 'success')) {
    throw new Error(
      `restore (${strategy ?? 'default'}): the host read ${moved.length} import(s), not all successful: ${moved.map((t) => `${t.outcome} ${t.bytes}`).join(', ')}`,
    );
  }
  if (vdiUuid) sim.deleteVdi(vdiUuid);
  return {
    strategy: typeof output.strategy === 'string' ? output.strategy : (strategy ?? 'default'),
    restorePoint,
    layers: Array.isArray(layers) ? layers.length : typeof layers === 'number' ? layers : 0,
    bytes: moved.reduce((sum, transfer) => sum + transfer.bytes, 0),
    seconds,
    transitions: run.statesEntered.length,
    sha256Match,
  };
}
