import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;
const DISK = 16 * MiB;

const write = fc.record({
  offset: fc.integer({ min: 0, max: DISK / 512 - 1 }).map((sector) => sector * 512),
  length: fc.integer({ min: 1, max: 3 * MiB }),
  byte: fc.integer({ min: 0, max: 255 }),
});

describe('restore, property-based end to end', () => {
  let shared: BackupWorld;
  beforeAll(async () => {
    shared = await startBackupWorld({ vdi: { virtualSize: DISK, populate: 'scattered' } });
  });
  afterAll(async () => {
    await shared?.close();
  });

  it('any restore point of random write histories restores to its snapshot’s content, with each strategy', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(write, { maxLength: 4 }), { minLength: 1, maxLength: 8 }),
        fc.nat(),
        async (history, pick) => {
          // Each history on a fresh VDI of one warm world: its backups, catalog series and restores are
          // the VDI's own.
          const world = shared.withNewVdi({ virtualSize: DISK, populate: 'scattered' });
          try {
            const hashes: string[] = [];
            for (const writes of history) {
              for (const w of writes) {
                const length = Math.min(w.length, DISK - w.offset);
                world.sim.writeDisk(world.vdiUuid, w.offset, Buffer.alloc(length, w.byte));
              }
              const run = await world.backup();
              expect(run.status, run.cause).toBe('SUCCEEDED');
              const manifest = (await world.manifests()).at(-1)!;
              hashes.push(world.sim.diskSha256(manifest.snapshotUuid));
            }
            const manifests = await world.manifests();
            const chosen = pick % manifests.length;
            for (const strategy of ['replay', 'merge']) {
              const run = await world.restore({
                vdiUuid: world.vdiUuid,
                restorePoint: manifests[chosen]!.backupId,
                srUuid: world.sim.srs.shared.uuid,
                strategy,
              });
              expect(run.status, run.cause).toBe('SUCCEEDED');
              expect(world.sim.diskSha256(run.result!.vdiUuid)).toBe(hashes[chosen]);
            }
            expect(world.sim.openTasks()).toEqual([]);
            expect(world.sim.openSessions()).toEqual([]);
          } finally {
            await world.close();
          }
        },
      ),
      { numRuns: 5 },
    );
    // Five histories with restores by both strategies and outside checks: minutes when it shares the
    // machine with another test file.
  }, 480_000);
});
