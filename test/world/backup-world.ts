import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { runLocalBackup, type LocalBackupRun, type LocalTarget } from '../../world/local/local-backup.ts';
import {
  runLocalRestore,
  runLocalVmRestore,
  type LocalRestoreRun,
  type LocalVmRestoreRun,
} from '../../world/local/local-restore.ts';
import type { LocalDeployment } from '../../world/local/local-deployment.ts';
import { closeLocalDeployment, localDeploymentOf } from '../../world/local/local-deployments.ts';
import { XapiSession } from '../../lambdas/xapi/index.ts';
import { startLockTable } from '../../world/local/lock-table.ts';
import { createTestBucket, deleteTestBucket, listOpenMultipartUploads, s3World } from './s3.ts';
import {
  startXapiSimulator,
  type AddVdiOptions,
  type XapiSimulator,
} from '../../world/xapi-simulator/index.ts';
import { OutsideReadChecks } from './outside-checks.ts';

const MiB = 1024 * 1024;

/** A simulated pool with one populated VDI, a fresh bucket on the test S3 server, and the local runner. */
export interface BackupWorld {
  readonly sim: XapiSimulator;
  readonly vdiUuid: string;
  readonly s3: S3Client;
  readonly bucket: string;
  readonly target: LocalTarget;
  /**
   * Runs the synthesized backup workflow. Default input: this world's VDI, mode auto. Then every point it
   * committed is read from S3 by an outside reader and compared with what the host exported (outsideReaders).
   */
  backup(input?: unknown): Promise<LocalBackupRun>;
  /**
   * Runs the synthesized restore workflow. Then the streams the host received for the restored VDI are read
   * by an outside reader and compared with the VDI's content at the host and with the point's (outsideReaders).
   */
  restore(input: unknown): Promise<LocalRestoreRun>;
  /** A VM restore through the restore workflow; then each restored disk's stream is read as by restore. */
  restoreVm(input: unknown): Promise<LocalVmRestoreRun>;
  /** What the outside readers checked so far (in this world). */
  readonly outsideChecks: OutsideReadChecks;
  /** Every VDI uuid the pool holds, snapshots included (read over XAPI). */
  vdiUuids(): Promise<string[]>;
  manifests(vdiUuid?: string): Promise<Manifest[]>;
  openUploads(): Promise<unknown[]>;
  /** The local deployment the runs go through: its gateway counts every AWS call. */
  deployment(): Promise<LocalDeployment>;
  /**
   * The same world (pool, bucket, deployment and its warm functions) around a new VDI of the pool: its
   * `vdiUuid` and the defaults of `backup()` and `manifests()` are that VDI's. Scenarios that need a fresh
   * disk but no world of their own share one this way; `close()` of the view closes nothing.
   */
  withNewVdi(options?: Partial<AddVdiOptions>): BackupWorld;
  close(): Promise<void>;
}

export async function startBackupWorld(
  options: {
    vdi?: Partial<AddVdiOptions>;
    tls?: boolean;
    target?: Partial<LocalTarget>;
    lockTtlSeconds?: number;
    /**
     * Default true: every backup's stored points and every restore's received streams are read by qemu-img
     * or libvhdi (test/world/outside-checks.ts). Off only where disks are too big to read back in a test.
     */
    outsideReaders?: boolean;
  } = {},
): Promise<BackupWorld> {
  const outsideReaders = options.outsideReaders ?? true;
  const recordings = outsideReaders ? await mkdtemp(join(tmpdir(), 'vdi-vault-sim-transfers-')) : undefined;
  const sim = await startXapiSimulator({
    tls: options.tls ?? false,
    ...(recordings === undefined ? {} : { recordTransfersIn: recordings }),
  });
  const locks = await startLockTable(options.lockTtlSeconds ? { ttlSeconds: options.lockTtlSeconds } : {});
  const addVdi = (more: Partial<AddVdiOptions> = {}) =>
    sim.addVdi({
      virtualSize: 64 * MiB,
      populate: 'scattered',
      nameLabel: 'web-01 root',
      ...options.vdi,
      ...more,
    });
  const vdi = addVdi();
  const world = s3World();
  const bucket = await createTestBucket(world.client, 'backup');
  const target: LocalTarget = {
    xapi: {
      url: sim.url,
      username: sim.username,
      password: sim.password,
      ...(sim.caPem ? { tls: { caPem: sim.caPem } } : {}),
    },
    pool: 'lab',
    s3: world.target,
    bucket,
    prefix: 'backups',
    lockTable: { endpoint: locks.endpoint, tableName: locks.table.tableName },
    ...options.target,
  };
  const checks = new OutsideReadChecks(sim, world.client, target);
  const around = (vdiUuid: string, close: () => Promise<void>): BackupWorld => ({
    sim,
    vdiUuid,
    s3: world.client,
    bucket,
    target,
    async backup(input = { vdiUuids: [vdiUuid] }) {
      const before = sim.transfers().length;
      const run = await runLocalBackup(target, input);
      if (outsideReaders) await checks.storedPoints(sim.transfers().slice(before));
      return run;
    },
    async restore(input) {
      const before = sim.transfers().length;
      const run = await runLocalRestore(target, input);
      if (outsideReaders && run.result !== undefined) {
        await checks.restoredStreams(run.result, sim.transfers().slice(before));
      }
      return run;
    },
    async restoreVm(input) {
      const before = sim.transfers().length;
      const run = await runLocalVmRestore(target, input);
      if (outsideReaders && run.result !== undefined) {
        for (const disk of run.result.disks) {
          await checks.restoredStreams(
            { vdiUuid: disk.vdiUuid, restorePoint: disk.backupId },
            sim.transfers().slice(before),
          );
        }
      }
      return run;
    },
    outsideChecks: checks,
    async vdiUuids() {
      const session = await XapiSession.login(
        { url: sim.url, ...(sim.caPem ? { tls: { caPem: sim.caPem } } : {}) },
        { username: sim.username, password: sim.password },
      );
      try {
        return Object.values(await session.getAllVdiRecords())
          .map((record) => record.uuid)
          .sort();
      } finally {
        await session.logout();
      }
    },
    manifests: (uuid = vdiUuid) => listManifests(world.client, { bucket, prefix: 'backups' }, 'lab', uuid),
    openUploads: () => listOpenMultipartUploads(world.client, bucket),
    deployment: () => localDeploymentOf(target),
    withNewVdi: (more) => around(addVdi(more).uuid, async () => undefined),
    close,
  });
  return around(vdi.uuid, async () => {
    await closeLocalDeployment(target);
    await sim.close();
    await locks.close();
    await deleteTestBucket(world.client, bucket);
    if (recordings !== undefined) await rm(recordings, { recursive: true, force: true });
  });
}
