import type { S3Client } from '@aws-sdk/client-s3';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { runLocalBackup, type LocalBackupRun, type LocalTarget } from '../../world/local/local-backup.ts';
import { runLocalRestore, type LocalRestoreRun } from '../../world/local/local-restore.ts';
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

const MiB = 1024 * 1024;

/** A simulated pool with one populated VDI, a fresh bucket on the test S3 server, and the local runner. */
export interface BackupWorld {
  readonly sim: XapiSimulator;
  readonly vdiUuid: string;
  readonly s3: S3Client;
  readonly bucket: string;
  readonly target: LocalTarget;
  /** Runs the synthesized backup workflow. Default input: this world's VDI, mode auto. */
  backup(input?: unknown): Promise<LocalBackupRun>;
  /** Runs the synthesized restore workflow. */
  restore(input: unknown): Promise<LocalRestoreRun>;
  /** Every VDI uuid the pool holds, snapshots included (read over XAPI). */
  vdiUuids(): Promise<string[]>;
  manifests(vdiUuid?: string): Promise<Manifest[]>;
  openUploads(): Promise<unknown[]>;
  /** The local deployment the runs go through: its gateway counts every AWS call. */
  deployment(): Promise<LocalDeployment>;
  close(): Promise<void>;
}

export async function startBackupWorld(
  options: {
    vdi?: Partial<AddVdiOptions>;
    tls?: boolean;
    target?: Partial<LocalTarget>;
    lockTtlSeconds?: number;
  } = {},
): Promise<BackupWorld> {
  const sim = await startXapiSimulator({ tls: options.tls ?? false });
  const locks = await startLockTable(options.lockTtlSeconds ? { ttlSeconds: options.lockTtlSeconds } : {});
  const vdi = sim.addVdi({
    virtualSize: 64 * MiB,
    populate: 'scattered',
    nameLabel: 'web-01 root',
    ...options.vdi,
  });
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
  return {
    sim,
    vdiUuid: vdi.uuid,
    s3: world.client,
    bucket,
    target,
    backup: (input = { vdiUuids: [vdi.uuid] }) => runLocalBackup(target, input),
    restore: (input) => runLocalRestore(target, input),
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
    manifests: (vdiUuid = vdi.uuid) =>
      listManifests(world.client, { bucket, prefix: 'backups' }, 'lab', vdiUuid),
    openUploads: () => listOpenMultipartUploads(world.client, bucket),
    deployment: () => localDeploymentOf(target),
    async close() {
      await closeLocalDeployment(target);
      await sim.close();
      await locks.close();
      await deleteTestBucket(world.client, bucket);
    },
  };
}
