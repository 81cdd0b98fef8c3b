import { randomBytes } from 'node:crypto';
import { listSizesUnder } from '../lambdas/catalog/catalog.ts';
import type { BackupOutcome } from '../lambdas/backup/state.ts';
import { runLocalBackup, type LocalTarget } from '../world/local/local-backup.ts';
import { runLocalRestore } from '../world/local/local-restore.ts';
import { BLOCK_SIZE, startXapiSimulator } from '../world/xapi-simulator/index.ts';
import type { BenchOptions } from './args.ts';
import type { BenchReport } from './report.ts';
import { prng } from './restore-chain.ts';
import type { S3World } from './s3-world.ts';

const BACKUPS = 30;
const KEEP = 14;
const FULL_EVERY = 7;
/** 4 KiB writes per backup at fixed pseudo-random offsets: about 2 % of a 256 MiB disk's blocks. */
const WRITES_PER_BACKUP = 3;

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Forever incremental against `fullEvery 7` on the same history (docs/design.md § Forever incremental):
 * two VDIs get the same writes, 30 backups each with keep 14, each series under its own prefix of the same
 * Swift bucket, through the synthesized backup workflow. Stored bytes come from the server's listing;
 * merges from the outcomes (S3 requests counted by the merge itself); the latest point of each series is
 * then restored with each strategy and checked against the disk.
 */
export async function measureStorage(
  options: BenchOptions,
  s3: S3World,
  log: (line: string) => void,
): Promise<NonNullable<BenchReport['storage']>> {
  const sim = await startXapiSimulator();
  try {
    const series = [
      { name: 'foreverIncremental', retention: { keep: KEEP }, prefix: 'storage-fi' },
      { name: 'fullEvery7', retention: { keep: KEEP, fullEvery: FULL_EVERY }, prefix: 'storage-fe' },
    ].map((s) => ({
      ...s,
      vdi: sim.addVdi({
        virtualSize: options.storageSize,
        populate: 'generated',
        nameLabel: `bench ${s.name}`,
      }),
      target: {
        xapi: { url: sim.url, username: sim.username, password: sim.password },
        s3: s3.endpoint,
        bucket: s3.bucket,
        prefix: s.prefix,
      } satisfies LocalTarget,
      bytesById: new Map<string, number>(),
      merges: [] as Extract<NonNullable<BackupOutcome['merge']>, { status: 'merged' }>[],
      fulls: 0,
    }));
    const random = prng(0xf0e1);
    const blocks = Math.floor(options.storageSize / BLOCK_SIZE);
    for (let index = 0; index < BACKUPS; index++) {
      if (index > 0) {
        for (let i = 0; i < WRITES_PER_BACKUP; i++) {
          const offset = Math.floor(random() * blocks) * BLOCK_SIZE + Math.floor(random() * 512) * 4096;
          const data = randomBytes(4096);
          for (const s of series) sim.writeDisk(s.vdi.uuid, offset, data);
        }
      }
      for (const s of series) {
        const run = await runLocalBackup(s.target, { vdiUuids: [s.vdi.uuid], retention: s.retention });
        const outcome = run.summary?.outcomes[0];
        if (run.status !== 'SUCCEEDED' || outcome?.status !== 'succeeded') {
          throw new Error(`${s.name} backup ${index} failed: ${run.error}: ${run.cause}`);
        }
        s.bytesById.set(outcome.backupId!, outcome.bytes!);
        if (outcome.kind === 'full') s.fulls++;
        if (outcome.merge?.status === 'failed')
          throw new Error(`${s.name} merge failed: ${outcome.merge.error}`);
        if (outcome.merge?.status === 'merged') s.merges.push(outcome.merge);
      }
      if (index % 10 === 9) log(`storage: ${index + 1} of ${BACKUPS} backups of each series`);
    }
    const stored = async (prefix: string) => {
      const sizes = await listSizesUnder(s3.client, s3.bucket, `${prefix}/`);
      return { storedBytes: [...sizes.values()].reduce((a, b) => a + b, 0), objects: sizes.size };
    };
    const [fi, fe] = series;
    const fiStored = { ...(await stored(fi!.prefix)), exportedFulls: fi!.fulls };
    const feStored = { ...(await stored(fe!.prefix)), exportedFulls: fe!.fulls };
    // Through compute per merge, against the delta it absorbed (the merged point's own delta object).
    const perMerge = fi!.merges.map((merge) => ({
      computeToDelta: merge.bytesUploaded / (fi!.bytesById.get(merge.backupId) ?? Number.NaN),
      requests: merge.requests,
      bytesVerified: merge.bytesVerified,
      bytesCopied: merge.bytesCopied,
      bytesUploaded: merge.bytesUploaded,
    }));
    if (!perMerge.length) throw new Error('forever incremental merged nothing in 30 backups');

    const restoreLatest: Record<string, Record<string, number>> = {};
    let sha256Match = true;
    for (const s of series) {
      const expected = sim.diskSha256(s.vdi.uuid);
      restoreLatest[s.name] = {};
      for (const strategy of ['replay', 'merge'] as const) {
        const started = performance.now();
        const run = await runLocalRestore(s.target, {
          vdiUuid: s.vdi.uuid,
          srUuid: sim.srs.shared.uuid,
          strategy,
        });
        const seconds = (performance.now() - started) / 1000;
        if (run.status !== 'SUCCEEDED') throw new Error(`${s.name} ${strategy} restore failed: ${run.cause}`);
        const restored = run.result!.vdiUuid;
        if (sim.diskSha256(restored) !== expected) sha256Match = false;
        sim.deleteVdi(restored);
        restoreLatest[s.name]![`${strategy}S`] = round(seconds);
        log(`storage: ${s.name} ${strategy} restore of the latest point in ${seconds.toFixed(1)} s`);
      }
    }
    return {
      backups: BACKUPS,
      keep: KEEP,
      diskBytes: options.storageSize,
      foreverIncremental: fiStored,
      fullEvery7: feStored,
      storedRatio: round(fiStored.storedBytes / feStored.storedBytes, 3),
      merges: perMerge.length,
      computeToDelta: {
        median: round(median(perMerge.map((m) => m.computeToDelta))),
        max: round(Math.max(...perMerge.map((m) => m.computeToDelta))),
      },
      requestsPerMerge: median(perMerge.map((m) => m.requests)),
      bytesCopiedPerMerge: median(perMerge.map((m) => m.bytesCopied)),
      bytesUploadedPerMerge: median(perMerge.map((m) => m.bytesUploaded)),
      bytesVerifiedPerMerge: median(perMerge.map((m) => m.bytesVerified)),
      restoreLatest: restoreLatest as NonNullable<BenchReport['storage']>['restoreLatest'],
      sha256Match,
    };
  } finally {
    await sim.close();
  }
}
