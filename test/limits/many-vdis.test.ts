/**
 * 50 VDIs in one backup run with retention deleting in every series: each VDI has an old series of 8
 * restore points whose base snapshot is gone, then a full whose snapshot is on the host (all fabricated in
 * Swift as earlier backups left them), and then the run under test: a delta of each with `keep: 1`.
 * Retention must keep the delta and the full it needs and delete the 8 old points of every VDI (800 keys),
 * and the execution's output must carry counts, not one string per deleted key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ECS_OVERRIDES_LIMIT, STATE_PAYLOAD_LIMIT } from '../../world/local/local-deployment.ts';
import { BACKUP_ID_TAG, SERIES_TAG } from '../../lambdas/backup/snapshot-tags.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import { seriesName } from '../../lambdas/catalog/keys.ts';
import { planRetention } from '../../lambdas/catalog/retention.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { XapiSession } from '../../lambdas/xapi/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { mapConcurrently } from '../../lambdas/shared/concurrently.ts';
import { deleteKeys, fabricateSeries, type LayerSpec } from './catalog-fixtures.ts';
import { describeSizes, installPayloadProbe, type PayloadProbe } from './payload-probe.ts';

const MiB = 1024 * 1024;
const VDIS = 50;
const OLD_POINTS = 8;
const RETENTION = { keep: 1, fullEvery: 7 };
/** The most VDIs one execution may list (the backup input's own limit). */
const MAX_VDIS_PER_EXECUTION = 100;

describe('50 VDIs in one backup run with retention deleting', () => {
  let world: BackupWorld;
  let probe: PayloadProbe;
  let vdiUuids: string[];
  /** Per VDI: the 8 old restore points, and the full the next delta builds on. */
  const oldSeries = new Map<string, Manifest[]>();
  const bases = new Map<string, Manifest>();

  beforeAll(async () => {
    probe = installPayloadProbe();
    const name = (i: number) => `vm-${String(i).padStart(2, '0')} root`;
    world = await startBackupWorld({
      vdi: { virtualSize: 2 * MiB, populate: 'generated', nameLabel: name(0) },
    });
    vdiUuids = [world.vdiUuid];
    for (let i = 1; i < VDIS; i++) {
      vdiUuids.push(
        world.sim.addVdi({ virtualSize: 2 * MiB, populate: 'generated', nameLabel: name(i) }).uuid,
      );
    }
    const { sim } = world;
    const started = Date.now();
    const session = await XapiSession.login(
      { url: sim.url },
      { username: sim.username, password: sim.password },
    );
    try {
      await mapConcurrently(vdiUuids, 4, async (vdiUuid, i) => {
        // The last backup's snapshot, tagged as ours, and its content as the full's object.
        const snapshot = sim.snapshotVdi(vdiUuid);
        const blocks = new Map(
          sim
            .allocatedBlocks(snapshot.uuid)
            .map((index) => [index, Buffer.from(sim.readDisk(snapshot.uuid, index * 2 * MiB, 2 * MiB))]),
        );
        const layers: LayerSpec[] = [
          // 2024: a full and 7 deltas whose snapshots are long gone.
          ...Array.from({ length: OLD_POINTS }, (_, k) => ({
            kind: k === 0 ? ('full' as const) : ('delta' as const),
            blocks: new Map<number, Buffer>(),
          })),
          { kind: 'full', blocks, snapshotUuid: snapshot.uuid },
        ];
        const manifests = await fabricateSeries(world.s3, {
          catalog: { bucket: world.bucket, prefix: world.target.prefix! },
          pool: world.target.pool!,
          vdiUuid,
          vdiNameLabel: name(i),
          virtualSize: 2 * MiB,
          layers,
          firstAt: new Date(Date.UTC(2024, 0, 1, 0, i)),
          stepMs: 86_400_000,
          concurrency: 4,
        });
        await session.addToVdiOtherConfig(snapshot.ref, SERIES_TAG, seriesName(world.target.pool!, vdiUuid));
        await session.addToVdiOtherConfig(snapshot.ref, BACKUP_ID_TAG, manifests.at(-1)!.backupId);
        oldSeries.set(vdiUuid, manifests.slice(0, OLD_POINTS));
        bases.set(vdiUuid, manifests.at(-1)!);
      });
    } finally {
      await session.logout();
    }
    console.log(`fabricated ${VDIS * (OLD_POINTS + 1)} restore points in ${Date.now() - started} ms`);
    // Every disk changed since its last backup.
    for (const uuid of vdiUuids) sim.writeDisk(uuid, 0, Buffer.alloc(4096, 0xa5));
  }, 600_000);

  afterAll(async () => {
    probe?.remove();
    if (world) await deleteKeys(world.s3, world.bucket);
    await world?.close();
  });

  it('succeeds, keeps what retention should in every catalog, and reports counts in a small output', async () => {
    const deployment = await world.deployment();
    const callsBefore = deployment.gateway.calls.length;
    probe.reset();
    const started = Date.now();
    const run = await world.backup({ vdiUuids, concurrency: 5, retention: RETENTION });
    const elapsed = Date.now() - started;
    expect(run.status, `${run.error}: ${run.cause}`).toBe('SUCCEEDED');
    const sizes = probe.sizes();
    console.log(describeSizes(`50 VDIs with retention (${elapsed} ms)`, sizes));

    const summary = run.output as BackupSummary;
    expect(summary.succeeded).toBe(VDIS);
    expect(summary.failed).toBe(0);
    expect(summary.outcomes.map((outcome) => outcome.vdiUuid).sort()).toEqual([...vdiUuids].sort());

    let deletedKeys = 0;
    for (const outcome of summary.outcomes) {
      const uuid = outcome.vdiUuid;
      const old = oldSeries.get(uuid)!;
      const base = bases.get(uuid)!;
      expect(outcome.kind).toBe('delta');
      expect(outcome.presentBlocks).toBe(1);
      // What retention should keep, worked out from the catalog before the run plus the new delta.
      const after = await world.manifests(uuid);
      const expected = planRetention([...old, base, after.at(-1)!], RETENTION);
      expect(after.map((m) => m.backupId)).toEqual([base.backupId, outcome.backupId]);
      expect(after.at(-1)!.parentBackupId).toBe(base.backupId);
      expect(expected.retained).toEqual([outcome.backupId]);
      expect(expected.expired.map((m) => m.backupId).sort()).toEqual(old.map((m) => m.backupId).sort());
      // Counts, and at most three ids as a pointer into the logs: never one string per deleted key.
      expect(outcome.retention).toEqual({
        kept: 1,
        deleted: OLD_POINTS,
        orphansDeleted: 0,
        keysDeleted: 2 * OLD_POINTS,
        deletedIds: old
          .slice(-3)
          .map((m) => m.backupId)
          .reverse(),
      });
      deletedKeys += outcome.retention!.keysDeleted;
      for (const manifest of old) expect(JSON.stringify(outcome)).not.toContain(manifest.objectKey);
    }
    expect(deletedKeys).toBe(VDIS * OLD_POINTS * 2);
    // Counted at S3: every one of those keys was deleted, by the Cleanup function.
    const deletes = deployment.gateway.calls
      .slice(callsBefore)
      .filter((call) => call.action === 's3:DeleteObject' && call.allowed)
      .map((call) => call.resource.split(':::')[1]!.split('/').slice(1).join('/'));
    const oldKeys = [...oldSeries.values()].flatMap((series) =>
      series.flatMap((m) => [m.objectKey, m.objectKey.replace(/\.vhd$/, '.json')]),
    );
    expect(new Set(deletes.filter((key) => oldKeys.includes(key))).size).toBe(oldKeys.length);

    // Within the limits (the deployment fails a run past them), with room for the input's maximum.
    expect(sizes.executionOutput).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT);
    expect(sizes.state.bytes).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT);
    expect(sizes.task.bytes).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT);
    expect(sizes.ecsOverrides.bytes).toBeLessThanOrEqual(ECS_OVERRIDES_LIMIT);
    const largestOutcome = Math.max(...summary.outcomes.map((o) => Buffer.byteLength(JSON.stringify(o))));
    console.log(
      `execution output ${sizes.executionOutput} bytes for ${VDIS} VDIs and ${deletedKeys} deleted keys; ` +
        `largest outcome ${largestOutcome} bytes`,
    );
    expect(sizes.executionOutput).toBeLessThan(VDIS * 1024);
    expect(MAX_VDIS_PER_EXECUTION * largestOutcome * 2).toBeLessThan(STATE_PAYLOAD_LIMIT);

    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
  }, 600_000);
});
