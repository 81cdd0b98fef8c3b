/**
 * Part size and route of one export (`sizeExport`), as pure functions: the memory model decides routing
 * along with the expected bytes, a delta's parts follow what it is expected to send, and nothing that runs
 * can need part 10,001 or more memory than it has.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupSteps, type BackupSteps } from '../../lambdas/backup/steps.ts';
import type { BackupItemState } from '../../lambdas/backup/state.ts';
import { exportToS3, PartLimitError } from '../../lambdas/export/export-to-s3.ts';
import { poolDirectory } from '../../lambdas/shared/pools.ts';
import type { Log } from '../../lambdas/shared/log.ts';
import { XapiSession } from '../../lambdas/xapi/index.ts';
import {
  createTestBucket,
  deleteTestBucket,
  listKeys,
  listOpenMultipartUploads,
  readObject,
  s3World,
} from '../world/s3.ts';
import { readChainOutside } from '../world/outside-readers.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startXapiSimulator, type XapiSimulator } from '../../world/xapi-simulator/index.ts';
import {
  exportMemoryBytes,
  largestPartSizeWithin,
  partSizeFor,
  vhdExportUpperBound,
} from '../../lambdas/export/part-size.ts';
import { DELTA_HEADROOM, formatSize, sizeExport } from '../../lambdas/transfer/routing.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** The largest disk a host exports as VHD: its whole-disk parts are 233 MiB. */
const BIG_DISK = 2040 * GiB;
const lambda1GiB = { lambdaMemoryBytes: 1024 * MiB, fargateThresholdBytes: 32 * GiB };

describe('export sizing', () => {
  it('defect 9: a small delta of a 2 TiB disk fits a 1 GiB Lambda (whole-disk parts would need 2 GiB)', () => {
    const upperBoundBytes = vhdExportUpperBound(BIG_DISK);
    const wholeDisk = partSizeFor(upperBoundBytes);
    expect(wholeDisk).toBe(233 * MiB);
    expect(exportMemoryBytes(wholeDisk, 4)).toBeGreaterThan(1024 * MiB);

    const sizing = sizeExport(lambda1GiB, {
      kind: 'delta',
      upperBoundBytes,
      expectedBytes: 3 * GiB,
      partsInFlight: 4,
    });
    expect(sizing.route).toBe('lambda');
    expect(sizing.memoryBytes).toBeLessThanOrEqual(1024 * MiB);
    // Grown to what the memory allows, far past the delta's expected size.
    expect(sizing.partSize).toBe(largestPartSizeWithin(1024 * MiB, 4));
    expect(sizing.capacityBytes).toBeGreaterThan(1000 * GiB);
    expect(sizing.routeReason).toBe(
      'expected 3 GiB, below the Fargate threshold of 32 GiB; 104 MiB parts × (4 in flight + 4) + overhead ≈ 1 GiB ' +
        "within the export Lambda's 1 GiB; an upload of 1015.6 GiB at most (the disk could send 2.0 TiB)",
    );
  });

  it('a full of that disk goes to Fargate by memory, even with little data, with whole-disk parts', () => {
    const sizing = sizeExport(lambda1GiB, {
      kind: 'full',
      upperBoundBytes: vhdExportUpperBound(BIG_DISK),
      expectedBytes: 10 * GiB,
      partsInFlight: 4,
    });
    expect(sizing).toMatchObject({ route: 'fargate', partSize: 233 * MiB });
    expect(sizing.routeReason).toBe(
      "expected 10 GiB; 233 MiB parts × (4 in flight + 4) + overhead ≈ 2.0 GiB, more than the export Lambda's 1 GiB",
    );
  });

  it('expected bytes at the threshold go to Fargate whatever the memory', () => {
    const sizing = sizeExport(lambda1GiB, {
      kind: 'delta',
      upperBoundBytes: vhdExportUpperBound(100 * GiB),
      expectedBytes: 32 * GiB,
      partsInFlight: 4,
    });
    expect(sizing).toMatchObject({ route: 'fargate', partSize: partSizeFor(vhdExportUpperBound(100 * GiB)) });
    expect(sizing.routeReason).toBe('expected 32 GiB, at or above the Fargate threshold of 32 GiB');
  });

  it('a delta too large for the memory goes to Fargate; more parts in flight need more memory', () => {
    const input = {
      kind: 'delta' as const,
      upperBoundBytes: vhdExportUpperBound(BIG_DISK),
      expectedBytes: 700 * GiB,
      partsInFlight: 4,
    };
    expect(sizeExport({ lambdaMemoryBytes: 1024 * MiB }, input).route).toBe('fargate');
    expect(sizeExport({ lambdaMemoryBytes: 2048 * MiB }, input).route).toBe('lambda');
    expect(sizeExport({ lambdaMemoryBytes: 2048 * MiB }, { ...input, partsInFlight: 8 }).route).toBe(
      'fargate',
    );
  });

  it('small disks: whole-disk 16 MiB parts, on Lambda; no routing configured: Lambda', () => {
    const small = { upperBoundBytes: vhdExportUpperBound(64 * GiB), expectedBytes: 0, partsInFlight: 4 };
    for (const kind of ['full', 'delta'] as const) {
      expect(sizeExport(lambda1GiB, { ...small, kind })).toMatchObject({
        route: 'lambda',
        partSize: 16 * MiB,
      });
      expect(sizeExport(undefined, { ...small, kind })).toMatchObject({
        route: 'lambda',
        partSize: 16 * MiB,
      });
    }
  });

  it("memory unknown: a delta's parts follow its expected bytes (with headroom), a full's the disk", () => {
    const input = {
      upperBoundBytes: vhdExportUpperBound(BIG_DISK),
      expectedBytes: 500 * GiB,
      partsInFlight: 4,
    };
    const delta = sizeExport(undefined, { ...input, kind: 'delta' });
    expect(delta.partSize).toBe(partSizeFor(500 * GiB * DELTA_HEADROOM));
    expect(delta.capacityBytes).toBeGreaterThan(500 * GiB * DELTA_HEADROOM);
    expect(sizeExport(undefined, { ...input, kind: 'full' }).partSize).toBe(233 * MiB);
  });

  it('whatever the inputs: what runs on Lambda fits its memory and its expected bytes; Fargate can take the whole disk', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_044_480 }), // the disk in 2 MiB blocks, up to 2040 GiB
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.constantFrom('full' as const, 'delta' as const),
        fc.option(fc.integer({ min: 128, max: 10_240 }), { nil: undefined }), // Lambda memory, MB
        fc.integer({ min: 1, max: 8 }),
        (blocks, fraction, kind, memoryMiB, partsInFlight) => {
          const upperBoundBytes = vhdExportUpperBound(blocks * 2 * MiB);
          const expectedBytes = Math.floor(upperBoundBytes * fraction);
          const routing = memoryMiB !== undefined ? { lambdaMemoryBytes: memoryMiB * MiB } : undefined;
          const sizing = sizeExport(routing, { kind, upperBoundBytes, expectedBytes, partsInFlight });
          expect(sizing.partSize % MiB).toBe(0);
          expect(sizing.partSize).toBeGreaterThanOrEqual(16 * MiB);
          if (sizing.route === 'fargate' || kind === 'full') {
            expect(sizing.partSize).toBe(partSizeFor(upperBoundBytes));
            expect(sizing.capacityBytes).toBeGreaterThan(upperBoundBytes);
          }
          if (sizing.route === 'lambda') {
            if (memoryMiB !== undefined) expect(sizing.memoryBytes).toBeLessThanOrEqual(memoryMiB * MiB);
            expect(sizing.capacityBytes).toBeGreaterThanOrEqual(
              Math.min(upperBoundBytes, expectedBytes * DELTA_HEADROOM),
            );
          }
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('formats sizes for the reason', () => {
    expect([formatSize(512), formatSize(16 * MiB), formatSize(1.5 * GiB), formatSize(2048 * GiB)]).toEqual([
      '512 bytes',
      '16 MiB',
      '1.5 GiB',
      '2 TiB',
    ]);
  });
});

/** Plan → Snapshot → CreateTask → Export → Commit → Cleanup, each on the state the workflow would pass. */
async function backupThroughSteps(
  steps: BackupSteps,
  vdiUuid: string,
  session: BackupItemState['session'],
): Promise<BackupItemState> {
  let state: BackupItemState = { vdiUuid, pool: 'lab', mode: 'auto', retention: null, session };
  state = { ...state, plan: await steps.plan(state) };
  state = { ...state, snapshot: await steps.snapshot(state) };
  state = { ...state, task: await steps.createTask(state) };
  state = { ...state, export: await steps.export(state) };
  state = { ...state, commit: await steps.commit(state) };
  await steps.cleanup(state);
  return state;
}

describe('export sizing against the simulator and S3', () => {
  const world = s3World();
  let sim: XapiSimulator;
  let bucket: string;
  beforeAll(async () => {
    sim = await startXapiSimulator();
    bucket = await createTestBucket(world.client, 'sizing');
  });
  afterAll(async () => {
    await sim?.close();
    await deleteTestBucket(world.client, bucket);
  });

  const backupSteps = (prefix: string, log?: Log) =>
    createBackupSteps({
      s3: world.client,
      catalog: { bucket, prefix },
      pools: poolDirectory({
        lab: {
          connection: { url: sim.url },
          credentials: async () => ({ username: sim.username, password: sim.password }),
        },
      }),
      routing: lambda1GiB,
      ...(log ? { log } : {}),
    });

  it("Plan sizes a 2 TiB disk's delta for the Lambda's memory, its full for Fargate; the export uses Plan's parts", async () => {
    const vdi = sim.addVdi({ virtualSize: BIG_DISK, nameLabel: 'big' });
    sim.writeDisk(vdi.uuid, 0, Buffer.alloc(4 * MiB, 7));
    const logged: Record<string, unknown>[] = [];
    const steps = backupSteps('backups', {
      debug() {},
      info: (message, fields) => void (message === 'export planned' && logged.push(fields ?? {})),
      warn() {},
      error() {},
    });
    const login = await steps.login({ vdiUuids: [vdi.uuid], pool: 'lab' });
    const backup = () => backupThroughSteps(steps, vdi.uuid, login.session);
    const full = await backup();
    expect(full.plan).toMatchObject({ kind: 'full', route: 'fargate', partSize: 233 * MiB });
    expect(full.plan!.routeReason).toMatch(/more than the export Lambda's 1 GiB$/);
    expect(full.export!.partSize).toBe(233 * MiB);

    sim.writeDisk(vdi.uuid, 100 * GiB, Buffer.alloc(2 * MiB, 9));
    const delta = await backup();
    expect(delta.plan).toMatchObject({ kind: 'delta', route: 'lambda', partSize: 104 * MiB });
    expect(delta.plan!.routeReason).toMatch(/within the export Lambda's 1 GiB/);
    expect(delta.export).toMatchObject({ partSize: 104 * MiB, presentBlocks: 1, diskType: 'differencing' });
    // The decision and its reason are logged.
    expect(logged.map((fields) => [fields.kind, fields.route, fields.reason])).toEqual([
      ['full', 'fargate', full.plan!.routeReason],
      ['delta', 'lambda', delta.plan!.routeReason],
    ]);
    await steps.logout({ pool: 'lab', session: login.session, outcomes: [] });
    expect(sim.openSessions()).toEqual([]);
  });

  it("a sparse 3 TiB qcow2 disk: Plan sizes its full's parts for the whole disk, the export for the length the image's refcount table declares", async () => {
    const TiB = 1024 * GiB;
    const vdi = sim.addVdi({ virtualSize: 3 * TiB, nameLabel: 'sparse', imageFormat: 'qcow2' });
    sim.writeDisk(vdi.uuid, 2 * TiB, Buffer.alloc(3 * MiB, 5));
    const steps = backupSteps('sparse');
    const login = await steps.login({ vdiUuids: [vdi.uuid], pool: 'lab' });
    const state = await backupThroughSteps(steps, vdi.uuid, login.session);
    await steps.logout({ pool: 'lab', session: login.session, outcomes: [] });
    // Before the export, only the virtual size is known: every cluster present, 350 MiB parts.
    expect(state.plan).toMatchObject({
      kind: 'full',
      format: 'qcow2',
      route: 'fargate',
      partSize: 350 * MiB,
    });
    // One refcount block (2 GiB of file at most): S3's smallest part we use.
    expect(state.export).toMatchObject({ format: 'qcow2', partSize: 16 * MiB, presentBlocks: 48 });
    const transfer = sim.transfers().find((t) => t.direction === 'export' && t.snapshotOfUuid === vdi.uuid);
    expect(transfer).toMatchObject({ outcome: 'success', format: 'qcow2', bytes: state.export!.bytes });
    // The object stored with those parts, read by qemu-img: the snapshot's content.
    const dir = await mkdtemp(join(tmpdir(), 'sizing-'));
    try {
      const file = join(dir, 'full.qcow2');
      await writeFile(file, await readObject(world.client, bucket, state.plan!.objectKey));
      const read = await readChainOutside([file], sim.diskContent(state.snapshot!.uuid));
      expect(read, read.why).toMatchObject({ reader: 'qemu-img', same: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(sim.openSessions()).toEqual([]);
    expect(sim.openTasks()).toEqual([]);
  });

  it('an export that outgrows its parts fails before the part after the last and leaves no upload', async () => {
    const vdi = sim.addVdi({ virtualSize: 40 * MiB, populate: 'generated' });
    const session = await XapiSession.login(
      { url: sim.url },
      { username: sim.username, password: sim.password },
    );
    try {
      const vdiRef = await session.getVdiByUuid(vdi.uuid);
      const taskRef = await session.createTask('sizing test');
      const key = 'limit/too-big.vhd';
      const failure = await exportToS3({
        session,
        s3: world.client,
        bucket,
        key,
        vdiRef,
        taskRef,
        virtualSize: 40 * MiB,
        partSize: 5 * MiB,
        maxParts: 3,
      }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(PartLimitError);
      expect((failure as Error).message).toMatch(
        /^the export passed 15728640 bytes, all that 3 parts of 5242880 bytes can hold .* stopped before part 4 and its upload aborted: the parts were sized for a smaller delta; a full backup \(mode full\) sizes them for the whole disk/,
      );
      expect(await listOpenMultipartUploads(world.client, bucket, 'limit/')).toEqual([]);
      expect(await listKeys(world.client, bucket, 'limit/')).toEqual([]);
      await session.destroyTask(taskRef);
    } finally {
      await session.logout();
    }
  });
});
