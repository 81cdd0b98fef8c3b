import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { applyRetention, planRetention } from '../../lambdas/catalog/retention.ts';
import { mergeChain } from '../../lambdas/merge/merge-points.ts';
import { planParts, pieceLength, type Piece } from '../../lambdas/merge/part-plan.ts';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { parseBackupInput } from '../../lambdas/backup/input.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { qemuConvert } from '../world/qemu-img.ts';
import { listKeys, readObject, s3World } from '../world/s3.ts';
import { backupAndRecord, expectInvariants, manifest, type RestorePointHashes } from './invariants.ts';

const MiB = 1024 * 1024;

describe('synthetic full: the multipart plan', () => {
  const planLimits = { minPartBytes: 50, maxPartBytes: 400, maxParts: 40 };
  const limits = { ...planLimits, uploadPartBytes: 120 };
  const piece = fc.oneof(
    fc.integer({ min: 1, max: 90 }).map((n): Piece => ({ kind: 'bytes', data: new Uint8Array(n) })),
    fc
      .record({
        key: fc.constantFrom('a', 'b', 'c'),
        start: fc.nat(10_000),
        length: fc.integer({ min: 1, max: 1500 }),
      })
      .map((range): Piece => ({ kind: 'range', ...range })),
  );

  it('keeps S3 part rules and the byte order, copying long ranges and gathering the rest', () => {
    fc.assert(
      fc.property(
        fc.array(piece, { minLength: 1, maxLength: 30 }),
        fc.constantFrom(50, 120),
        (pieces, uploadPartBytes) => {
          const limits = { ...planLimits, uploadPartBytes };
          const total = pieces.reduce((sum, p) => sum + pieceLength(p), 0);
          let parts;
          try {
            parts = planParts(pieces, limits);
          } catch (error) {
            // Only a plan that cannot fit 40 parts of 400 bytes may be refused.
            expect(total).toBeGreaterThan(limits.maxParts * limits.minPartBytes);
            expect(String(error)).toMatch(/more than 40 parts/);
            return;
          }
          expect(parts.length).toBeLessThanOrEqual(limits.maxParts);
          parts.forEach((part, i) => {
            expect(part.length).toBeLessThanOrEqual(limits.maxPartBytes);
            if (i < parts.length - 1) expect(part.length).toBeGreaterThanOrEqual(limits.minPartBytes);
          });
          // Joined where they meet, the parts say exactly what the pieces say, in order.
          const flat = parts.flatMap((part): Piece[] =>
            part.kind === 'copy'
              ? [{ kind: 'range', key: part.key, start: part.start, length: part.length }]
              : [...part.pieces],
          );
          expect(bytesOf(flat)).toEqual(bytesOf(pieces));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('copies a range of at least the minimum inside S3, and uploads only the short ones', () => {
    const parts = planParts(
      [
        { kind: 'bytes', data: new Uint8Array(10) },
        { kind: 'range', key: 'full', start: 0, length: 300 },
        { kind: 'range', key: 'delta', start: 7, length: 20 },
        { kind: 'range', key: 'full', start: 320, length: 600 },
        { kind: 'bytes', data: new Uint8Array(5) },
      ],
      limits,
    );
    expect(parts.map((part) => [part.kind, part.length])).toEqual([
      // The 10 head bytes borrow 40 of the full's range to make a part of the minimum.
      ['upload', 50],
      ['copy', 260],
      // The short delta range borrows 30 of the next range, which is then copied in two parts (≤ 400).
      ['upload', 50],
      ['copy', 285],
      ['copy', 285],
      ['upload', 5],
    ]);
  });
});

/** Each piece as (key, offset) per byte run: how two piece lists are compared whatever their cuts. */
function bytesOf(pieces: readonly Piece[]): string[] {
  const out: string[] = [];
  for (const p of pieces) {
    if (p.kind === 'bytes') {
      const last = out.at(-1);
      if (last?.startsWith('bytes×')) out[out.length - 1] = `bytes×${Number(last.slice(6)) + p.data.length}`;
      else out.push(`bytes×${p.data.length}`);
      continue;
    }
    const last = out.at(-1)?.match(/^(\w+)@(\d+)\+(\d+)$/);
    if (last && last[1] === p.key && Number(last[2]) + Number(last[3]) === p.start) {
      out[out.length - 1] = `${p.key}@${last[2]}+${Number(last[3]) + p.length}`;
    } else out.push(`${p.key}@${p.start}+${p.length}`);
  }
  return out;
}

describe('forever incremental planning', () => {
  const chain = [
    manifest('a-full', null),
    manifest('b-delta', 'a-full'),
    manifest('c-delta', 'b-delta'),
    manifest('d-delta', 'c-delta'),
  ];
  it('merges the oldest kept delta with everything under it when its full expires', () => {
    const plan = planRetention(chain, { keep: 2 });
    expect(plan.retained).toEqual(['c-delta', 'd-delta']);
    expect(plan.expired).toEqual([]);
    expect(plan.merge).toEqual({ target: chain[2], chain: chain.slice(0, 3), deltasLeft: 0 });
  });
  it('folds at most the per-run bound of deltas; the next runs go on', () => {
    expect(planRetention(chain, { keep: 1 }, 2).merge).toEqual({
      target: chain[2],
      chain: chain.slice(0, 3),
      deltasLeft: 1,
    });
  });
  it('takes `{keep}` alone as forever incremental, and names a bad fullEvery', () => {
    const vdiUuids = ['3f1c2d4e-8a9b-4c5d-9e0f-112233445566'];
    expect(parseBackupInput({ vdiUuids, retention: { keep: 14 } }).retention).toEqual({ keep: 14 });
    expect(() => parseBackupInput({ vdiUuids, retention: { keep: 14, fullEvery: 0 } })).toThrow(
      expect.objectContaining({ field: 'retention.fullEvery' }),
    );
  });

  it('merges nothing with fullEvery, for a kept full, or for qcow2 layers', () => {
    expect(planRetention(chain, { keep: 2, fullEvery: 7 }).merge).toBeUndefined();
    expect(planRetention(chain, { keep: 4 }).merge).toBeUndefined();
    const qcow2 = [manifest('a-full', null, 'qcow2'), manifest('b-delta', 'a-full', 'qcow2')];
    expect(planRetention(qcow2, { keep: 1 }).merge).toBeUndefined();
  });
});

/**
 * One world for every workflow scenario below (a warm deployment), each scenario on a VDI of its own. Its
 * Merge Lambda is killed as by its time limit, once its upload is open, only while `killArmed`.
 */
let shared: BackupWorld;
let killArmed = false;
beforeAll(async () => {
  shared = await startBackupWorld({
    vdi: { virtualSize: 24 * MiB, populate: 'generated' },
    target: {
      simulateLambdaTimeout: {
        step: 'backup.merge',
        killWhen: async () => {
          if (!killArmed) return new Promise<void>(() => undefined);
          for (;;) {
            if ((await shared.openUploads()).length) return;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        },
      },
    },
  });
});
afterAll(async () => {
  await shared?.close();
});

/** The keys of one VDI's series. */
const seriesKeys = (world: BackupWorld) => listKeys(world.s3, world.bucket, `backups/lab/${world.vdiUuid}/`);

describe('forever incremental in the backup workflow (Swift)', () => {
  let world: BackupWorld;
  const hashes: RestorePointHashes = new Map();
  beforeAll(async () => {
    // Every block present: the full holds long runs that S3 copies, broken by the deltas' blocks.
    world = shared.withNewVdi({ virtualSize: 32 * MiB, populate: 'generated' });
  });

  it('exports one full, then merges in S3: one full per series, every kept point restores bit-exact', async () => {
    const retention = { keep: 3 };
    const outcomes = [];
    for (let i = 0; i < 6; i++) {
      // A few sectors of block 3 + 2i and one of block 9: short runs between long ones of the older layers.
      world.sim.writeDisk(world.vdiUuid, (3 + 2 * i) * 2 * MiB + 4096, Buffer.alloc(8192, i + 1));
      world.sim.writeDisk(world.vdiUuid, 9 * 2 * MiB, Buffer.alloc(512, 0x40 + i));
      await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid], retention });
      const run = (await world.manifests()).at(-1)!;
      outcomes.push({ kind: run.kind, id: run.backupId });
    }
    // Only the first backup read the whole disk from the host.
    expect(outcomes.map((o) => o.kind)).toEqual(['full', 'delta', 'delta', 'delta', 'delta', 'delta']);
    const manifests = await world.manifests();
    expect(manifests.map((m) => m.backupId)).toEqual(outcomes.slice(-3).map((o) => o.id));
    expect(manifests.map((m) => m.kind)).toEqual(['full', 'delta', 'delta']);
    const synthetic = manifests[0]!;
    expect(synthetic.synthetic).toBe(true);
    expect(synthetic.mergedFrom).toEqual([outcomes[2]!.id, outcomes[3]!.id]);
    expect(synthetic.objectKey).toMatch(/\.synthetic\.vhd$/);
    // Nothing else is stored: each point's manifest and object, no orphan, no upload.
    const keys = await seriesKeys(world);
    expect(keys.sort()).toEqual(
      manifests.flatMap((m) => [`backups/lab/${world.vdiUuid}/${m.backupId}.json`, m.objectKey]).sort(),
    );
    for (const id of hashes.keys()) if (!manifests.some((m) => m.backupId === id)) hashes.delete(id);
    await expectInvariants(world, hashes);

    // qemu-img reads the synthetic full as the disk at its point.
    const dir = await mkdtemp(join(tmpdir(), 'vdi-vault-synthetic-'));
    try {
      const vhd = join(dir, 'synthetic.vhd');
      await writeFile(vhd, await readObject(world.s3, world.bucket, synthetic.objectKey));
      const raw = join(dir, 'synthetic.raw');
      await qemuConvert('vpc', 'raw', vhd, raw);
      const content = await readFile(raw);
      expect(createHash('sha256').update(content.subarray(0, synthetic.virtualSize)).digest('hex')).toBe(
        hashes.get(synthetic.backupId),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports what each merge did: bytes copied in S3, bytes through compute, parts', async () => {
    world.sim.writeDisk(world.vdiUuid, 14 * 2 * MiB, Buffer.alloc(4096, 0x77));
    const run = await world.backup({ vdiUuids: [world.vdiUuid], retention: { keep: 3 } });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    const merge = run.summary!.outcomes[0]!.merge;
    expect(merge).toMatchObject({ status: 'merged', deltasLeft: 0 });
    if (merge?.status !== 'merged') throw new Error('no merge');
    const blockRegion = 512 + 2 * MiB;
    // The old full's runs are copied; what passes through compute is the head, footer and short runs.
    expect(merge.bytesCopied).toBeGreaterThanOrEqual(8 * blockRegion);
    expect(merge.bytesUploaded).toBeLessThan(merge.bytes - merge.bytesCopied + 5 * MiB + 1);
    expect(merge.bytesCopied + merge.bytesUploaded).toBe(merge.bytes);
    expect(merge.bytesVerified).toBe(merge.bytes);
    expect(merge.parts).toBeGreaterThan(merge.copyParts);
    expect(merge.copyParts).toBeGreaterThan(0);
    const latest = (await world.manifests()).at(-1)!;
    hashes.set(latest.backupId, world.sim.diskSha256(latest.snapshotUuid));
    const kept = await world.manifests();
    for (const id of [...hashes.keys()]) if (!kept.some((m) => m.backupId === id)) hashes.delete(id);
    await expectInvariants(world, hashes);
  });
});

describe('forever incremental: qcow2 series, and a Merge Lambda out of time (Swift)', () => {
  let world: BackupWorld;
  beforeAll(() => {
    world = shared.withNewVdi({ virtualSize: 24 * MiB, populate: 'generated' });
  });

  it('a Merge Lambda killed mid-upload: the merge runs again on Fargate, which aborts the upload left', async () => {
    const hashes: RestorePointHashes = new Map();
    for (let i = 0; i < 2; i++) {
      world.sim.writeDisk(world.vdiUuid, (1 + 4 * i) * 2 * MiB, Buffer.alloc(4096, i + 1));
      await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid], retention: { keep: 1 } });
    }
    killArmed = true;
    world.sim.writeDisk(world.vdiUuid, 9 * 2 * MiB, Buffer.alloc(4096, 9));
    const run = await world.backup({ vdiUuids: [world.vdiUuid], retention: { keep: 1 } });
    killArmed = false;
    expect(run.status, run.cause).toBe('SUCCEEDED');
    expect(run.statesEntered).toEqual(
      expect.arrayContaining(['Merge', 'MergeOutOfLambda', 'MergeOnFargate', 'CollectMerge', 'Cleanup']),
    );
    expect(run.summary!.outcomes[0]!.merge).toMatchObject({ status: 'merged' });
    const manifests = await world.manifests();
    expect(manifests.map((m) => [m.kind, m.synthetic ?? false])).toEqual([['full', true]]);
    hashes.clear();
    hashes.set(manifests[0]!.backupId, world.sim.diskSha256(manifests[0]!.snapshotUuid));
    await expectInvariants(world, hashes);
  });

  it('a qcow2 series is not merged: a fresh full once its chain reaches keep points', async () => {
    const view = world.withNewVdi({ virtualSize: 8 * MiB, populate: 'scattered', imageFormat: 'qcow2' });
    const kinds = [];
    for (let i = 0; i < 3; i++) {
      view.sim.writeDisk(view.vdiUuid, i * MiB, Buffer.alloc(4096, i + 1));
      const run = await view.backup({ vdiUuids: [view.vdiUuid], retention: { keep: 2 } });
      expect(run.status, run.cause).toBe('SUCCEEDED');
      const outcome = run.summary!.outcomes[0]!;
      expect(outcome.merge).toBeUndefined();
      kinds.push([outcome.kind, outcome.fullReason ?? '']);
    }
    expect(kinds).toEqual([
      ['full', 'first backup'],
      ['delta', ''],
      ['full', 'qcow2 chains are not merged in S3: a full every 2 backups (keep)'],
    ]);
    expect((await view.manifests()).map((m) => m.kind)).toEqual(['full', 'delta', 'full']);
  });
});

describe('a merge interrupted at every step (Swift)', () => {
  // One catalog (full, delta, delta, delta) put back byte for byte before each case. Keeping 2 makes the
  // second delta the merge target: its chain is the full and both deltas.
  const catalog = { bucket: '', prefix: 'backups' };
  const keep = { keep: 2 };
  let world: BackupWorld;
  let saved: Map<string, Buffer>;
  const hashes: RestorePointHashes = new Map();
  let fixture: Manifest[];
  beforeAll(async () => {
    world = shared.withNewVdi({ virtualSize: 24 * MiB, populate: 'generated' });
    catalog.bucket = world.bucket;
    for (let i = 0; i < 4; i++) {
      world.sim.writeDisk(world.vdiUuid, (2 + 3 * i) * 2 * MiB, Buffer.alloc(4096, i + 1));
      await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid] });
    }
    fixture = await world.manifests();
    expect(fixture.map((m) => m.kind)).toEqual(['full', 'delta', 'delta', 'delta']);
    saved = new Map();
    for (const key of await seriesKeys(world)) saved.set(key, await readObject(world.s3, world.bucket, key));
  });

  async function restoreCatalog() {
    for (const key of await seriesKeys(world)) {
      if (!saved.has(key)) await world.s3.send(new DeleteObjectCommand({ Bucket: world.bucket, Key: key }));
    }
    for (const [Key, Body] of saved)
      await world.s3.send(new PutObjectCommand({ Bucket: world.bucket, Key, Body }));
  }

  async function mergePlan() {
    const plan = planRetention(await listManifests(world.s3, catalog, 'lab', world.vdiUuid), keep).merge;
    expect(plan?.target.backupId).toBe(fixture[2]!.backupId);
    return plan!;
  }

  /** Small parts, so a 24 MiB disk makes copies and uploads of several parts each. */
  const limits = {
    minPartBytes: 5 * MiB,
    maxPartBytes: 5 * MiB * 1024,
    maxParts: 10_000,
    uploadPartBytes: 5 * MiB,
  };

  /**
   * The kept points (and, while their manifests stand, the expired ones) restore bit-exact. One hashes map
   * per set of listed points, so a chain already restored is not restored again (invariants.ts).
   */
  const subsets = new Map<string, RestorePointHashes>();
  async function expectAllRestore() {
    const listed = new Set((await world.manifests()).map((m) => m.backupId));
    const ids = [...hashes.keys()].filter((id) => listed.has(id));
    const subset = subsets.get(ids.join()) ?? new Map(ids.map((id) => [id, hashes.get(id)!]));
    subsets.set(ids.join(), subset);
    await expectInvariants(world, subset);
  }

  const failures: [string, string, number][] = [
    ['a part copy', UploadPartCopyCommand.name, 1],
    ['an uploaded part', UploadPartCommand.name, 1],
    ['completing the upload', CompleteMultipartUploadCommand.name, 1],
    ['the read-back', GetObjectCommand.name, -1],
    ['rewriting the manifest', PutObjectCommand.name, 1],
  ];
  it.each(failures)(
    'S3 fails at %s: the chain stays as it was, no new object or upload is left',
    async (_what, command, nth) => {
      await restoreCatalog();
      const failing = failAt(createS3Client(s3World().target), command, nth);
      await expect(mergeChain(failing, catalog, await mergePlan(), { limits })).rejects.toThrow(/S3 stopped/);
      expect(await seriesKeys(world)).toEqual([...saved.keys()].sort());
      expect(await world.openUploads()).toEqual([]);
      await expectAllRestore();
    },
  );

  it('S3 loses its answer to the manifest rewrite: the merge counts as done, and its object stays', async () => {
    await restoreCatalog();
    const lossy = createS3Client(s3World().target);
    lossy.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        const key = (args as { input: { Key?: string } }).input.Key ?? '';
        if (context.commandName === PutObjectCommand.name && key.endsWith('.json')) {
          throw new Error('S3 answer lost');
        }
        return result;
      },
      { step: 'initialize' },
    );
    const report = await mergeChain(lossy, catalog, await mergePlan(), { limits });
    expect(report.backupId).toBe(fixture[2]!.backupId);
    const target = (await world.manifests()).find((m) => m.backupId === fixture[2]!.backupId)!;
    expect(target).toMatchObject({ kind: 'full', synthetic: true });
    expect(await seriesKeys(world)).toContain(target.objectKey);
    await expectAllRestore();
  });

  it('reports its progress: bytes written, then read back, up to twice the new object, never backwards', async () => {
    await restoreCatalog();
    const seen: { bytes: number; total: number }[] = [];
    const report = await mergeChain(createS3Client(s3World().target), catalog, await mergePlan(), {
      limits,
      onProgress: (bytes, total) => seen.push({ bytes, total }),
    });
    const target = (await world.manifests()).find((m) => m.backupId === report.backupId)!;
    expect(new Set(seen.map((point) => point.total))).toEqual(new Set([2 * target.bytes]));
    expect(seen.every((point, i) => i === 0 || point.bytes >= seen[i - 1]!.bytes)).toBe(true);
    expect(seen.at(-1)!.bytes).toBe(2 * target.bytes);
    // Both passes reported: the writes end at the object's length, the read-back goes on from there.
    expect(seen.some((point) => point.bytes === target.bytes)).toBe(true);
  });

  it('killed after the manifest is rewritten: every point restores, and retention then leaves one full', async () => {
    await restoreCatalog();
    await mergeChain(createS3Client(s3World().target), catalog, await mergePlan(), { limits });
    // The old full and first delta are still listed; the target is a full now.
    const after = await world.manifests();
    expect(after.map((m) => m.kind)).toEqual(['full', 'delta', 'full', 'delta']);
    await expectAllRestore();
    const newest = fixture.at(-1)!.backupId;
    const plan = planRetention(after, keep);
    expect(plan.expired.map((m) => m.backupId)).toEqual([fixture[1]!.backupId, fixture[0]!.backupId]);
    const report = await applyRetention(world.s3, catalog, 'lab', world.vdiUuid, plan, newest);
    // Both expired points, and the target's own delta object that nothing refers to.
    expect(report).toMatchObject({ restorePoints: 2, orphanObjects: 1, keys: 5 });
    expect((await world.manifests()).map((m) => m.kind)).toEqual(['full', 'delta']);
    await expectAllRestore();
  });

  it('killed with its upload open, or its unchecked object left: the next backup removes both', async () => {
    await restoreCatalog();
    // A killed run neither aborts its upload nor deletes its object: both fail here.
    const stuckUpload = failAt(createS3Client(s3World().target), UploadPartCopyCommand.name, 1, [
      AbortMultipartUploadCommand.name,
    ]);
    await expect(mergeChain(stuckUpload, catalog, await mergePlan(), { limits })).rejects.toThrow(
      /S3 stopped/,
    );
    expect(await world.openUploads()).toHaveLength(1);
    const stuckObject = failAt(createS3Client(s3World().target), GetObjectCommand.name, -1, [
      DeleteObjectCommand.name,
    ]);
    await expect(mergeChain(stuckObject, catalog, await mergePlan(), { limits })).rejects.toThrow(
      /S3 stopped/,
    );
    const synthetic = `backups/lab/${world.vdiUuid}/${fixture[2]!.backupId}.synthetic.vhd`;
    expect(await seriesKeys(world)).toContain(synthetic);
    // The chain is as it was (the killed run's leftovers aside): its manifests are untouched.
    expect(await world.manifests()).toEqual(fixture);

    world.sim.writeDisk(world.vdiUuid, 0, Buffer.alloc(4096, 0x99));
    await backupAndRecord(world, hashes, { vdiUuids: [world.vdiUuid], retention: keep });
    expect(await world.openUploads()).toEqual([]);
    const manifests = await world.manifests();
    expect(manifests.map((m) => m.kind)).toEqual(['full', 'delta']);
    const keys = await seriesKeys(world);
    expect(keys.sort()).toEqual(
      manifests.flatMap((m) => [`backups/lab/${world.vdiUuid}/${m.backupId}.json`, m.objectKey]).sort(),
    );
    await expectAllRestore();
  });
});

/**
 * An S3 client whose `nth` call of `command` (-1: the one reading a whole object, the read-back) fails, and
 * whose every call of `alsoFailing` fails (what a killed run never gets to do).
 */
function failAt(
  client: S3Client,
  command: string,
  nth: number,
  alsoFailing: readonly string[] = [],
): S3Client {
  let calls = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = (args as { input: { Range?: string } }).input;
      if (alsoFailing.includes(context.commandName!)) throw new Error('S3 stopped (a killed run)');
      if (context.commandName === command) {
        const wholeRead = command === GetObjectCommand.name && input.Range === undefined;
        if (nth === -1 ? wholeRead : ++calls === nth) throw new Error('S3 stopped');
      }
      return next(args);
    },
    { step: 'initialize' },
  );
  return client;
}
