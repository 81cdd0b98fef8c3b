/**
 * `npm run bench [-- --json]`: the measurements of docs/design.md § What the bench measures, in one run
 * on loopback, against the XAPI simulator and Swift's S3 API. Progress goes to stderr; stdout gets the
 * table and, with --json, ends with one JSON object (report.ts). Flags: args.ts (`npm run bench -- --help`).
 */
import { createS3Client } from '../lambdas/s3/client.ts';
import { parseBenchArgs, type BenchOptions } from './args.ts';
import { createBenchBucket, deleteBenchBucket, emptyPrefix, vhdDigestOfStored } from './bucket.ts';
import { measureBundles } from './bundles.ts';
import { digestSourceExport, type Measured } from './export-limits.ts';
import { median, spreadOf, timedChild } from './child.ts';
import type { LimitInput } from './limit-child.ts';
import { exportUpperBound, partSizeFor } from '../lambdas/export/part-size.ts';
import { describeMachine } from './machine.ts';
import { exportInChild, restoreInChild } from './memory.ts';
import { preparePeer } from './peer.ts';
import { evaluateTargets, formatTable, type BenchReport, type MemoryPair } from './report.ts';
import { measureRestoreAndTransitions } from './restore-section.ts';
import { measureStorage } from './storage-section.ts';
import { startSimProcess, type SimProcess } from './sim-process.ts';
import type { S3World } from './s3-world.ts';
import { leaseSwift } from './swift.ts';

const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits;

/** Cleanups run in reverse on the way out, also on SIGINT/SIGTERM. */
const cleanups: (() => Promise<void>)[] = [];
async function cleanUp(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch((error: unknown) => log(`cleanup: ${String(error)}`));
}
/** Registers a cleanup; the returned function runs it early (once) and unregisters it. */
function onExit(cleanup: () => Promise<void>): () => Promise<void> {
  cleanups.push(cleanup);
  return async () => {
    const index = cleanups.indexOf(cleanup);
    if (index >= 0) await cleanups.splice(index, 1)[0]!();
  };
}
// A dependency can throw where nothing catches it (e.g. from a socket event): still release Swift and
// stop the simulator process before exiting.
process.once('uncaughtException', (error) => {
  log(`uncaught: ${error.stack ?? error.message}`);
  void cleanUp().finally(() => process.exit(1));
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const options = parseBenchArgs(process.argv.slice(2));
  const started = performance.now();
  const notes: string[] = [];
  let failed = false;
  const section = async <T>(name: string, work: () => Promise<T>): Promise<T | null> => {
    log(`— ${name}`);
    try {
      return await work();
    } catch (error) {
      failed = true;
      const message = error instanceof Error ? error.message : String(error);
      notes.push(`${name} failed: ${message}`);
      log(`${name} failed: ${error instanceof Error ? (error.stack ?? message) : message}`);
      return null;
    }
  };
  const wants = (name: Parameters<BenchOptions['skip']['has']>[0]): boolean => {
    if (options.skip.has(name)) notes.push(`${name}: skipped (--skip)`);
    return !options.skip.has(name);
  };
  const machine = describeMachine();
  log(
    `machine: ${machine.cores} cores, ${machine.memoryGiB} GiB, node ${machine.node}, load ${machine.loadAverage1m}`,
  );

  const doExport = wants('export');
  const doPeer = wants('peer');
  const doMemory = wants('memory');
  const doRestore = wants('restore');
  const doStorage = wants('storage');
  const doTransitions = wants('transitions');
  const doBundles = wants('bundles');

  let s3: S3World | undefined;
  if (doExport || doPeer || doMemory || doRestore || doStorage || doTransitions) {
    const swift = await leaseSwift(log);
    onExit(() => swift.release());
    notes.push(
      `Swift at ${swift.endpoint} ${swift.startedByBench ? 'started by the bench (stopped at the end)' : 'was already running (left running)'}`,
    );
    const endpoint = { endpoint: swift.endpoint, region: swift.region, credentials: swift.credentials };
    const client = createS3Client(endpoint);
    const bucket = await createBenchBucket(client);
    onExit(() => deleteBenchBucket(client, bucket));
    s3 = { swift, endpoint, client, bucket };
  }

  let sim: SimProcess | undefined;
  let stopSim = async (): Promise<void> => undefined;
  if (doExport || doPeer || doMemory) {
    sim = await startSimProcess({
      throughput: options.throughputSize,
      small: options.memorySmallSize,
      large: options.memoryLargeSize,
      restoreLarge: options.memoryRestoreLargeSize,
      // The spread disk's writes are stored in the simulator process (bench/sim-server.ts): only if used.
      ...(doMemory
        ? {
            qcow2Small: { size: options.memoryQcow2SmallSize, format: 'qcow2' as const },
            qcow2Large: { size: options.memoryQcow2LargeSize, format: 'qcow2' as const, spread: true },
          }
        : {}),
    });
    stopSim = onExit(sim.stop);
    log(`simulator process ${sim.pid} at ${sim.url}`);
  }

  let exportReport: BenchReport['export'] = null;
  if (doExport || doPeer) {
    exportReport = await section('export throughput', () => measureExport(options, sim!, s3!, doPeer, notes));
  }
  let memory: BenchReport['memory'] = null;
  if (doMemory) {
    const vhd = await section('memory', () => measureMemory(options, sim!, s3!, 'vhd'));
    // Its own section: a failed qcow2 pair keeps the VHD figures (and the other way round, in the log).
    const qcow2 = await section('memory qcow2', () => measureMemory(options, sim!, s3!, 'qcow2'));
    if (vhd) memory = { ...vhd, qcow2 };
  }
  await stopSim(); // the restore chain uses an in-process simulator of its own

  let restore: BenchReport['restore'] = null;
  let transitions: BenchReport['transitions'] = null;
  if (doRestore || doTransitions) {
    const outcome = await section('restore and transitions', () =>
      measureRestoreAndTransitions(options, s3!, doRestore, log),
    );
    if (outcome) {
      restore = outcome.restore;
      transitions = outcome.transitions;
      notes.push(...outcome.notes);
      if (outcome.error) {
        failed = true;
        notes.push(`restore failed: ${outcome.error}`);
        log(`restore failed: ${outcome.error}`);
      }
    }
  }

  let storage: BenchReport['storage'] = null;
  if (doStorage) storage = await section('storage', () => measureStorage(options, s3!, log));

  let bundles: BenchReport['bundles'] = null;
  if (doBundles) {
    const measured = await section('bundles', () => measureBundles(options.importRuns, log));
    if (measured) {
      bundles = measured.bundles;
      notes.push(
        `cdk synth took ${measured.synthSeconds} s; each workflow's functions share one bundle, the AWS SDK inside; imported from an empty directory, as Lambda loads it`,
      );
      if (measured.otherFunctions.length)
        notes.push(`functions CDK adds (not measured): ${measured.otherFunctions.join(', ')}`);
    }
  }

  await cleanUp();
  const partial = {
    machine,
    export: exportReport,
    memory,
    restore,
    storage,
    bundles,
    transitions,
    notes,
    seconds: 0,
  };
  const report: BenchReport = {
    ...partial,
    targets: evaluateTargets(partial),
    seconds: round((performance.now() - started) / 1000),
  };
  // A target nobody measured is a failure unless its section was skipped on purpose.
  const unmeasured = report.targets.filter((t) => t.met === null && !options.skip.has(t.section));
  for (const t of unmeasured) {
    failed = true;
    report.notes.push(
      `not measured: ${t.target} (${t.detail}); skip its section (--skip ${t.section}) to leave it out`,
    );
  }
  process.stdout.write(`${formatTable(report)}\n`);
  if (options.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  return failed ? 1 : 0;
}

async function measureExport(
  options: BenchOptions,
  sim: SimProcess,
  s3: S3World,
  withPeer: boolean,
  notes: string[],
): Promise<NonNullable<BenchReport['export']>> {
  const vdi = sim.vdis.throughput!;
  const xapi = { url: sim.url, username: sim.username, password: sim.password };
  // What every run must store: the host's stream, its length from a first read, its digest from a second.
  const { bytes: length } = await timedChild<Measured>('bench/limit-child.ts', 'VDI_VAULT_BENCH_LIMIT', {
    kind: 'source',
    xapi,
    vdiUuid: vdi.uuid,
  } satisfies LimitInput).then((run) => run.result);
  const reference = await digestSourceExport(xapi, vdi.uuid, length);
  log(`source: ${reference.bytes} bytes`);
  const partSize = partSizeFor(exportUpperBound('vhd', vdi.virtualSize));
  const setup = withPeer
    ? await preparePeer(
        xapi,
        vdi.uuid,
        { client: s3.client, endpoint: s3.endpoint.endpoint, region: s3.endpoint.region },
        s3.swift.credentials,
        s3.bucket,
      ).catch((error: unknown) => ({
        ok: false as const,
        reason: error instanceof Error ? error.message : String(error),
      }))
    : undefined;
  if (setup && !setup.ok) notes.push(`peer not measured: ${setup.reason}`);
  const peer = setup?.ok ? setup.peer : undefined;
  if (peer) onExit(() => peer.close());

  const figures = { source: [] as number[], sink: [] as number[], ours: [] as number[] };
  const pipelineMbPerS: number[] = [];
  const peerMbPerS: number[] = [];
  const cpuMsPerMB: number[] = [];
  const mb = reference.bytes / 1e6;
  const expectStored = async (who: string, key: string, bytes: number) => {
    if (bytes !== reference.bytes)
      throw new Error(`${who} stored ${bytes} bytes, the source sent ${reference.bytes}`);
    const stored = await vhdDigestOfStored(s3.client, s3.bucket, key);
    if (stored !== reference.digest)
      throw new Error(`${who} stored different content than the host sent (footer identity fields aside)`);
  };
  // Interleaved, so that a noisy moment of the machine touches every figure alike.
  for (let round = 1; round <= options.runs; round++) {
    const source = await timedChild<Measured>('bench/limit-child.ts', 'VDI_VAULT_BENCH_LIMIT', {
      kind: 'source',
      xapi,
      vdiUuid: vdi.uuid,
    } satisfies LimitInput);
    if (source.result.bytes !== reference.bytes)
      throw new Error(`the source sent ${source.result.bytes} bytes, then ${reference.bytes}`);
    figures.source.push(mb / source.seconds);

    const sink = await timedChild<Measured>('bench/limit-child.ts', 'VDI_VAULT_BENCH_LIMIT', {
      kind: 'sink',
      s3: s3.endpoint,
      bucket: s3.bucket,
      key: 'export/sink.bin',
      bytes: reference.bytes,
      partSize,
      partsInFlight: options.partsInFlight,
    } satisfies LimitInput);
    figures.sink.push(mb / sink.seconds);
    await emptyPrefix(s3.client, s3.bucket, 'export/');

    const profile = options.cpuProf && round === 1 ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProf}`] : [];
    const ours = await exportInChild(
      {
        xapi,
        vdiUuid: vdi.uuid,
        s3: s3.endpoint,
        bucket: s3.bucket,
        key: 'export/ours.vhd',
        partsInFlight: options.partsInFlight,
        format: 'vhd',
      },
      profile,
    );
    if (ours.partSize !== partSize)
      throw new Error(`ours used ${ours.partSize}-byte parts, the sink ${partSize}`);
    await expectStored('ours', 'export/ours.vhd', ours.bytes);
    figures.ours.push(mb / ours.processSeconds);
    pipelineMbPerS.push(mb / ours.seconds);
    cpuMsPerMB.push(ours.cpuMs / mb);
    await emptyPrefix(s3.client, s3.bucket, 'export/');

    if (peer) {
      const measured = await peer.run('export/peer.vhd');
      await expectStored('the peer', 'export/peer.vhd', measured.bytes);
      if (measured.stderr) notes.push(`peer: ${measured.stderr}`);
      peerMbPerS.push(mb / measured.seconds);
      await emptyPrefix(s3.client, s3.bucket, 'export/');
    }
    log(
      `round ${round}/${options.runs}: source ${(mb / source.seconds).toFixed(1)}, sink ${(mb / sink.seconds).toFixed(1)}, ours ${(mb / ours.processSeconds).toFixed(1)} (pipeline ${(mb / ours.seconds).toFixed(1)}, ${(ours.cpuMs / mb).toFixed(2)} CPU ms/MB)` +
        (peer ? `, peer ${peerMbPerS.at(-1)!.toFixed(1)}` : '') +
        ' MB/s, each a whole process',
    );
  }
  if (peer?.note) notes.push(`peer: ${peer.note}`);
  const sourceLimit = median(figures.source);
  const sinkLimit = median(figures.sink);
  const oursMedian = median(figures.ours);
  const peerMedian = peerMbPerS.length ? median(peerMbPerS) : null;
  return {
    mbPerS: round(oursMedian),
    pipelineMbPerS: round(median(pipelineMbPerS)),
    ratioToLimit: round(oursMedian / Math.min(sourceLimit, sinkLimit), 3),
    peerMbPerS: peerMedian === null ? null : round(peerMedian),
    ratioToPeer: peerMedian === null ? null : round(oursMedian / peerMedian, 3),
    sourceLimitMbPerS: round(sourceLimit),
    sinkLimitMbPerS: round(sinkLimit),
    sharedLimitMbPerS: round(1 / (1 / sourceLimit + 1 / sinkLimit)),
    cpuMsPerMB: round(median(cpuMsPerMB), 2),
    bytes: reference.bytes,
    partSize,
    partsInFlight: options.partsInFlight,
    runs: options.runs,
    spread: {
      mbPerS: spreadOf(figures.ours),
      pipelineMbPerS: spreadOf(pipelineMbPerS),
      sourceLimitMbPerS: spreadOf(figures.source),
      sinkLimitMbPerS: spreadOf(figures.sink),
      cpuMsPerMB: spreadOf(cpuMsPerMB, 2),
      ...(peerMbPerS.length ? { peerMbPerS: spreadOf(peerMbPerS) } : {}),
    },
    ...(peer
      ? { peerNote: `${peer.awsVersion}, default transfer settings, path-style` }
      : setup && !setup.ok
        ? { peerNote: setup.reason }
        : {}),
  };
}

/**
 * Peak RSS of two exports of one format, each in a fresh process: vhd the generated `small` and `large`
 * disks, qcow2 the generated `qcow2Small` and the spread `qcow2Large` (bench/sim-server.ts).
 */
async function measureMemory(
  options: BenchOptions,
  sim: SimProcess,
  s3: S3World,
  format: 'vhd' | 'qcow2',
): Promise<MemoryPair> {
  const xapi = { url: sim.url, username: sim.username, password: sim.password };
  const disks =
    format === 'vhd' ? { small: 'small', large: 'large' } : { small: 'qcow2Small', large: 'qcow2Large' };
  type Restored = Awaited<ReturnType<typeof restoreInChild>>;
  const restored: Record<'replay' | 'merge', Partial<Record<'small' | 'large', Restored>>> = {
    replay: {},
    merge: {},
  };
  // `restoreAs`: the stored export is then restored by each strategy, as that size of the restore pair.
  const one = async (name: string, restoreAs?: 'small' | 'large') => {
    const key = `memory/${name}.${format}`;
    const result = await exportInChild({
      xapi,
      vdiUuid: sim.vdis[name]!.uuid,
      s3: s3.endpoint,
      bucket: s3.bucket,
      key,
      partsInFlight: options.partsInFlight,
      format,
    });
    log(
      `${format} ${name}: ${result.bytes} bytes in ${result.seconds.toFixed(1)} s, ${result.partSize / 2 ** 20} MiB parts, peak RSS ${(result.maxRssKiB / 1024).toFixed(1)} MiB (heap ${result.peakHeapMiB}, buffers ${result.peakArrayBuffersMiB} MiB)`,
    );
    if (restoreAs) {
      // The stored export, restored by each strategy into a new VDI of the simulator process.
      const layer = {
        backupId: name,
        kind: 'full',
        format,
        objectKey: key,
        bytes: result.bytes,
        sha256: result.sha256,
      } as const;
      for (const strategy of ['replay', 'merge'] as const) {
        const run = await restoreInChild({
          xapi,
          srUuid: sim.srUuid,
          s3: s3.endpoint,
          bucket: s3.bucket,
          layers: [layer],
          virtualSize: sim.vdis[name]!.virtualSize,
          strategy,
        });
        restored[strategy][restoreAs] = run;
        log(
          `${strategy} restore ${name}: ${run.bytes} bytes in ${run.seconds.toFixed(1)} s, peak RSS ${(run.maxRssKiB / 1024).toFixed(1)} MiB (heap ${run.peakHeapMiB}, buffers ${run.peakArrayBuffersMiB} MiB)`,
        );
      }
    }
    await emptyPrefix(s3.client, s3.bucket, 'memory/');
    return result;
  };
  const small = await one(disks.small, format === 'vhd' ? 'small' : undefined);
  const large = await one(disks.large);
  if (format === 'vhd') await one('restoreLarge', 'large');
  if (small.partSize !== large.partSize) {
    throw new Error(
      `${format} part sizes differ (${small.partSize} vs ${large.partSize}): not the same settings`,
    );
  }
  return {
    peakRssSmallMiB: round(small.maxRssKiB / 1024),
    peakRssLargeMiB: round(large.maxRssKiB / 1024),
    smallVirtualSize: sim.vdis[disks.small]!.virtualSize,
    largeVirtualSize: sim.vdis[disks.large]!.virtualSize,
    smallBytes: small.bytes,
    largeBytes: large.bytes,
    partSize: small.partSize,
    sampled: {
      small: { heapMiB: small.peakHeapMiB, arrayBuffersMiB: small.peakArrayBuffersMiB },
      large: { heapMiB: large.peakHeapMiB, arrayBuffersMiB: large.peakArrayBuffersMiB },
    },
    ...(format === 'vhd'
      ? {
          restore: Object.fromEntries(
            (['replay', 'merge'] as const).map((strategy) => {
              const { small: rs, large: rl } = restored[strategy];
              return [
                strategy,
                {
                  peakRssSmallMiB: round(rs!.maxRssKiB / 1024),
                  peakRssLargeMiB: round(rl!.maxRssKiB / 1024),
                  smallVirtualSize: sim.vdis[disks.small]!.virtualSize,
                  largeVirtualSize: sim.vdis.restoreLarge!.virtualSize,
                  smallBytes: rs!.bytes,
                  largeBytes: rl!.bytes,
                },
              ];
            }),
          ) as NonNullable<MemoryPair['restore']>,
        }
      : {}),
  };
}

main().then(
  (code) => process.exit(code),
  async (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    await cleanUp();
    process.exit(1);
  },
);
