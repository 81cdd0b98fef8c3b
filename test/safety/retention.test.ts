import { DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { applyRetention, planRetention } from '../../lambdas/catalog/retention.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys, s3World } from '../world/s3.ts';
import { backupAndRecord, expectInvariants, type RestorePointHashes } from './invariants.ts';

const MiB = 1024 * 1024;

function manifest(backupId: string, parentBackupId: string | null): Manifest {
  return {
    formatVersion: 1,
    backupId,
    kind: parentBackupId ? 'delta' : 'full',
    parentBackupId,
    pool: 'p',
    vdiUuid: 'v',
    vdiNameLabel: 'n',
    snapshotUuid: 's',
    virtualSize: 1,
    objectKey: `${backupId}.vhd`,
    bytes: 1,
    sha256: 'x',
    presentBlocks: 0,
    startedAt: '',
    endedAt: '',
    host: '',
  };
}

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
  const hashes: RestorePointHashes = new Map();
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'scattered' } });
  });
  afterAll(async () => {
    await world.close();
  });

  it('keeps N restore points, forces a full every K backups, and reports what it deleted', async () => {
    const retention = { keep: 3, fullEvery: 2 };
    const kinds: string[] = [];
    let lastRun;
    for (let i = 0; i < 6; i++) {
      world.sim.writeDisk(world.vdiUuid, i * 2 * MiB, Buffer.alloc(4096, i + 1));
      await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid], retention });
      lastRun = (await world.manifests()).at(-1)!;
      kinds.push(lastRun.kind);
    }
    expect(kinds).toEqual(['full', 'delta', 'full', 'delta', 'full', 'delta']);
    const remaining = await world.manifests();
    // The newest 3 are (delta, full, delta): the oldest of them needs its full too.
    expect(remaining.map((m) => m.kind)).toEqual(['full', 'delta', 'full', 'delta']);
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
    const latest = (await world.manifests()).at(-1)!;
    hashes.set(latest.backupId, world.sim.diskSha256(latest.snapshotUuid));
    await expectInvariants(world, hashes);
  });

  it('interrupted at any step, never leaves a retained restore point unrestorable', async () => {
    const manifests = await listManifests(
      world.s3,
      { bucket: world.bucket, prefix: 'backups' },
      'lab',
      world.vdiUuid,
    );
    const plan = planRetention(manifests, { keep: 1, fullEvery: 99 });
    const steps = plan.expired.length * 2;
    expect(steps).toBeGreaterThan(0);
    const catalog = { bucket: world.bucket, prefix: 'backups' };
    const newest = manifests.at(-1)!.backupId;
    for (let allowed = 0; allowed <= steps; allowed++) {
      // S3 fails after `allowed` deletions: the interruption at every step of the plan.
      const current = await listManifests(world.s3, catalog, 'lab', world.vdiUuid);
      const failing = failAfterDeletes(createS3Client(s3World().target), allowed);
      await applyRetention(
        failing,
        catalog,
        'lab',
        world.vdiUuid,
        planRetention(current, { keep: 1, fullEvery: 99 }),
        newest,
      ).catch((error: Error) => expect(error.message).toBe('S3 stopped'));
      await expectInvariantsOfCatalog(world);
    }
    // The last run finished: only the newest point and what it needs are left, and they restore.
    await expectInvariants(world, hashes);
  });
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
