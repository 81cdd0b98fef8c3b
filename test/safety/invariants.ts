import { expect } from 'vitest';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import type { BackupWorld } from '../world/backup-world.ts';
import { sha256OfObject } from '../world/s3.ts';

/** Content hash of each committed restore point, recorded right after its backup while its snapshot exists. */
export type RestorePointHashes = Map<string, string>;

/** Both restore strategies: replay (the default) and merge. */
export const STRATEGIES = ['replay', 'merge'] as const;

/**
 * Per hashes map and world: each restore point already restored bit-exact with both strategies, by the
 * chain it restored from (each layer's object key and sha256). A later check restores again only the points
 * whose chain changed since: the objects are re-hashed on every check, so an unchanged chain is the input
 * already proved.
 */
const restoredChains = new WeakMap<RestorePointHashes, WeakMap<BackupWorld, Map<string, string>>>();

/** Runs a backup that must succeed and records its restore point's content hash. */
export async function backupAndRecord(world: BackupWorld, hashes: RestorePointHashes, input?: unknown) {
  const run = await world.backup(input);
  expect(run.status, run.cause).toBe('SUCCEEDED');
  const manifest = (await world.manifests()).at(-1)!;
  hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));
  return manifest;
}

/**
 * What every fault scenario must leave: no snapshot but the newest base, no task, session or multipart
 * upload; a catalog whose manifests point only at complete objects with their recorded sha256; and every
 * earlier restore point (each in `hashes`: one whose manifest vanished fails) still restoring bit-exact
 * with both strategies.
 */
export async function expectInvariants(world: BackupWorld, hashes: RestorePointHashes): Promise<void> {
  expect(world.sim.openTasks()).toEqual([]);
  expect(world.sim.openSessions()).toEqual([]);
  expect(await world.openUploads()).toEqual([]);
  const manifests = await world.manifests();
  const snapshots = world.sim.snapshotsOf(world.vdiUuid).map((snapshot) => snapshot.uuid);
  expect(snapshots).toEqual(manifests.length ? [manifests.at(-1)!.snapshotUuid] : []);
  for (const manifest of manifests) {
    expect(await sha256OfObject(world.s3, world.bucket, manifest.objectKey)).toBe(manifest.sha256);
  }
  const byId = new Map(manifests.map((manifest) => [manifest.backupId, manifest]));
  expect(
    [...hashes.keys()].filter((backupId) => !byId.has(backupId)),
    'recorded restore points whose manifest is gone',
  ).toEqual([]);
  const perWorld = restoredChains.get(hashes) ?? new WeakMap<BackupWorld, Map<string, string>>();
  restoredChains.set(hashes, perWorld);
  const restored = perWorld.get(world) ?? new Map<string, string>();
  perWorld.set(world, restored);
  for (const [backupId, hash] of hashes) {
    const chain = `${chainOf(byId, backupId)}=${hash}`;
    if (restored.get(backupId) === chain) continue;
    for (const strategy of STRATEGIES) {
      const run = await world.restore({
        vdiUuid: world.vdiUuid,
        restorePoint: backupId,
        srUuid: world.sim.srs.shared.uuid,
        strategy,
      });
      expect(run.status, `${strategy} restore of ${backupId}: ${run.cause}`).toBe('SUCCEEDED');
      expect(run.result!.strategy).toBe(strategy);
      expect(world.sim.diskSha256(run.result!.vdiUuid), `${strategy} restore of ${backupId}`).toBe(hash);
      world.sim.deleteVdi(run.result!.vdiUuid);
    }
    restored.set(backupId, chain);
  }
  expect(world.sim.openTasks()).toEqual([]);
  expect(world.sim.openSessions()).toEqual([]);
}

/** The layers a restore point restores from, full first: `key:sha256` each. */
function chainOf(byId: Map<string, Manifest>, backupId: string): string {
  const layers: string[] = [];
  for (let id: string | null = backupId; id !== null;) {
    const manifest = byId.get(id);
    expect(manifest, `restore point ${backupId}: its chain's ${id}`).toBeDefined();
    layers.unshift(`${manifest!.objectKey}:${manifest!.sha256}`);
    id = manifest!.parentBackupId;
  }
  return layers.join(' ');
}

/** A manifest for planning tests: only the ids, kind, parent and format matter. */
export function manifest(backupId: string, parentBackupId: string | null, format?: 'qcow2'): Manifest {
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
    ...(format ? { format } : {}),
    startedAt: '',
    endedAt: '',
    host: '',
  };
}
