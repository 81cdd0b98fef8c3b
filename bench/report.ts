import type { Section } from './args.ts';
import type { Spread } from './child.ts';
import type { Machine } from './machine.ts';

/** What `npm run bench -- --json` ends with: docs/design.md § What the bench measures, plus context. */
export interface BenchReport {
  machine: Machine;
  /**
   * Medians of `runs` interleaved runs (source, sink, ours, peer, then again), each a whole process
   * timed from spawn to exit; `spread` holds each figure's min, max and every run.
   */
  export: {
    mbPerS: number;
    /** Ours, the exportToS3 call alone (no start-up, login or task): what the pipeline itself does. */
    pipelineMbPerS: number;
    ratioToLimit: number;
    peerMbPerS: number | null;
    ratioToPeer: number | null;
    sourceLimitMbPerS: number;
    sinkLimitMbPerS: number;
    /**
     * Both limits at once on the same cores, 1 / (1/source + 1/sink): what the export can reach when
     * the machine's CPU, not either end, is the bound (each limit is measured alone, with the cores to
     * itself). Context, not a target.
     */
    sharedLimitMbPerS: number;
    /** Our process's CPU (user + system) per MB exported. */
    cpuMsPerMB: number;
    bytes: number;
    partSize: number;
    partsInFlight: number;
    runs: number;
    spread: Record<string, Spread>;
    peerNote?: string;
  } | null;
  /** Peak RSS of VHD exports of a small and a large generated disk, then the qcow2 pair. */
  memory:
    | (MemoryPair & {
        /**
         * The same for qcow2 exports: the small disk every cluster present, the large one sparse (one
         * 64 KiB write every 4 GiB: bench/sim-server.ts `spread`). null when that pair failed.
         */
        qcow2: MemoryPair | null;
      })
    | null;
  /**
   * The whole chain restored by each strategy through the synthesized workflow (Validate to Logout),
   * medians of `runs` interleaved rounds beside the restore's limits; bytes counted at the simulator.
   */
  restore: {
    replayBytes: number;
    mergeBytes: number;
    replayS: number;
    mergeS: number;
    replayMbPerS: number;
    mergeMbPerS: number;
    /** S3 GET → discard of the chain's objects. */
    readLimitMbPerS: number;
    /** Memory → simulator import PUT. */
    writeLimitMbPerS: number;
    /** The lower of the two. */
    limitMbPerS: number;
    /** Both at once on the same cores, 1 / (1/read + 1/write), as for the export. Context, not a target. */
    sharedLimitMbPerS: number;
    layers: number;
    runs: number;
    /** The strategy a restore without `strategy` takes. */
    defaultStrategy: string;
    sha256Match: { replay: boolean | null; merge: boolean | null };
    spread: Record<string, Spread>;
  } | null;
  /** Forever incremental against fullEvery 7 on one history (bench/storage-section.ts). */
  storage: {
    backups: number;
    keep: number;
    diskBytes: number;
    foreverIncremental: { storedBytes: number; objects: number; exportedFulls: number };
    fullEvery7: { storedBytes: number; objects: number; exportedFulls: number };
    /** Forever incremental's stored bytes over fullEvery 7's. */
    storedRatio: number;
    merges: number;
    /** Bytes through compute to build a synthetic full over the delta it absorbed. */
    computeToDelta: { median: number; max: number };
    requestsPerMerge: number;
    bytesCopiedPerMerge: number;
    bytesUploadedPerMerge: number;
    /** The read-back of the whole synthetic full, apart from the build. */
    bytesVerifiedPerMerge: number;
    restoreLatest: Record<'foreverIncremental' | 'fullEvery7', { replayS: number; mergeS: number }>;
    sha256Match: boolean;
  } | null;
  bundles: { name: string; bytes: number; importMs: number }[] | null;
  transitions: {
    backup: number | null;
    restore: number | null;
    deltaBackup?: number;
    restoreStrategy?: string;
    restoreByStrategy?: Record<string, number>;
  } | null;
  targets: Target[];
  /** Why a figure is missing, what the bench installed or skipped. */
  notes: string[];
  seconds: number;
}

/** Two exports of one format, each in a fresh process. */
export interface MemoryPair {
  peakRssSmallMiB: number;
  peakRssLargeMiB: number;
  smallVirtualSize: number;
  largeVirtualSize: number;
  /** Bytes each export sent (and stored). */
  smallBytes: number;
  largeBytes: number;
  partSize: number;
  /** Peaks sampled in the child: V8 heap and Buffers, to tell our memory from the allocator's. */
  sampled: Record<'small' | 'large', { heapMiB: number; arrayBuffersMiB: number }>;
  /** VHD only: each stored export restored by each strategy, in a fresh process per restore. */
  restore?: Record<
    'replay' | 'merge',
    {
      peakRssSmallMiB: number;
      peakRssLargeMiB: number;
      smallVirtualSize: number;
      largeVirtualSize: number;
      smallBytes: number;
      largeBytes: number;
    }
  >;
}

export interface Target {
  readonly target: string;
  /** The section that measures it: unmeasured while that section was not skipped fails the bench. */
  readonly section: Section;
  /** null: not measured in this run. */
  readonly met: boolean | null;
  readonly detail: string;
}

/** A cold start's import of a bundle (module loading and top-level code) should stay within this. */
export const BUNDLE_IMPORT_LIMIT_MS = 300;

export function evaluateTargets(report: Omit<BenchReport, 'targets'>): Target[] {
  const out: Target[] = [];
  const ex = report.export;
  out.push({
    target: 'export ≥ 0.95 × lower limit (medians)',
    section: 'export',
    met: ex ? ex.ratioToLimit >= 0.95 : null,
    detail: ex
      ? `${ex.mbPerS.toFixed(0)} MB/s, ratio ${ex.ratioToLimit.toFixed(2)} of ${Math.min(ex.sourceLimitMbPerS, ex.sinkLimitMbPerS).toFixed(0)}`
      : 'not measured',
  });
  out.push({
    target: 'export ≥ 1.3 × the peer (medians)',
    section: 'peer',
    met: ex && ex.ratioToPeer !== null ? ex.ratioToPeer >= 1.3 : null,
    detail:
      ex && ex.peerMbPerS !== null
        ? `${ex.mbPerS.toFixed(0)} vs ${ex.peerMbPerS.toFixed(0)} MB/s (×${ex.ratioToPeer!.toFixed(2)})`
        : 'peer not measured',
  });
  const mem = report.memory;
  out.push({
    target: 'peak RSS large ≤ 1.10 × small',
    section: 'memory',
    met: mem ? mem.peakRssLargeMiB <= 1.1 * mem.peakRssSmallMiB : null,
    detail: mem
      ? `${mem.peakRssLargeMiB.toFixed(0)} vs ${mem.peakRssSmallMiB.toFixed(0)} MiB (×${(mem.peakRssLargeMiB / mem.peakRssSmallMiB).toFixed(2)})`
      : 'not measured',
  });
  for (const strategy of ['replay', 'merge'] as const) {
    const r = mem?.restore?.[strategy];
    out.push({
      target: `${strategy} restore peak RSS large ≤ 1.10 × small`,
      section: 'memory',
      met: r ? r.peakRssLargeMiB <= 1.1 * r.peakRssSmallMiB : null,
      detail: r
        ? `${r.peakRssLargeMiB.toFixed(0)} vs ${r.peakRssSmallMiB.toFixed(0)} MiB (×${(r.peakRssLargeMiB / r.peakRssSmallMiB).toFixed(2)})`
        : 'not measured',
    });
  }
  const q = mem?.qcow2;
  out.push({
    target: 'qcow2 peak RSS 3 TiB sparse ≤ 1.10 × 1 GiB',
    section: 'memory',
    met: q ? q.peakRssLargeMiB <= 1.1 * q.peakRssSmallMiB : null,
    detail: q
      ? `${q.peakRssLargeMiB.toFixed(0)} vs ${q.peakRssSmallMiB.toFixed(0)} MiB (×${(q.peakRssLargeMiB / q.peakRssSmallMiB).toFixed(2)}; ${size(q.largeVirtualSize)} sparse vs ${size(q.smallVirtualSize)})`
      : 'not measured',
  });
  const re = report.restore;
  out.push({
    target: 'merge moves fewer bytes than replay',
    section: 'restore',
    met: re ? re.mergeBytes < re.replayBytes : null,
    detail: re ? `${re.mergeBytes} vs ${re.replayBytes} bytes` : 'restore not measured',
  });
  for (const strategy of ['replay', 'merge'] as const) {
    const mbPerS = re?.[`${strategy}MbPerS`];
    out.push({
      target: `${strategy} restore ≥ 0.9 × restore limit (medians)`,
      section: 'restore',
      met: re ? mbPerS! >= 0.9 * re.limitMbPerS : null,
      detail: re
        ? `${mbPerS!.toFixed(0)} vs ${re.limitMbPerS.toFixed(0)} MB/s (×${(mbPerS! / re.limitMbPerS).toFixed(2)})`
        : 'restore not measured',
    });
  }
  out.push({
    target: 'merge MB/s ≥ 0.9 × replay MB/s (medians)',
    section: 'restore',
    met: re ? re.mergeMbPerS >= 0.9 * re.replayMbPerS : null,
    detail: re
      ? `${re.mergeMbPerS.toFixed(0)} vs ${re.replayMbPerS.toFixed(0)} MB/s (×${(re.mergeMbPerS / re.replayMbPerS).toFixed(2)})`
      : 'restore not measured',
  });
  out.push({
    target: 'merge faster than replay when it moves fewer bytes',
    section: 'restore',
    met: re ? re.mergeBytes >= re.replayBytes || re.mergeS < re.replayS : null,
    detail: re ? `${re.mergeS.toFixed(2)} vs ${re.replayS.toFixed(2)} s` : 'restore not measured',
  });
  const st = report.storage;
  out.push({
    target: 'forever incremental stores ≤ 0.5 × fullEvery 7',
    section: 'storage',
    met: st ? st.storedRatio <= 0.5 : null,
    detail: st ? `×${st.storedRatio.toFixed(2)}` : 'storage not measured',
  });
  out.push({
    target: 'merge: bytes through compute ≤ 3 × the delta absorbed',
    section: 'storage',
    met: st ? st.computeToDelta.max <= 3 : null,
    detail: st
      ? `median ×${st.computeToDelta.median}, max ×${st.computeToDelta.max}`
      : 'storage not measured',
  });
  out.push({
    target: 'every storage restore bit-exact',
    section: 'storage',
    met: st ? st.sha256Match : null,
    detail: st ? (st.sha256Match ? 'sha256 ok' : 'SHA256 MISMATCH') : 'storage not measured',
  });
  const bundles = report.bundles;
  const slow = bundles?.filter((b) => b.importMs > BUNDLE_IMPORT_LIMIT_MS) ?? [];
  out.push({
    target: `every bundle imports in ≤ ${BUNDLE_IMPORT_LIMIT_MS} ms (cold, SDK inside)`,
    section: 'bundles',
    met: bundles ? slow.length === 0 : null,
    detail: bundles
      ? `${bundles.map((b) => `${b.name} ${kib(b.bytes)} ${b.importMs} ms`).join(', ')}`
      : 'not measured',
  });
  return out;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(0)} KiB`;
}

/** The readable table for people. */
export function formatTable(report: BenchReport): string {
  const lines: string[] = [];
  const row = (label: string, value: string): void => void lines.push(`  ${label.padEnd(38)} ${value}`);
  const m = report.machine;
  lines.push('vdi-vault bench');
  row(
    'machine',
    `${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, node ${m.node}, load ${m.loadAverage1m}`,
  );

  lines.push('', 'export (simulator → S3 multipart on loopback)');
  const ex = report.export;
  if (ex) {
    const spread = (name: string) => {
      const figure = ex.spread[name];
      return figure ? `  [${figure.min.toFixed(1)}–${figure.max.toFixed(1)}]` : '';
    };
    lines.push(`  medians of ${ex.runs} interleaved runs [min–max], each a whole process from spawn to exit`);
    row(
      'source limit: GET → discard',
      `${ex.sourceLimitMbPerS.toFixed(1)} MB/s${spread('sourceLimitMbPerS')}`,
    );
    row(
      'sink limit: memory → S3 Upload',
      `${ex.sinkLimitMbPerS.toFixed(1)} MB/s${spread('sinkLimitMbPerS')}`,
    );
    row(
      'both limits sharing the cores',
      `${ex.sharedLimitMbPerS.toFixed(1)} MB/s  (1 / (1/source + 1/sink))`,
    );
    row(
      'ours: GET → VHD parser + sha256 → S3',
      `${ex.mbPerS.toFixed(1)} MB/s${spread('mbPerS')}  (ratio ${ex.ratioToLimit.toFixed(2)})`,
    );
    row('ours, the pipeline call alone', `${ex.pipelineMbPerS.toFixed(1)} MB/s${spread('pipelineMbPerS')}`);
    row('ours, CPU per MB', `${ex.cpuMsPerMB.toFixed(2)} ms${spread('cpuMsPerMB')}`);
    row(
      'peer: curl | aws s3 cp -',
      ex.peerMbPerS === null
        ? `n/a (${ex.peerNote ?? ''})`
        : `${ex.peerMbPerS.toFixed(1)} MB/s${spread('peerMbPerS')}  (ours ×${ex.ratioToPeer!.toFixed(2)})`,
    );
  } else row('export', 'not measured');

  lines.push('', 'memory (one export per fresh process)');
  const mem = report.memory;
  if (mem) {
    const sampled = (s: { heapMiB: number; arrayBuffersMiB: number }): string =>
      `  (sampled peaks: heap ${s.heapMiB.toFixed(0)}, buffers ${s.arrayBuffersMiB.toFixed(0)} MiB)`;
    row(
      `peak RSS, ${size(mem.smallVirtualSize)} disk`,
      `${mem.peakRssSmallMiB.toFixed(1)} MiB${sampled(mem.sampled.small)}`,
    );
    row(
      `peak RSS, ${size(mem.largeVirtualSize)} disk`,
      `${mem.peakRssLargeMiB.toFixed(1)} MiB${sampled(mem.sampled.large)}`,
    );
    row(
      'bytes exported / part size',
      `${mem.smallBytes} / ${mem.largeBytes} / ${mem.partSize / 2 ** 20} MiB`,
    );
    for (const [strategy, r] of Object.entries(mem.restore ?? {})) {
      row(
        `${strategy} restore peak RSS, ${size(r.smallVirtualSize)} / ${size(r.largeVirtualSize)}`,
        `${r.peakRssSmallMiB.toFixed(1)} / ${r.peakRssLargeMiB.toFixed(1)} MiB (${r.smallBytes} / ${r.largeBytes} bytes sent)`,
      );
    }
    const q = mem.qcow2;
    if (q) {
      row(
        `qcow2 peak RSS, ${size(q.smallVirtualSize)} disk`,
        `${q.peakRssSmallMiB.toFixed(1)} MiB${sampled(q.sampled.small)}`,
      );
      row(
        `qcow2 peak RSS, ${size(q.largeVirtualSize)} sparse disk`,
        `${q.peakRssLargeMiB.toFixed(1)} MiB${sampled(q.sampled.large)}`,
      );
      row(
        'qcow2 bytes exported / part size',
        `${q.smallBytes} / ${q.largeBytes} / ${q.partSize / 2 ** 20} MiB`,
      );
    } else row('qcow2 memory', 'not measured');
  } else row('memory', 'not measured');

  lines.push('', 'restore (1 full + deltas, overlapping writes)');
  const re = report.restore;
  if (re) {
    const spread = (name: string, digits = 1) => {
      const figure = re.spread[name];
      return figure ? `  [${figure.min.toFixed(digits)}–${figure.max.toFixed(digits)}]` : '';
    };
    lines.push(
      `  medians of ${re.runs} interleaved runs [min–max]; bytes counted at the simulator; sha256 checked`,
    );
    row('limit: S3 GET → discard', `${re.readLimitMbPerS.toFixed(1)} MB/s${spread('readLimitMbPerS')}`);
    row(
      'limit: memory → simulator PUT',
      `${re.writeLimitMbPerS.toFixed(1)} MB/s${spread('writeLimitMbPerS')}`,
    );
    row('both limits sharing the cores', `${re.sharedLimitMbPerS.toFixed(1)} MB/s  (1 / (1/read + 1/write))`);
    row(
      `replay (${re.layers} layers)`,
      `${re.replayMbPerS.toFixed(1)} MB/s${spread('replayMbPerS')}, ${re.replayBytes} bytes in ${re.replayS.toFixed(2)} s${spread('replayS', 2)}`,
    );
    row(
      'merge (one stream)',
      `${re.mergeMbPerS.toFixed(1)} MB/s${spread('mergeMbPerS')}, ${re.mergeBytes} bytes in ${re.mergeS.toFixed(2)} s${spread('mergeS', 2)}`,
    );
    row('default strategy', re.defaultStrategy);
  } else row('restore', 'not measured');

  const st = report.storage;
  lines.push('', `storage (${st?.backups ?? 30} backups, keep ${st?.keep ?? 14}, same writes)`);
  if (st) {
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    row(
      'forever incremental',
      `${mib(st.foreverIncremental.storedBytes)} in ${st.foreverIncremental.objects} objects, ${st.foreverIncremental.exportedFulls} full export(s)`,
    );
    row(
      'fullEvery 7',
      `${mib(st.fullEvery7.storedBytes)} in ${st.fullEvery7.objects} objects, ${st.fullEvery7.exportedFulls} full export(s)`,
    );
    row('stored ratio', `×${st.storedRatio.toFixed(2)} of a ${mib(st.diskBytes)} disk's series`);
    row(
      `per merge (${st.merges}, median)`,
      `${mib(st.bytesCopiedPerMerge)} copied in S3, ${mib(st.bytesUploadedPerMerge)} through compute (×${st.computeToDelta.median} the delta, max ×${st.computeToDelta.max}), ${mib(st.bytesVerifiedPerMerge)} read back, ${st.requestsPerMerge} S3 requests`,
    );
    for (const [name, times] of Object.entries(st.restoreLatest)) {
      row(
        `restore latest, ${name}`,
        `replay ${times.replayS.toFixed(1)} s, merge ${times.mergeS.toFixed(1)} s`,
      );
    }
  } else row('storage', 'not measured');

  lines.push('', 'bundles (as synthesized; import in a fresh process, median)');
  for (const b of report.bundles ?? []) {
    row(b.name, `${(b.bytes / 1024).toFixed(1).padStart(7)} KiB  ${b.importMs.toFixed(1).padStart(7)} ms`);
  }
  if (!report.bundles) row('bundles', 'not measured');

  lines.push('', 'state transitions (local execution)');
  const tr = report.transitions;
  row('one-VDI backup (full)', tr?.backup === null || !tr ? 'n/a' : String(tr.backup));
  if (tr?.deltaBackup !== undefined) row('one-VDI backup (delta)', String(tr.deltaBackup));
  row(
    `5-layer restore${tr?.restoreStrategy ? ` (default: ${tr.restoreStrategy})` : ''}`,
    tr?.restore === null || !tr ? 'n/a' : String(tr.restore),
  );
  for (const [strategy, count] of Object.entries(tr?.restoreByStrategy ?? {})) {
    row(`5-layer restore, ${strategy}`, String(count));
  }

  lines.push('', 'targets');
  for (const t of report.targets) {
    row(t.target, `${t.met === null ? 'not measured' : t.met ? 'met' : 'NOT MET'}  (${t.detail})`);
  }
  if (report.notes.length) {
    lines.push('', 'notes');
    for (const note of report.notes) lines.push(`  - ${note}`);
  }
  lines.push('', `total ${report.seconds.toFixed(0)} s`);
  return lines.join('\n');
}

function size(bytes: number): string {
  if (bytes >= 2 ** 40) return `${(bytes / 2 ** 40).toFixed(bytes % 2 ** 40 ? 1 : 0)} TiB`;
  return bytes >= 2 ** 30
    ? `${(bytes / 2 ** 30).toFixed(bytes % 2 ** 30 ? 1 : 0)} GiB`
    : `${bytes / 2 ** 20} MiB`;
}
