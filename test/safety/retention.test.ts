import { DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { applyRetention, planRetention } from '../../lambdas/catalog/retention.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys, readObject, s3World } from '../world/s3.ts';
import { backupAndRecord, expectInvariants, manifest, type RestorePointHashes } from './invariants.ts';

const MiB = 1024 * 1024;

describe('retention planning', () => {
  it('keeps the newest N and everything they need, deleting children before parents', () => {
    const chain = [
      manifest('a-full', null),
      manifest('b-delta', 'a-full'),
      manifest('c-delta', 'b-delta'),
      manifest('d-full', null),
      manifest('e-delta', 'd-full'),
    ];
    expect(planRetention(chain, { keep: 2, fullEvery: 9 })).toEqual({
      retained: ['d-full', 'e-delta'],
      expired: [chain[2], chain[1], chain[0]],
      keptObjectKeys: ['d-full.vhd', 'e-delta.vhd'],
    });
    // Keeping only the newest delta still needs its full.
    expect(planRetention(chain, { keep: 1, fullEvery: 9 }).expired.map((m) => m.backupId)).toEqual([
      'c-delta',
      'b-delta',
      'a-full',
    ]);
    // A retained delta deep in a chain keeps its whole chain.
    expect(planRetention(chain.slice(0, 3), { keep: 1, fullEvery: 9 }).expired).toEqual([]);
  });
});

describe('retention in the backup workflow', () => {
  let world: BackupWorld;
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'scattered' } });
  });
  afterAll(async () => {
    await world.close();
  });

  it('keeps N restore points, forces a full every K backups, and reports what it deleted', async () => {
    const hashes: RestorePointHashes = new Map();
    const retention = { keep: 3, fullEvery: 2 };
    const kinds: string[] = [];
    for (let i = 0; i < 6; i++) {
      world.sim.writeDisk(world.vdiUuid, i * 2 * MiB, Buffer.alloc(4096, i + 1));
      kinds.push((await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid], retention })).kind);
    }
    expect(kinds).toEqual(['full', 'delta', 'full', 'delta', 'full', 'delta']);
    const remaining = await world.manifests();
    // The newest 3 are (delta, full, delta): the oldest of them needs its full too.
    expect(remaining.map((m) => m.kind)).toEqual(['full', 'delta', 'full', 'delta']);
    expect(remaining.map((m) => m.backupId)).toEqual([...hashes.keys()].slice(2));
    const keys = await listKeys(world.s3, world.bucket);
    expect(keys).toHaveLength(remaining.length * 2);
    const before = await world.manifests();
    const run = await world.backup({ vdiUuids: [world.vdiUuid], retention });
    const report = run.summary!.outcomes[0]!.retention!;
    const after = await world.manifests();
    const gone = before.filter((m) => !after.some((kept) => kept.backupId === m.backupId));
    expect(report.deleted).toBeGreaterThan(0);
    expect(report).toEqual({
      kept: after.length,
      deleted: gone.length,
      orphansDeleted: 0,
      keysDeleted: 2 * gone.length,
      deletedIds: gone
        .map((m) => m.backupId)
        .reverse()
        .slice(0, 3),
    });
    // The points retention deleted are the oldest ones; every other recorded point must still restore.
    const deleted = [...hashes.keys()].filter((id) => !after.some((m) => m.backupId === id));
    expect(deleted).toEqual([...hashes.keys()].slice(0, deleted.length));
    for (const id of deleted) hashes.delete(id);
    const latest = after.at(-1)!;
    hashes.set(latest.backupId, world.sim.diskSha256(latest.snapshotUuid));
    await expectInvariants(world, hashes);
  });
});

describe('retention interrupted at any step', () => {
  // One catalog (full, delta, full, delta), kept byte for byte and put back at the start of each case: every
  // case starts from it whatever ran before. Keeping 1 retains the newest delta and its full and expires the
  // older two: four deletions (manifest, then object, child first), so S3 can stop after 0, 1, 2, 3 or 4.
  const catalog = { bucket: '', prefix: 'backups' };
  const keep = { keep: 1, fullEvery: 99 };
  let world: BackupWorld;
  let saved: Map<string, Buffer>;
  let pointHashes: RestorePointHashes;
  let fixture: Manifest[];
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'scattered' } });
    catalog.bucket = world.bucket;
    pointHashes = new Map();
    for (const mode of ['full', 'auto', 'full', 'auto']) {
      world.sim.writeDisk(
        world.vdiUuid,
        pointHashes.size * 2 * MiB,
        Buffer.alloc(4096, pointHashes.size + 1),
      );
      await backupAndRecord(world, pointHashes, { vdiUuids: [world.vdiUuid], mode });
    }
    fixture = await world.manifests();
    expect(fixture.map((m) => m.kind)).toEqual(['full', 'delta', 'full', 'delta']);
    saved = new Map();
    for (const key of await listKeys(world.s3, world.bucket)) {
      saved.set(key, await readObject(world.s3, world.bucket, key));
    }
  });
  afterAll(async () => {
    await world.close();
  });

  /** Puts the saved catalog back exactly: every key it had with its bytes, and nothing else. */
  async function restoreCatalog() {
    for (const key of await listKeys(world.s3, world.bucket)) {
      if (!saved.has(key)) await world.s3.send(new DeleteObjectCommand({ Bucket: world.bucket, Key: key }));
    }
    for (const [Key, Body] of saved) {
      await world.s3.send(new PutObjectCommand({ Bucket: world.bucket, Key, Body }));
    }
    expect(await listKeys(world.s3, world.bucket)).toEqual([...saved.keys()].sort());
  }

  const deletions = 4;
  it.each(Array.from({ length: deletions + 1 }, (_, allowed) => allowed))(
    'S3 stops after %i deletions: every retained point still restores, and the next run finishes the plan',
    async (allowed) => {
      await restoreCatalog();
      const plan = planRetention(await listManifests(world.s3, catalog, 'lab', world.vdiUuid), keep);
      const [full1, delta1, full2, delta2] = fixture.map((m) => m.backupId);
      // The newest point is retained, and its full with it: neither is in the plan.
      expect(plan.retained).toEqual([delta2]);
      const kept = [full2, delta2];
      expect(plan.expired.map((m) => m.backupId)).toEqual([delta1, full1]);
      const order = plan.expired.flatMap((m) => [
        `backups/lab/${world.vdiUuid}/${m.backupId}.json`,
        m.objectKey,
      ]);
      expect(order).toHaveLength(deletions);

      const failing = failAfterDeletes(createS3Client(s3World().target), allowed);
      const outcome = await applyRetention(failing, catalog, 'lab', world.vdiUuid, plan, delta2!).then(
        () => 'finished',
        (error: Error) => error.message,
      );
      expect(outcome).toBe(allowed < deletions ? 'S3 stopped' : 'finished');
      // Exactly the first `allowed` deletions of the plan happened.
      expect(await listKeys(world.s3, world.bucket)).toEqual(
        [...saved.keys()].filter((key) => !order.slice(0, allowed).includes(key)).sort(),
      );
      await expectInvariantsOfCatalog(world);
      // The retained points restore with both strategies (the expired ones still listed are checked by sha256).
      const retained = new Map([...pointHashes].filter(([id]) => kept.includes(id)));
      await expectInvariants(world, retained);

      // The next run re-plans and finishes: only the retained points are left, and they still restore.
      await applyRetention(
        createS3Client(s3World().target),
        catalog,
        'lab',
        world.vdiUuid,
        planRetention(await listManifests(world.s3, catalog, 'lab', world.vdiUuid), keep),
        delta2!,
      );
      expect((await world.manifests()).map((m) => m.backupId)).toEqual(kept);
      expect(await listKeys(world.s3, world.bucket)).toEqual(
        [...saved.keys()].filter((key) => !order.includes(key)).sort(),
      );
      await expectInvariants(world, retained);
    },
  );
});

describe('retention over a long catalog (defect 17)', () => {
  let world: BackupWorld;
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'scattered' } });
  });
  afterAll(async () => {
    await world.close();
  });

  it('a run deleting 120 restore points returns counts and a few ids: its output stays small', async () => {
    // 120 old fulls, as a first retention run over a long-kept VDI finds them (objects of one byte). More
    // would pass the local runner's 60 s default state timeout: each S3 call costs ~80 ms through its
    // IAM-checking gateway, and Cleanup reads every manifest before it deletes.
    const points = 120;
    const prefix = `backups/lab/${world.vdiUuid}/`;
    const ids = Array.from(
      { length: points },
      (_, i) => `${new Date(Date.UTC(2020, 0, 1) + i * 3_600_000).toISOString().replace(/[-:]/g, '')}-full`,
    );
    const put = (Key: string, Body: string) =>
      world.s3.send(new PutObjectCommand({ Bucket: world.bucket, Key, Body }));
    for (let i = 0; i < ids.length; i += 20) {
      await Promise.all(
        ids.slice(i, i + 20).flatMap((backupId) => [
          put(`${prefix}${backupId}.vhd`, 'x'),
          put(
            `${prefix}${backupId}.json`,
            JSON.stringify({
              ...manifest(backupId, null),
              pool: 'lab',
              vdiUuid: world.vdiUuid,
              snapshotUuid: '00000000-0000-4000-8000-000000000000',
              objectKey: `${prefix}${backupId}.vhd`,
            }),
          ),
        ]),
      );
    }
    const run = await world.backup({ vdiUuids: [world.vdiUuid], retention: { keep: 1, fullEvery: 1 } });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    expect(run.summary!.outcomes[0]!.retention).toEqual({
      kept: 1,
      deleted: points,
      orphansDeleted: 0,
      keysDeleted: 2 * points,
      deletedIds: ids.slice(-3).reverse(),
    });
    // One string per deleted key made this ~22 KiB here (and past 256 KiB over a few long-kept VDIs).
    expect(JSON.stringify(run.output).length).toBeLessThan(2048);
    const latest = (await world.manifests()).map((m) => m.backupId);
    expect(latest).toEqual([run.summary!.outcomes[0]!.backupId]);
    expect(await listKeys(world.s3, world.bucket)).toHaveLength(2);
  }, 180_000);
});

/** Every manifest left in the catalog has its whole chain and its object. */
async function expectInvariantsOfCatalog(world: BackupWorld) {
  const manifests = await world.manifests();
  const ids = new Set(manifests.map((m) => m.backupId));
  const keys = new Set(await listKeys(world.s3, world.bucket));
  for (const m of manifests) {
    expect(keys.has(m.objectKey), `${m.backupId} object`).toBe(true);
    if (m.parentBackupId) expect(ids.has(m.parentBackupId), `${m.backupId} parent`).toBe(true);
  }
}

/** A real S3 client whose DeleteObject starts failing after `allowed` calls (the fault at the unit's edge). */
function failAfterDeletes(client: S3Client, allowed: number): S3Client {
  let deletes = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === DeleteObjectCommand.name && ++deletes > allowed)
        throw new Error('S3 stopped');
      return next(args);
    },
    { step: 'initialize' },
  );
  return client;
}
