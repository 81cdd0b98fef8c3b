import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { LocalTarget } from '../world/local/local-backup.ts';
import { startXapiSimulator, type XapiSimulator } from '../world/xapi-simulator/index.ts';
import type { BenchOptions } from './args.ts';
import type { BenchReport } from './report.ts';
import { buildBackupChain, type BackupChain } from './restore-chain.ts';
import { loadRestoreRunner, restoreOnce } from './restore.ts';
import { measureHostWriteLimit, measureS3ReadLimit } from './restore-limits.ts';
import { median, spreadOf } from './child.ts';
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
      const context = { runLocalRestore, target, sim, chain, log, s3 };
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
  readonly s3: S3World;
}

/** Fills `transitions.restore*` (5 layers, both strategies) and measures replay against merge on the whole chain. */
async function measureRestores(
  { runLocalRestore, target, sim, chain, log, s3 }: RestoreContext,
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

  // Interleaved rounds: S3 read limit, host write limit, replay, merge, then again; medians reported.
  const latest = chain.backupIds[options.restoreDeltas]!;
  const stored = await s3.client.send(
    new ListObjectsV2Command({ Bucket: target.bucket, Prefix: `${target.prefix}/` }),
  );
  const layerKeys = chain.backupIds.slice(0, options.restoreDeltas + 1).map((backupId) => {
    const key = stored.Contents?.find((object) => object.Key?.endsWith(`/${backupId}.vhd`))?.Key;
    if (!key) throw new Error(`no object of backup ${backupId} under ${target.prefix}/`);
    return key;
  });
  const runs = {
    readLimit: [] as number[],
    writeLimit: [] as number[],
    replayS: [] as number[],
    mergeS: [] as number[],
    replayMbPerS: [] as number[],
    mergeMbPerS: [] as number[],
  };
  const bytes: Record<'replay' | 'merge', number | undefined> = { replay: undefined, merge: undefined };
  let layers = 0;
  for (let round = 1; round <= options.runs; round++) {
    const read = await measureS3ReadLimit(s3.client, s3.bucket, layerKeys);
    runs.readLimit.push(read.bytes / 1e6 / read.seconds);
    const write = await measureHostWriteLimit(sim, bytes.merge ?? read.bytes);
    runs.writeLimit.push(write.bytes / 1e6 / write.seconds);
    for (const strategy of ['replay', 'merge'] as const) {
      const measured = await restoreOnce(runLocalRestore, target, sim, chain, latest, strategy);
      if (measured.sha256Match !== true) {
        throw new Error(`the ${strategy} restore of ${latest} differs from the disk at that point (sha256)`);
      }
      if (bytes[strategy] !== undefined && bytes[strategy] !== measured.bytes) {
        throw new Error(`the ${strategy} restore moved ${measured.bytes} bytes, before ${bytes[strategy]}`);
      }
      bytes[strategy] = measured.bytes;
      layers = measured.layers;
      runs[`${strategy}S`].push(measured.seconds);
      runs[`${strategy}MbPerS`].push(measured.bytes / 1e6 / measured.seconds);
    }
    log(
      `round ${round}/${options.runs}: S3 read ${runs.readLimit.at(-1)!.toFixed(1)}, host write ${runs.writeLimit.at(-1)!.toFixed(1)}, ` +
        `replay ${runs.replayMbPerS.at(-1)!.toFixed(1)} (${runs.replayS.at(-1)!.toFixed(1)} s), merge ${runs.mergeMbPerS.at(-1)!.toFixed(1)} (${runs.mergeS.at(-1)!.toFixed(1)} s) MB/s`,
    );
  }
  const storedBytes = chain.bytes.slice(0, options.restoreDeltas + 1).reduce((a, b) => a + b, 0);
  notes.push(`restore chain: ${options.restoreDeltas + 1} layers, ${storedBytes} bytes stored in S3`);
  const readLimit = median(runs.readLimit);
  const writeLimit = median(runs.writeLimit);
  const round2 = (value: number) => Math.round(value * 100) / 100;
  return {
    replayBytes: bytes.replay!,
    mergeBytes: bytes.merge!,
    replayS: round2(median(runs.replayS)),
    mergeS: round2(median(runs.mergeS)),
    replayMbPerS: round2(median(runs.replayMbPerS)),
    mergeMbPerS: round2(median(runs.mergeMbPerS)),
    readLimitMbPerS: round2(readLimit),
    writeLimitMbPerS: round2(writeLimit),
    limitMbPerS: round2(Math.min(readLimit, writeLimit)),
    sharedLimitMbPerS: round2(1 / (1 / readLimit + 1 / writeLimit)),
    layers,
    runs: options.runs,
    defaultStrategy: byDefault.strategy,
    sha256Match: { replay: true, merge: true },
    spread: {
      replayS: spreadOf(runs.replayS, 2),
      mergeS: spreadOf(runs.mergeS, 2),
      replayMbPerS: spreadOf(runs.replayMbPerS),
      mergeMbPerS: spreadOf(runs.mergeMbPerS),
      readLimitMbPerS: spreadOf(runs.readLimit),
      writeLimitMbPerS: spreadOf(runs.writeLimit),
    },
  };
}
