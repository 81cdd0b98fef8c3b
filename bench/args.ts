import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../world/xapi-simulator/cli-args.ts';
import { DEFAULT_PARTS_IN_FLIGHT } from '../lambdas/runtime/defaults.ts';

export const SECTIONS = ['export', 'peer', 'memory', 'restore', 'storage', 'bundles', 'transitions'] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchOptions {
  readonly json: boolean;
  /** Disk exported for the throughput figures (generated: every block present). */
  readonly throughputSize: number;
  readonly memorySmallSize: number;
  readonly memoryLargeSize: number;
  /** The large disk of the restore pair (its small one is memorySmallSize). */
  readonly memoryRestoreLargeSize: number;
  /** The qcow2 pair: the small disk generated (every cluster), the large one spread (bench/sim-server.ts). */
  readonly memoryQcow2SmallSize: number;
  readonly memoryQcow2LargeSize: number;
  /** Disk behind the restore chain (scattered content). */
  readonly restoreSize: number;
  readonly restoreDeltas: number;
  /** Disk behind the storage figures (forever incremental against fullEvery 7; generated content). */
  readonly storageSize: number;
  readonly partsInFlight: number;
  /** Runs per figure, interleaved; each figure is their median (at least 3). */
  readonly runs: number;
  /** Write a CPU profile of our first export (and first restores) into this directory. */
  readonly cpuProf: string | undefined;
  /** Fresh processes per bundle for the import time (the median is reported). */
  readonly importRuns: number;
  readonly skip: ReadonlySet<Section>;
}

export const USAGE = `usage: npm run bench -- [options]
  --json                     end stdout with one JSON object
  --throughput-size SIZE     generated disk for export MB/s (default 2GiB)
  --memory-small SIZE        first peak-RSS export (default 1GiB)
  --memory-large SIZE        second peak-RSS export (default 8GiB)
  --memory-restore-large SIZE  second peak-RSS replay and merge restore (default 4GiB)
  --memory-qcow2-small SIZE  first qcow2 peak-RSS export, every cluster present (default 1GiB)
  --memory-qcow2-large SIZE  second qcow2 peak-RSS export, one 64 KiB write every 4 GiB (default 3TiB)
  --restore-size SIZE        disk behind the restore chain (default 512MiB)
  --restore-deltas N         deltas after the full (default 10)
  --storage-size SIZE        disk behind the storage figures: 30 backups, keep 14 (default 256MiB)
  --parts-in-flight N        S3 parts uploading at once, for ours and the sink limit (default ${DEFAULT_PARTS_IN_FLIGHT})
  --runs N                   runs per figure, interleaved, the median reported (default 3, at least 3)
  --cpu-prof DIR             CPU profiles (node --cpu-prof) of our first export and restores into DIR
  --import-runs N            fresh processes per bundle import time, median reported (default 5)
  --skip LIST                comma-separated sections to skip: ${SECTIONS.join(',')}
SIZE: bytes or 512MiB, 2GiB, 3TiB, ...`;

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      'throughput-size': { type: 'string', default: '2GiB' },
      'memory-small': { type: 'string', default: '1GiB' },
      'memory-large': { type: 'string', default: '8GiB' },
      'memory-restore-large': { type: 'string', default: '4GiB' },
      'memory-qcow2-small': { type: 'string', default: '1GiB' },
      'memory-qcow2-large': { type: 'string', default: '3TiB' },
      'restore-size': { type: 'string', default: '512MiB' },
      'restore-deltas': { type: 'string', default: '10' },
      'storage-size': { type: 'string', default: '256MiB' },
      'parts-in-flight': { type: 'string', default: String(DEFAULT_PARTS_IN_FLIGHT) },
      'import-runs': { type: 'string', default: '5' },
      runs: { type: 'string', default: '3' },
      'cpu-prof': { type: 'string' },
      skip: { type: 'string', default: '' },
    },
  });
  if (values.help) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(0);
  }
  const skip = new Set<Section>();
  for (const name of values.skip.split(',').filter(Boolean)) {
    if (!(SECTIONS as readonly string[]).includes(name)) throw new Error(`--skip: unknown section ${name}`);
    skip.add(name as Section);
  }
  return {
    json: values.json,
    throughputSize: parseSize(values['throughput-size']),
    memorySmallSize: parseSize(values['memory-small']),
    memoryLargeSize: parseSize(values['memory-large']),
    memoryRestoreLargeSize: parseSize(values['memory-restore-large']),
    memoryQcow2SmallSize: parseSize(values['memory-qcow2-small']),
    memoryQcow2LargeSize: parseSize(values['memory-qcow2-large']),
    restoreSize: parseSize(values['restore-size']),
    restoreDeltas: positive(values['restore-deltas'], '--restore-deltas'),
    storageSize: parseSize(values['storage-size']),
    partsInFlight: positive(values['parts-in-flight'], '--parts-in-flight'),
    importRuns: positive(values['import-runs'], '--import-runs'),
    runs: atLeastThree(values.runs),
    cpuProf: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
    skip,
  };
}

/** A median of fewer than 3 runs is one noisy moment: refused. */
function atLeastThree(text: string): number {
  const runs = positive(text, '--runs');
  if (runs < 3) throw new Error('--runs needs at least 3: each figure is the median of its runs');
  return runs;
}

function positive(text: string, flag: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new Error(`${flag} needs a positive integer`);
  return Number(text);
}
