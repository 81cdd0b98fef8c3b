/**
 * `npm start`: the main job on embedded defaults, with no AWS account and no pool. It starts the XAPI
 * simulator and an in-process S3-compatible server, runs the synthesized backup state machine for a full
 * backup, writes to the disk, runs two delta backups, lists the catalog, then restores the latest restore point
 * into new VDIs with each strategy through the synthesized restore state machine and checks their content.
 *
 *   npm start                 people: progress while transfers run, then a summary table
 *   npm start -- --json       ends stdout with {"backups":[{"id","kind","bytes","sha256"},…],
 *                             "restores":[{"strategy","vdiUuid","bytes","seconds","sha256Match"},…]}
 *   npm start -- --vdi-size 1GiB
 */
import { DEFAULT_CATALOG_PREFIX } from '../../lambdas/runtime/defaults.ts';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { startEmbeddedS3 } from '../embedded-s3.ts';
import { startXapiSimulator } from '../xapi-simulator/index.ts';
import { runLocalBackup, type LocalTarget } from './local-backup.ts';
import { runLocalRestore } from './local-restore.ts';
import { closeLocalDeployment } from './local-deployments.ts';
import { formatBytes, formatRate, TransferProgress } from './progress.ts';

const MiB = 1024 * 1024;

function parseSize(text: string): number {
  const match = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(text.trim());
  if (!match) throw new Error(`--vdi-size: "${text}" is not a size; use e.g. 256MiB or 1GiB`);
  const unit = { b: 1, kib: 1024, mib: MiB, gib: 1024 * MiB }[(match[2] ?? 'B').toLowerCase() as 'b'];
  return Number(match[1]) * unit;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { json: { type: 'boolean', default: false }, 'vdi-size': { type: 'string', default: '256MiB' } },
  });
  const json = values.json === true;
  const say = (line: string) => (json ? process.stderr : process.stdout).write(line + '\n');

  const sim = await startXapiSimulator();
  let target: LocalTarget | undefined;
  const s3 = await startEmbeddedS3();
  try {
    const vdi = sim.addVdi({
      virtualSize: parseSize(values['vdi-size']!),
      populate: 'scattered',
      nameLabel: 'demo-disk',
    });
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
    say(
      `VDI ${vdi.uuid}: ${formatBytes(parseSize(values['vdi-size']!))}, ${sim.allocatedBlocks(vdi.uuid).length} blocks allocated`,
    );

    const backup = async (label: string) => {
      progress = new TransferProgress(label);
      const started = Date.now();
      const run = await runLocalBackup(local, { vdiUuids: [vdi.uuid] });
      progress.done();
      if (run.status !== 'SUCCEEDED') throw new Error(`${label} failed: ${run.error}: ${run.cause}`);
      const outcome = run.summary!.outcomes[0]!;
      const seconds = (Date.now() - started) / 1000;
      say(
        `${label}: ${outcome.kind} ${outcome.backupId}  ${formatBytes(outcome.bytes!)} in ${seconds.toFixed(1)} s ` +
          `(${formatRate(outcome.bytes!, (outcome.durationMs ?? 0) / 1000)} export)` +
          (outcome.fullReason ? `  [full: ${outcome.fullReason}]` : ''),
      );
    };
    const scribble = (count: number) => {
      for (let i = 0; i < count; i++) {
        const offset = Math.floor(Math.random() * (parseSize(values['vdi-size']!) / 4096 - 64)) * 4096;
        sim.writeDisk(vdi.uuid, offset, randomBytes(64 * 1024));
      }
      say(`wrote ${count} × 64 KiB at random offsets`);
    };

    await backup('backup 1');
    scribble(8);
    await backup('backup 2');
    scribble(3);
    await backup('backup 3');

    const manifests = await listManifests(
      createS3Client(s3),
      { bucket, prefix: DEFAULT_CATALOG_PREFIX },
      'demo',
      vdi.uuid,
    );
    say('\ncatalog');
    say('  id                               kind   bytes         blocks  parent');
    for (const m of manifests) {
      say(
        `  ${m.backupId.padEnd(32)} ${m.kind.padEnd(6)} ${String(m.bytes).padStart(12)}  ${String(m.presentBlocks).padStart(6)}  ${m.parentBackupId ?? '-'}`,
      );
    }
    say(
      `host: ${sim.snapshotsOf(vdi.uuid).length} snapshot kept (the next delta's base), ${sim.openTasks().length} tasks, ${sim.openSessions().length} sessions open`,
    );

    const latest = manifests.at(-1)!;
    const expected = sim.diskSha256(latest.snapshotUuid);
    const restores = [];
    for (const strategy of ['replay', 'merge'] as const) {
      const started = Date.now();
      const run = await runLocalRestore(local, {
        vdiUuid: vdi.uuid,
        restorePoint: 'latest',
        srUuid: sim.srs.shared.uuid,
        strategy,
      });
      if (run.status !== 'SUCCEEDED')
        throw new Error(`restore (${strategy}) failed: ${run.error}: ${run.cause}`);
      const result = run.result!;
      const seconds = (Date.now() - started) / 1000;
      const sha256Match = sim.diskSha256(result.vdiUuid) === expected;
      restores.push({ strategy, vdiUuid: result.vdiUuid, bytes: result.bytesMoved, seconds, sha256Match });
      say(
        `restore (${strategy}) of ${result.restorePoint}: ${result.layersApplied.length} layers, ` +
          `${formatBytes(result.bytesMoved)} sent in ${seconds.toFixed(1)} s into VDI ${result.vdiUuid}; ` +
          `content ${sha256Match ? 'matches' : 'DIFFERS FROM'} the source snapshot (sha256 ${expected.slice(0, 16)}…)`,
      );
      if (!sha256Match) process.exitCode = 1;
    }
    if (json) {
      const backups = manifests.map((m) => ({
        id: m.backupId,
        kind: m.kind,
        bytes: m.bytes,
        sha256: m.sha256,
      }));
      process.stdout.write(JSON.stringify({ backups, restores }) + '\n');
    }
  } finally {
    if (target) await closeLocalDeployment(target);
    await sim.close();
    await s3.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`vdi-vault demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
