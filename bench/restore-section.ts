import type { LocalTarget } from '../world/local/local-backup.ts';
import { startXapiSimulator, type XapiSimulator } from '../world/xapi-simulator/index.ts';
import type { BenchOptions } from './args.ts';
import type { BenchReport } from './report.ts';
import { buildBackupChain, type BackupChain } from './restore-chain.ts';
import { loadRestoreRunner, restoreOnce } from './restore.ts';
import type { S3World } from './s3-world.ts';

/** Layers of the restore whose transitions are counted (docs/design.md § What the bench measures). */
const TRANSITION_LAYERS = 5;

/**
 * Builds the backup chain through the synthesized backup workflow (an in-process simulator: the chain
 * needs writes between backups), counts the backup's transitions, then, when the restore workflow
 * exists, restores the whole chain with each strategy and counts a 5-layer restore's transitions.
 */
export async function measureRestoreAndTransitions(
  options: BenchOptions,
  s3: S3World,
  withRestore: boolean,
  log: (line: string) => void,
): Promise<{
  restore: BenchReport['restore'];
  transitions: BenchReport['transitions'];
  notes: string[];
  /** The restore part failed (the backup's figures still stand). */
  error?: string;
}> {
  const notes: string[] = [];
  const runLocalRestore = await loadRestoreRunner();
  if (!runLocalRestore)
    notes.push('restore: world/local/local-restore.ts does not exist yet; restore figures are null');
  // Without a restore to measure, a short chain is enough for the backup's transitions.
  const deltas = runLocalRestore ? Math.max(options.restoreDeltas, TRANSITION_LAYERS - 1) : 1;
  const sim = await startXapiSimulator();
  try {
    const target: LocalTarget = {
      xapi: { url: sim.url, username: sim.username, password: sim.password },
      s3: s3.endpoint,
      bucket: s3.bucket,
      prefix: 'chain',
    };
    const chain = await buildBackupChain(
      sim,
      target,
      options.restoreSize,
      deltas,
      [TRANSITION_LAYERS - 1, options.restoreDeltas],
      log,
    );
    const transitions: NonNullable<BenchReport['transitions']> = {
      backup: chain.fullBackupTransitions,
      deltaBackup: chain.deltaBackupTransitions,
      restore: null,
    };
    if (!runLocalRestore) return { restore: null, transitions, notes };
    try {
      const context = { runLocalRestore, target, sim, chain, log };
      const restore = await measureRestores(context, options, withRestore, transitions, notes);
      return { restore, transitions, notes };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { restore: null, transitions, notes, error: message };
    }
  } finally {
    await sim.close();
  }
}

interface RestoreContext {
  readonly runLocalRestore: NonNullable<Awaited<ReturnType<typeof loadRestoreRunner>>>;
  readonly target: LocalTarget;
  readonly sim: XapiSimulator;
  readonly chain: BackupChain;
  readonly log: (line: string) => void;
}

/** Fills `transitions.restore*` (5 layers, both strategies) and measures replay against merge on the whole chain. */
async function measureRestores(
  { runLocalRestore, target, sim, chain, log }: RestoreContext,
  options: BenchOptions,
  withRestore: boolean,
  transitions: NonNullable<BenchReport['transitions']>,
  notes: string[],
): Promise<BenchReport['restore']> {
  // The default strategy (no `strategy` in the input) gives `transitions.restore`; the other is listed too.
  const fivePoint = chain.backupIds[TRANSITION_LAYERS - 1]!;
  const byDefault = await restoreOnce(runLocalRestore, target, sim, chain, fivePoint, undefined);
  const other = byDefault.strategy === 'merge' ? 'replay' : 'merge';
  const byOther = await restoreOnce(runLocalRestore, target, sim, chain, fivePoint, other);
  transitions.restore = byDefault.transitions;
  transitions.restoreStrategy = byDefault.strategy;
  transitions.restoreByStrategy = {
    [byDefault.strategy]: byDefault.transitions,
    [byOther.strategy]: byOther.transitions,
  };
  for (const m of [byDefault, byOther]) {
    if (m.layers !== TRANSITION_LAYERS)
      notes.push(`5-layer restore (${m.strategy}) applied ${m.layers} layers`);
    if (m.sha256Match === false)
      notes.push(`5-layer restore (${m.strategy}): restored disk differs from the source`);
  }
  if (!withRestore) return null;

  const latest = chain.backupIds[options.restoreDeltas]!;
  const replay = await restoreOnce(runLocalRestore, target, sim, chain, latest, 'replay');
  log(`replay: ${replay.bytes} bytes in ${replay.seconds.toFixed(1)} s`);
  const merge = await restoreOnce(runLocalRestore, target, sim, chain, latest, 'merge');
  log(`merge: ${merge.bytes} bytes in ${merge.seconds.toFixed(1)} s`);
  const stored = chain.bytes.slice(0, options.restoreDeltas + 1).reduce((a, b) => a + b, 0);
  notes.push(`restore chain: ${options.restoreDeltas + 1} layers, ${stored} bytes stored in S3`);
  return {
    replayBytes: replay.bytes,
    mergeBytes: merge.bytes,
    replayS: Math.round(replay.seconds * 100) / 100,
    mergeS: Math.round(merge.seconds * 100) / 100,
    layers: replay.layers,
    sha256Match: { replay: replay.sha256Match ?? null, merge: merge.sha256Match ?? null },
  };
}
