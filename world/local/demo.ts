/**
 * `npm start`: the main job on embedded defaults, with no AWS account and no pool. It starts the XAPI
 * simulator and an in-process S3-compatible server and, for each of two disks, runs the synthesized backup
 * state machine for a full backup, writes to the disk, runs delta backups, lists the catalog, then restores
 * the latest restore point into new VDIs with each strategy through the synthesized restore state machine
 * and checks their content:
 *   - a VHD-backed VDI (--vdi-size, 256 MiB by default, a third of it written): a full and three deltas,
 *     keeping 2, so forever incremental merges the oldest kept point into a synthetic full inside S3
 *     twice; the oldest and the latest point are restored (docs/design.md § Forever incremental);
 *   - a sparse qcow2-backed VDI (--qcow2-size, 3 TiB by default, a few MiB written across it): a full
 *     and a delta (docs/design.md § QCOW2 backups);
 *   - then a whole VM ("demo vm": two disks, a CD drive, NVRAM, two VIFs): backed up twice (fulls, then
 *     deltas) and restored into a new VM (docs/design.md § VM restores).
 *
 *   npm start                 people: progress while transfers run, then a summary per disk
 *   npm start -- --json       ends stdout with {"backups":[{"vdi","format","id","kind","bytes","sha256"},…],
 *                             "restores":[{"vdi","format","restorePoint","strategy","vdiUuid","bytes","seconds","sha256Match"},…],
 *                             "vms":[{"vmUuid","restorePoint","disks","restoredVmUuid","disksMatch","vifsMatch"}],
 *                             "merges":[{"backupId","bytesCopied","bytesUploaded","parts"}],
 *                             "storage":{"storedBytes","objects"}}
 *   npm start -- --vdi-size 1GiB --qcow2-size 16TiB
 *
 * sha256Match compares the restored VDI's content with the source snapshot's by the simulator's sparse
 * content hash (`sparseSha256`: equal content, equal hash, at the cost of the allocated blocks only).
 */
import { DEFAULT_CATALOG_PREFIX } from '../../lambdas/runtime/defaults.ts';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { listManifests, listSizesUnder } from '../../lambdas/catalog/catalog.ts';
import { describeMerge } from '../../cli/summaries.ts';
import type { ImageFormat } from '../../lambdas/catalog/manifest.ts';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { startEmbeddedS3 } from '../embedded-s3.ts';
import { parseSize } from '../xapi-simulator/cli-args.ts';
import { startXapiSimulator, type AddVdiOptions, type XapiSimulator } from '../xapi-simulator/index.ts';
import { runLocalBackup, type LocalTarget } from './local-backup.ts';
import { runLocalRestore, runLocalVmRestore } from './local-restore.ts';
import { addDemoVm } from '../xapi-simulator/demo-vm.ts';
import { closeLocalDeployment } from './local-deployments.ts';
import { formatBytes, formatRate, TransferProgress } from './progress.ts';

const KiB = 1024;

interface DemoDisk {
  readonly label: string;
  readonly vdi: AddVdiOptions;
  /** Writes between backups: [count, bytes each], one entry per delta. */
  readonly deltas: readonly (readonly [number, number])[];
  /** Writes before the full, for a disk that starts empty. */
  readonly seed?: readonly [number, number];
  /** Retention of its backups; a small `keep` makes forever incremental merge in S3. */
  readonly retention?: { readonly keep: number };
}

interface DemoMerge {
  backupId: string;
  bytesCopied: number;
  bytesUploaded: number;
  parts: number;
}

interface DemoBackup {
  vdi: string;
  format: ImageFormat;
  id: string;
  kind: string;
  bytes: number;
  sha256: string;
}

interface DemoVm {
  vmUuid: string;
  restorePoint: string;
  disks: number;
  restoredVmUuid: string;
  disksMatch: boolean;
  vifsMatch: boolean;
}

interface DemoRestore {
  vdi: string;
  format: ImageFormat;
  /** The restored point: the latest, and for a merged series also the oldest (its synthetic full). */
  restorePoint: string;
  strategy: 'replay' | 'merge';
  vdiUuid: string;
  bytes: number;
  seconds: number;
  sha256Match: boolean;
}

function sizeOption(text: string, flag: string): number {
  try {
    return parseSize(text);
  } catch {
    throw new Error(`${flag}: "${text}" is not a disk size; use e.g. 256MiB, 1GiB or 3TiB`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      'vdi-size': { type: 'string', default: '256MiB' },
      'qcow2-size': { type: 'string', default: '3TiB' },
    },
  });
  const json = values.json === true;
  const say = (line: string) => (json ? process.stderr : process.stdout).write(line + '\n');
  const disks: DemoDisk[] = [
    {
      label: 'vhd disk',
      vdi: {
        virtualSize: sizeOption(values['vdi-size']!, '--vdi-size'),
        populate: 'scattered',
        nameLabel: 'demo-disk',
        imageFormat: 'vhd',
      },
      deltas: [
        [8, 64 * KiB],
        [3, 64 * KiB],
        [5, 64 * KiB],
      ],
      retention: { keep: 2 },
    },
    {
      label: 'qcow2 disk',
      vdi: {
        virtualSize: sizeOption(values['qcow2-size']!, '--qcow2-size'),
        populate: 'none',
        nameLabel: 'demo-qcow2-disk',
        imageFormat: 'qcow2',
      },
      seed: [24, 256 * KiB],
      deltas: [[6, 64 * KiB]],
    },
  ];

  const sim = await startXapiSimulator();
  let target: LocalTarget | undefined;
  const s3 = await startEmbeddedS3();
  try {
    const bucket = 'vdi-vault-demo';
    await createS3Client(s3).send(new CreateBucketCommand({ Bucket: bucket }));
    let progress: TransferProgress | undefined;
    const local: LocalTarget = {
      xapi: { url: sim.url, username: sim.username, password: sim.password },
      pool: 'demo',
      s3,
      bucket,
      prefix: DEFAULT_CATALOG_PREFIX,
      onExportProgress: (_vdi, bytes) => progress?.update(bytes),
    };
    target = local;
    say(`XAPI simulator at ${sim.url}; S3-compatible server at ${s3.endpoint}`);
    const backups: DemoBackup[] = [];
    const restores: DemoRestore[] = [];
    const merges: DemoMerge[] = [];
    for (const disk of disks) {
      const outcome = await demoDisk(
        sim,
        local,
        disk,
        say,
        (label) => (progress = new TransferProgress(label)),
      );
      backups.push(...outcome.backups);
      restores.push(...outcome.restores);
      merges.push(...outcome.merges);
    }
    const vms = [await demoVm(sim, local, say)];
    const sizes = await listSizesUnder(createS3Client(s3), bucket, `${DEFAULT_CATALOG_PREFIX}/`);
    const storage = {
      storedBytes: [...sizes.values()].reduce((sum, size) => sum + size, 0),
      objects: sizes.size,
    };
    say(`\nstored: ${formatBytes(storage.storedBytes)} in ${storage.objects} objects`);
    if (restores.some((restore) => !restore.sha256Match)) process.exitCode = 1;
    if (vms.some((vm) => !vm.disksMatch || !vm.vifsMatch)) process.exitCode = 1;
    if (json) process.stdout.write(JSON.stringify({ backups, restores, vms, merges, storage }) + '\n');
  } finally {
    if (target) await closeLocalDeployment(target);
    await sim.close();
    await s3.close();
  }
}

/**
 * The demo VM backed up whole twice (fulls, then deltas after writes) and its latest VM point restored into
 * a new VM: each restored disk must hold its point's content, each VIF the source's MAC and network.
 */
async function demoVm(sim: XapiSimulator, local: LocalTarget, say: (line: string) => void): Promise<DemoVm> {
  const boot = sim.addVdi({ virtualSize: 64 * 1024 * KiB, populate: 'scattered', nameLabel: 'demo vm root' });
  const vm = addDemoVm(sim, boot.uuid);
  say(`\nVM "${vm.nameLabel}" ${vm.uuid}: ${vm.disks.length} disks, a CD drive, NVRAM, two VIFs`);
  let restorePoint = '';
  for (const [index, label] of ['first backup (fulls)', 'second backup (deltas)'].entries()) {
    if (index > 0) for (const disk of vm.disks) sim.writeDisk(disk, 4096 * 64, randomBytes(64 * KiB));
    const started = Date.now();
    const run = await runLocalBackup(local, { vmUuids: [vm.uuid] });
    const outcome = run.summary?.vmOutcomes?.[0];
    if (run.status !== 'SUCCEEDED' || outcome?.status !== 'succeeded')
      throw new Error(`VM ${label} failed: ${run.error ?? outcome?.error}: ${run.cause ?? outcome?.cause}`);
    restorePoint = outcome.vmBackupId!;
    const kinds = run.summary!.outcomes.map((o) => `${o.kind} ${formatBytes(o.bytes ?? 0)}`).join(', ');
    say(`  ${label}: VM point ${restorePoint} (${kinds}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const started = Date.now();
  const run = await runLocalVmRestore(local, { vmUuid: vm.uuid, srUuid: sim.srs.shared.uuid });
  if (run.status !== 'SUCCEEDED') throw new Error(`VM restore failed: ${run.error}: ${run.cause}`);
  const result = run.result!;
  let disksMatch = true;
  const catalog = { bucket: local.bucket, prefix: local.prefix ?? DEFAULT_CATALOG_PREFIX };
  for (const disk of result.disks) {
    const point = (
      await listManifests(createS3Client(local.s3), catalog, local.pool!, disk.sourceVdiUuid)
    ).find((manifest) => manifest.backupId === disk.backupId)!;
    disksMatch &&= sim.sparseSha256(disk.vdiUuid) === sim.sparseSha256(point.snapshotUuid);
  }
  const vifsOf = (uuid: string) =>
    sim
      .vifsOf(uuid)
      .map((vif) => `${String(vif.device)} ${String(vif.MAC)} ${String(vif.network)}`)
      .sort();
  const vifsMatch = JSON.stringify(vifsOf(result.vmUuid)) === JSON.stringify(vifsOf(vm.uuid));
  say(
    `  restored ${restorePoint} into new VM ${result.vmUuid} (halted) in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
      `${result.disks.length} disks ${disksMatch ? 'match' : 'DIFFER FROM'} their points, VIFs ${vifsMatch ? 'match' : 'DIFFER'}`,
  );
  return {
    vmUuid: vm.uuid,
    restorePoint,
    disks: result.disks.length,
    restoredVmUuid: result.vmUuid,
    disksMatch,
    vifsMatch,
  };
}

/** One disk's backups and restores, said as they happen. */
async function demoDisk(
  sim: XapiSimulator,
  local: LocalTarget,
  disk: DemoDisk,
  say: (line: string) => void,
  startProgress: (label: string) => TransferProgress,
): Promise<{ backups: DemoBackup[]; restores: DemoRestore[]; merges: DemoMerge[] }> {
  const vdi = sim.addVdi(disk.vdi);
  const format = (sim.vdiRecord(vdi.uuid)!.sm_config as Record<string, string>)[
    'image-format'
  ] as ImageFormat;
  const size = disk.vdi.virtualSize;
  const scribble = ([count, bytes]: readonly [number, number]) => {
    for (let i = 0; i < count; i++) {
      const offset = Math.floor(Math.random() * ((size - bytes) / 4096)) * 4096;
      sim.writeDisk(vdi.uuid, offset, randomBytes(bytes));
    }
    say(`  wrote ${count} × ${formatBytes(bytes)} at random offsets`);
  };
  say(`\n${disk.label}: VDI ${vdi.uuid}, ${format}, ${formatBytes(size)}`);
  if (disk.seed) scribble(disk.seed);
  say(`  ${sim.allocatedBlocks(vdi.uuid).length} blocks of 2 MiB allocated on the host`);

  const s3 = createS3Client(local.s3);
  const catalog = { bucket: local.bucket, prefix: DEFAULT_CATALOG_PREFIX };
  // Each point's content, taken while its snapshot is on the host (a later backup retires it).
  const pointContent = new Map<string, string>();
  const merges: DemoMerge[] = [];
  const backup = async (label: string) => {
    const progress = startProgress(`  ${label}`);
    const started = Date.now();
    const run = await runLocalBackup(local, {
      vdiUuids: [vdi.uuid],
      ...(disk.retention ? { retention: disk.retention } : {}),
    });
    progress.done();
    if (run.status !== 'SUCCEEDED')
      throw new Error(`${disk.label} ${label} failed: ${run.error}: ${run.cause}`);
    const outcome = run.summary!.outcomes[0]!;
    const seconds = (Date.now() - started) / 1000;
    say(
      `  ${label}: ${outcome.kind} ${outcome.backupId}  ${formatBytes(outcome.bytes!)} in ${seconds.toFixed(1)} s ` +
        `(${formatRate(outcome.bytes!, (outcome.durationMs ?? 0) / 1000)} export)` +
        (outcome.fullReason ? `  [full: ${outcome.fullReason}]` : ''),
    );
    const newest = (await listManifests(s3, catalog, 'demo', vdi.uuid)).at(-1)!;
    pointContent.set(newest.backupId, sim.sparseSha256(newest.snapshotUuid));
    if (outcome.merge?.status === 'merged') {
      const { backupId, bytesCopied, bytesUploaded, parts } = outcome.merge;
      merges.push({ backupId, bytesCopied, bytesUploaded, parts });
      say(`    ${describeMerge(outcome.merge)}`);
    }
  };
  await backup('backup 1');
  for (const [index, writes] of disk.deltas.entries()) {
    scribble(writes);
    await backup(`backup ${index + 2}`);
  }

  const manifests = await listManifests(s3, catalog, 'demo', vdi.uuid);
  say('  catalog');
  // present: 2 MiB blocks of a vhd layer, 64 KiB clusters of a qcow2 one.
  say('    id                               format kind   bytes        present  parent');
  for (const m of manifests) {
    say(
      `    ${m.backupId.padEnd(32)} ${(m.format ?? 'vhd').padEnd(6)} ${(m.synthetic ? 'merged' : m.kind).padEnd(6)} ${String(m.bytes).padStart(12)}  ${String(m.presentBlocks).padStart(7)}  ${m.parentBackupId ?? '-'}`,
    );
  }
  say(
    `  host: ${sim.snapshotsOf(vdi.uuid).length} snapshot kept (the next delta's base), ${sim.openTasks().length} tasks, ${sim.openSessions().length} sessions open`,
  );

  // The latest point, and after a merge the oldest too (its synthetic full), each with each strategy.
  const points = [
    ...new Set([manifests[0]!.synthetic ? manifests[0]! : undefined, manifests.at(-1)!]),
  ].filter((m) => m !== undefined);
  const restores: DemoRestore[] = [];
  for (const [point, strategy] of points.flatMap((m) =>
    (['replay', 'merge'] as const).map((st) => [m, st] as const),
  )) {
    const expected = pointContent.get(point.backupId)!;
    const started = Date.now();
    const run = await runLocalRestore(local, {
      vdiUuid: vdi.uuid,
      restorePoint: point.backupId,
      srUuid: sim.srs.shared.uuid,
      strategy,
    });
    if (run.status !== 'SUCCEEDED') {
      throw new Error(`${disk.label} restore (${strategy}) failed: ${run.error}: ${run.cause}`);
    }
    const result = run.result!;
    const seconds = (Date.now() - started) / 1000;
    const sha256Match = sim.sparseSha256(result.vdiUuid) === expected;
    const restoredFormat = (sim.vdiRecord(result.vdiUuid)!.sm_config as Record<string, string>)[
      'image-format'
    ];
    restores.push({
      vdi: vdi.uuid,
      format: restoredFormat as ImageFormat,
      restorePoint: point.backupId,
      strategy,
      vdiUuid: result.vdiUuid,
      bytes: result.bytesMoved,
      seconds,
      sha256Match,
    });
    say(
      `  restore (${strategy}) of ${result.restorePoint}: ${result.layersApplied.length} layers, ` +
        `${formatBytes(result.bytesMoved)} sent in ${seconds.toFixed(1)} s into ${restoredFormat} VDI ${result.vdiUuid}; ` +
        `content ${sha256Match ? 'matches' : 'DIFFERS FROM'} the source snapshot (sha256 ${expected.slice(0, 16)}…)`,
    );
  }
  const backups = manifests.map((m) => ({
    vdi: vdi.uuid,
    format: m.format ?? 'vhd',
    id: m.backupId,
    kind: m.kind,
    bytes: m.bytes,
    sha256: m.sha256,
  }));
  return { backups, restores, merges };
}

main().catch((error: unknown) => {
  process.stderr.write(`vdi-vault demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
