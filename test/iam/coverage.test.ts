/**
 * Least privilege, shown on the stack as deployed: a representative set of backups and restores runs
 * through the synthesized template (handlers in workers with their roles, the Fargate task as a child
 * process, the state machines with theirs), and every AWS call goes through the IAM gateway. No call may be
 * denied, every caller must be a role of the template, and every action a role is granted must be used by
 * some scenario unless the allowlist below says why not. Then the converse: taking one grant a step needs
 * out of the template makes that step fail with AccessDenied, and only there.
 */
import { randomBytes } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateMultipartUploadCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../../world/local/aws/account.ts';
import type { AwsCall } from '../../world/local/aws/gateway.ts';
import { stackPolicies } from '../../world/local/aws/policies.ts';
import { unusedGrants } from '../../world/local/aws/usage.ts';
import { deployLocally, localConfig, type LocalDeployment } from '../../world/local/local-deployment.ts';
import { synthesizeApp } from '../../world/local/synthesized-workflows.ts';
import { acquireBackupLock, releaseBackupLock } from '../../lambdas/backup/backup-lock.ts';
import type { VmRestoreResult } from '../../lambdas/vm/restore-vm.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import type { RestoreResult } from '../../lambdas/restore/state.ts';
import { VHD_BLOCK_SIZE } from '../../lambdas/vhd/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';
import {
  describeCall,
  principalName,
  roleLogicalId,
  roleOfStep,
  runThrough,
  withoutGrant,
} from './scenarios.ts';

const MiB = 1024 * 1024;
/** A scenario may take a while on 2 cores: several executions, Fargate child processes. */
const SCENARIO_TIMEOUT = 120_000;

/**
 * Granted actions no scenario uses, each with the reason it stays granted; `role` matches the role's
 * logical id. The test fails on an unused grant missing here, and on an entry that no longer matches any
 * unused grant (so the list cannot go stale: remove a grant from the construct, then its entry here).
 * Entries marked "unused by our code" are candidates for removal from the construct.
 */
const ALLOWED_UNUSED: readonly { role: RegExp; actions: readonly string[]; reason: string }[] = [
  {
    role: /./,
    actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
    reason:
      'the services write the logs: Lambda (AWSLambdaBasicExecutionRole), the awslogs driver (the task execution role), VPC Flow Logs',
  },
  {
    role: /./,
    actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
    reason: 'X-Ray sends the segments: Lambda’s X-Ray daemon (Tracing: Active), Step Functions’ tracing',
  },
  {
    role: /^TransferVpcFlowLogIAMRole/,
    actions: ['logs:DescribeLogStreams'],
    reason: 'VPC Flow Logs assumes this role to deliver the transfer VPC’s flow logs',
  },
  {
    role: /^TransferTaskDefinitionExecutionRole/,
    actions: [
      'ecr:GetAuthorizationToken',
      'ecr:BatchCheckLayerAvailability',
      'ecr:GetDownloadUrlForLayer',
      'ecr:BatchGetImage',
    ],
    reason:
      'the ECS agent pulls the transfer image with the execution role; the local task runs the bundle itself',
  },
  {
    role: /^(Backup|Restore)StateMachineRole/,
    actions: ['ecs:DescribeTasks', 'ecs:StopTask'],
    reason:
      'Step Functions’ ecs:runTask.sync polls the task and stops it when the state times out or the execution is aborted; the local runner waits for the child process instead',
  },
  {
    role: /^(Backup|Restore)StateMachineRole/,
    actions: [
      'logs:CreateLogDelivery',
      'logs:DeleteLogDelivery',
      'logs:DescribeLogGroups',
      'logs:DescribeResourcePolicies',
      'logs:GetLogDelivery',
      'logs:ListLogDeliveries',
      'logs:PutResourcePolicy',
      'logs:UpdateLogDelivery',
    ],
    reason:
      'Step Functions sets up the state machine’s vended log delivery with these (LoggingConfiguration)',
  },
  {
    role: /^(Backup|Restore)StateMachineRole/,
    actions: ['xray:GetSamplingRules', 'xray:GetSamplingTargets'],
    reason: 'Step Functions’ X-Ray tracing samples with these',
  },
  {
    role: /^TriggersStartBackupRole/,
    actions: ['states:StartExecution', 'kms:Decrypt', 'kms:GenerateDataKey'],
    reason:
      'EventBridge Scheduler and the rule start executions with this role (evaluated in service-principals.test.ts); the scenarios start them directly',
  },
  {
    role: /^BackupFailureCleanupFunction/,
    actions: ['s3:AbortMultipartUpload', 's3:DeleteObject'],
    reason:
      'paths no scenario reaches deterministically: an upload that outlived its export (the export’s own abort failed, S3 unreachable), an object exported whose Commit then failed',
  },
  {
    role: /^BackupMergeFunction/,
    actions: ['s3:AbortMultipartUpload', 's3:DeleteObject'],
    reason:
      'failure paths of a merge: a part or the completion failing (abort), the read-back or the manifest rewrite failing (delete); tested against S3 in test/safety/forever-incremental.test.ts',
  },
  {
    role: /^TransferTaskDefinitionTaskRole/,
    actions: ['s3:DeleteObject'],
    reason:
      'a merge on Fargate deletes only the synthetic full whose read-back or manifest rewrite failed (test/safety/forever-incremental.test.ts)',
  },
  {
    role: /^BackupSnapshotVmsFunction/,
    actions: ['kms:Decrypt'],
    reason:
      'unused by our code: SnapshotVms PUTs and deletes the VMs’ descriptions, never reads them; granted with its s3:PutObject',
  },
  {
    role: /^BackupCommitFunction/,
    actions: ['kms:Decrypt'],
    reason:
      'unused by our code: Commit HEADs the object (no decryption) and PUTs the manifest; granted with its s3:GetObject',
  },
];

/** Every call of every scenario, by the deployment that recorded it. */
const recorded: { stack: LocalStack; calls: readonly AwsCall[] }[] = [];
const scenariosRun = new Set<string>();
const SCENARIOS = [
  'full',
  'delta',
  'catalog-metrics',
  'killed-upload',
  'lock-held',
  'session-expired',
  'restore',
  'restore-failure',
  'failing-export',
  'broken-chain',
  'retention',
  'merge',
  'fargate-merge',
  'fargate-full',
  'lambda-timeout',
  'fargate-failing-export',
  'fargate-restore',
  'vm',
  'vm-restore',
] as const;

async function latestManifest(world: BackupWorld) {
  const manifest = (await world.manifests()).at(-1);
  if (!manifest) throw new Error('no manifest');
  return manifest;
}

/** The GetSecretValue calls each of these steps' roles made since `from`. */
function secretReads(deployment: LocalDeployment, from: number, steps: readonly string[]) {
  const calls = deployment.gateway.calls.slice(from);
  return Object.fromEntries(
    steps.map((step) => {
      const role = roleOfStep(deployment.stack, step);
      return [
        step,
        calls.filter((call) => call.principal === role && call.action === 'secretsmanager:GetSecretValue')
          .length,
      ];
    }),
  );
}

describe('IAM coverage: every call allowed, every grant used', () => {
  describe('on Lambda (default routing)', () => {
    let world: BackupWorld;
    let deployment: LocalDeployment;
    let fullBackupId: string;
    let vmUuid: string;
    const srUuid = () => world.sim.srs.shared.uuid;
    beforeAll(async () => {
      world = await startBackupWorld({ vdi: { virtualSize: 48 * MiB, populate: 'scattered' } });
      deployment = await world.deployment();
    });
    afterAll(async () => {
      if (deployment) recorded.push({ stack: deployment.stack, calls: [...deployment.gateway.calls] });
      await world?.close();
    });
    const backup = (input: unknown = { vdiUuids: [world.vdiUuid] }, expireSessionsAt?: string) =>
      runThrough(deployment, world, 'backup', input, expireSessionsAt ? { expireSessionsAt } : {});
    const restore = (input: unknown, expireSessionsAt?: string) =>
      runThrough(deployment, world, 'restore', input, expireSessionsAt ? { expireSessionsAt } : {});

    it('a full backup', { timeout: SCENARIO_TIMEOUT }, async () => {
      const run = await backup();
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect((run.output as BackupSummary).outcomes[0]).toMatchObject({ kind: 'full' });
      fullBackupId = (run.output as BackupSummary).outcomes[0]!.backupId!;
      scenariosRun.add('full');
    });

    it('a delta', { timeout: SCENARIO_TIMEOUT }, async () => {
      world.sim.writeDisk(world.vdiUuid, 2 * VHD_BLOCK_SIZE + 512, randomBytes(3 * VHD_BLOCK_SIZE));
      const run = await backup();
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect((run.output as BackupSummary).outcomes[0]).toMatchObject({ kind: 'delta' });
      scenariosRun.add('delta');
    });

    it(
      'the hourly catalog metrics: the newest restore point of each series',
      { timeout: SCENARIO_TIMEOUT },
      async () => {
        const [functionId] = deployment.stack
          .resourcesOfType('AWS::Lambda::Function')
          .filter(
            ([, resource]) =>
              (resource.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)
                ?.Variables?.VDI_VAULT_STEP === 'backup.publishCatalogMetrics',
          )
          .map(([id]) => id);
        expect(functionId).toBeDefined();
        // The series backed up so far: this world's disk.
        expect(await deployment.lambdas.invoke(functionId!, {})).toMatchObject({ series: 1 });
        scenariosRun.add('catalog-metrics');
      },
    );

    it('a killed run’s upload left behind: Plan aborts it', { timeout: SCENARIO_TIMEOUT }, async () => {
      const series = `backups/lab/${world.vdiUuid}/`;
      await world.s3.send(
        new CreateMultipartUploadCommand({
          Bucket: world.bucket,
          Key: `${series}20200101T000000.000Z-delta.vhd`,
        }),
      );
      world.sim.writeDisk(world.vdiUuid, 9 * VHD_BLOCK_SIZE, randomBytes(4096));
      const run = await backup();
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect(await world.openUploads()).toEqual([]);
      scenariosRun.add('killed-upload');
    });

    it(
      'a VDI another run holds the lock of, and one the pool lacks: Plan reads the holder, releases its own lock',
      {
        timeout: SCENARIO_TIMEOUT,
      },
      async () => {
        const table = world.target.lockTable!;
        const client = new DynamoDBClient({
          endpoint: table.endpoint,
          region: 'us-east-1',
          credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        });
        const missing = '00000000-0000-4000-8000-000000000000';
        try {
          const lock = { client, tableName: table.tableName };
          const held = await acquireBackupLock(lock, `lab/${world.vdiUuid}`, 'another-run', new Date());
          const run = await backup({ vdiUuids: [world.vdiUuid, missing] });
          await releaseBackupLock(lock, held);
          expect(run.status).toBe('FAILED');
          expect(run.cause).toMatch(/already running \(another-run/);
          expect(run.cause).toContain('UUID_INVALID');
        } finally {
          client.destroy();
        }
        scenariosRun.add('lock-held');
      },
    );

    it(
      'a session that expires after Login: every XAPI step after it reads the secret and logs in again',
      {
        timeout: SCENARIO_TIMEOUT,
      },
      async () => {
        const from = deployment.gateway.calls.length;
        world.sim.writeDisk(world.vdiUuid, 12 * VHD_BLOCK_SIZE, randomBytes(VHD_BLOCK_SIZE));
        const run = await backup(undefined, 'Plan');
        expect(run.status, run.cause).toBe('SUCCEEDED');
        expect(run.expired).toBeGreaterThan(0);
        const reads = secretReads(deployment, from, [
          'backup.login',
          'backup.plan',
          'backup.snapshot',
          'backup.createTask',
          'backup.export',
          'backup.cleanup',
        ]);
        for (const [step, count] of Object.entries(reads))
          expect(count, `${step} read the secret`).toBeGreaterThan(0);
        scenariosRun.add('session-expired');
      },
    );

    it(
      'restores with replay (its session expiring) and merge, bit-exact',
      { timeout: SCENARIO_TIMEOUT },
      async () => {
        const latest = await latestManifest(world);
        const expected = world.sim.diskSha256(latest.snapshotUuid);
        const from = deployment.gateway.calls.length;
        const replay = await restore(
          { vdiUuid: world.vdiUuid, srUuid: srUuid(), strategy: 'replay' },
          'ResolveChain',
        );
        expect(replay.status, replay.cause).toBe('SUCCEEDED');
        expect(replay.statesEntered).toContain('ImportLayer');
        const reads = secretReads(deployment, from, [
          'restore.resolveChain',
          'restore.createVdi',
          'restore.importLayer',
          'restore.cleanup',
        ]);
        for (const [step, count] of Object.entries(reads))
          expect(count, `${step} read the secret`).toBeGreaterThan(0);
        const merge = await restore(
          { vdiUuid: world.vdiUuid, srUuid: srUuid(), strategy: 'merge' },
          'CreateVdi',
        );
        expect(merge.status, merge.cause).toBe('SUCCEEDED');
        expect(merge.statesEntered).toContain('ImportMerged');
        for (const run of [replay, merge]) {
          const result = run.output as RestoreResult;
          expect(world.sim.diskSha256(result.vdiUuid)).toBe(expected);
          world.sim.deleteVdi(result.vdiUuid);
        }
        expect(
          secretReads(deployment, from, ['restore.importMerged'])['restore.importMerged'],
        ).toBeGreaterThan(0);
        scenariosRun.add('restore');
      },
    );

    it(
      'a restore that fails: RestoreFailureCleanup logs in again and removes the partial VDI',
      {
        timeout: SCENARIO_TIMEOUT,
      },
      async () => {
        const before = await world.vdiUuids();
        const from = deployment.gateway.calls.length;
        // Every import fails (each layer's import begins with an empty probe, which would use up a `times: 1`).
        // One layer: the local runner goes on starting Map iterations after one failed (AWS does not).
        world.sim.injectFault({ kind: 'fail-task-after-body', on: 'import', code: 'VDI_IO_ERROR' });
        const run = await restore(
          { vdiUuid: world.vdiUuid, restorePoint: fullBackupId, srUuid: srUuid(), strategy: 'replay' },
          'RestoreFailureCleanup',
        );
        world.sim.clearFaults();
        expect(run.status).toBe('FAILED');
        expect(run.cause).toMatch(/VDI_IO_ERROR/);
        expect(run.statesEntered).toContain('RestoreFailureCleanup');
        expect(await world.vdiUuids()).toEqual(before);
        expect(
          secretReads(deployment, from, ['restore.failureCleanup'])['restore.failureCleanup'],
        ).toBeGreaterThan(0);
        scenariosRun.add('restore-failure');
      },
    );

    it(
      'a Lambda export that fails mid-upload: its upload aborted, FailureCleanup logs in again',
      {
        timeout: SCENARIO_TIMEOUT,
      },
      async () => {
        const from = deployment.gateway.calls.length;
        // More than one 16 MiB part: a multipart upload is open when the host's task fails.
        world.sim.writeDisk(world.vdiUuid, 0, randomBytes(20 * MiB));
        world.sim.injectFault({ kind: 'fail-task-after-body', on: 'export', code: 'VDI_IO_ERROR', times: 1 });
        const run = await backup(undefined, 'FailureCleanup');
        world.sim.clearFaults();
        expect(run.status).toBe('FAILED');
        expect(run.cause).toMatch(/VDI_IO_ERROR/);
        expect(run.statesEntered).toContain('FailureCleanup');
        expect(await world.openUploads()).toEqual([]);
        const calls = deployment.gateway.calls.slice(from);
        const exportRole = roleOfStep(deployment.stack, 'backup.export');
        expect(
          calls.some((call) => call.principal === exportRole && call.action === 's3:AbortMultipartUpload'),
        ).toBe(true);
        expect(
          secretReads(deployment, from, ['backup.failureCleanup'])['backup.failureCleanup'],
        ).toBeGreaterThan(0);
        scenariosRun.add('failing-export');
      },
    );

    it(
      'a broken chain: Plan moves its manifests aside and takes a full',
      { timeout: SCENARIO_TIMEOUT },
      async () => {
        const latest = await latestManifest(world);
        await world.s3.send(new DeleteObjectCommand({ Bucket: world.bucket, Key: latest.objectKey }));
        const run = await backup();
        expect(run.status, run.cause).toBe('SUCCEEDED');
        expect((run.output as BackupSummary).outcomes[0]).toMatchObject({ kind: 'full' });
        expect((run.output as BackupSummary).outcomes[0]!.fullReason).toMatch(/^chain broken/);
        scenariosRun.add('broken-chain');
      },
    );

    it('retention deletes the points the newest no longer needs', { timeout: SCENARIO_TIMEOUT }, async () => {
      world.sim.writeDisk(world.vdiUuid, 5 * VHD_BLOCK_SIZE, randomBytes(4096));
      const run = await backup({ vdiUuids: [world.vdiUuid], retention: { keep: 1, fullEvery: 2 } });
      expect(run.status, run.cause).toBe('SUCCEEDED');
      const outcome = (run.output as BackupSummary).outcomes[0]!;
      expect(outcome.retention?.error).toBeUndefined();
      expect(outcome.retention?.deleted).toBeGreaterThan(0);
      scenariosRun.add('retention');
    });

    it(
      'forever incremental merges the oldest kept delta into a synthetic full',
      { timeout: SCENARIO_TIMEOUT },
      async () => {
        world.sim.writeDisk(world.vdiUuid, 7 * VHD_BLOCK_SIZE, randomBytes(4096));
        const run = await backup({ vdiUuids: [world.vdiUuid], retention: { keep: 1 } });
        expect(run.status, run.cause).toBe('SUCCEEDED');
        const outcome = (run.output as BackupSummary).outcomes[0]!;
        expect(outcome).toMatchObject({ kind: 'delta', merge: { status: 'merged' } });
        expect(run.statesEntered).toEqual(expect.arrayContaining(['Merge', 'RouteMerge', 'Cleanup']));
        expect((await world.manifests()).map((m) => [m.kind, m.synthetic])).toEqual([['full', true]]);
        scenariosRun.add('merge');
      },
    );

    it(
      'a VM by tag, its session expiring at SnapshotVms; then one refused after its snapshot: SnapshotVms removes it all',
      { timeout: SCENARIO_TIMEOUT },
      async () => {
        const second = world.sim.addVdi({
          virtualSize: 4 * MiB,
          populate: 'scattered',
          nameLabel: 'vm disk 2',
        });
        const vm = world.sim.addVm({
          nameLabel: 'iam-vm',
          tags: ['iam-nightly'],
          disks: [
            { vdiUuid: world.vdiUuid, userdevice: '0', bootable: true },
            { vdiUuid: second.uuid, userdevice: '1' },
          ],
          vifs: [{ networkUuid: world.sim.managementNetwork.uuid, device: '0' }],
        });
        const from = deployment.gateway.calls.length;
        const run = await backup({ tags: ['iam-nightly'] }, 'SnapshotVms');
        expect(run.status, run.cause).toBe('SUCCEEDED');
        expect((run.output as BackupSummary).vmOutcomes).toMatchObject([
          { vmUuid: vm.uuid, status: 'succeeded' },
        ]);
        const reads = secretReads(deployment, from, ['backup.snapshotVms', 'backup.commitVms']);
        for (const [step, count] of Object.entries(reads))
          expect(count, `${step} read the secret`).toBeGreaterThan(0);
        // CommitVms removed the snapshot VM in the session it logged in again for.
        expect(world.sim.vmSnapshotsOf(vm.uuid)).toEqual([]);
        // Its description was written before the selection was refused, and is deleted again.
        const refused = await backup({ vmUuids: [vm.uuid], vdiUuids: [second.uuid] });
        expect(refused.status).toBe('FAILED');
        expect(refused.cause).toMatch(/is a disk of a VM this run backs up too/);
        expect(world.sim.vmSnapshotsOf(vm.uuid)).toEqual([]);
        vmUuid = vm.uuid;
        scenariosRun.add('vm');
      },
    );

    it(
      'a VM restore, its session expiring at ResolveVm; then one failing at its second disk, expiring again at VmRestoreFailureCleanup: it removes it all',
      { timeout: SCENARIO_TIMEOUT },
      async () => {
        const from = deployment.gateway.calls.length;
        const run = await restore({ vmUuid, srUuid: srUuid() }, 'ResolveVm');
        expect(run.status, run.cause).toBe('SUCCEEDED');
        const restored = run.output as VmRestoreResult;
        expect(restored.disks.map((disk) => disk.userdevice)).toEqual(['0', '1']);
        // Each VM step after the expiry found it and logged in again.
        const vmSteps = ['restore.resolveVm', 'restore.createVm', 'restore.attachVmDisk', 'restore.finishVm'];
        for (const [step, count] of Object.entries(secretReads(deployment, from, vmSteps)))
          expect(count, `${step} read the secret`).toBeGreaterThan(0);
        const vms = world.sim.allVms().length;
        const thick = world.sim.addSr({ nameLabel: 'LVM', type: 'lvm', shared: true, prezeroed: false });
        const failedFrom = deployment.gateway.calls.length;
        const failed = await restore(
          { vmUuid, srMap: { '0': srUuid(), '1': thick.uuid } },
          'VmRestoreFailureCleanup',
        );
        expect(failed.status).toBe('FAILED');
        const cleanupReads = secretReads(deployment, failedFrom, ['restore.vmFailureCleanup']);
        expect(cleanupReads['restore.vmFailureCleanup'], 'the clean-up logged in again').toBeGreaterThan(0);
        expect(failed.cause).toMatch(/thick-provisioned/);
        expect(world.sim.allVms()).toHaveLength(vms);
        expect(await listKeys(world.s3, world.bucket, 'backups/.transfers/')).toEqual([]);
        scenariosRun.add('vm-restore');
      },
    );
  });

  describe('on Fargate (a small threshold), and a Lambda export killed by its time limit', () => {
    let world: BackupWorld;
    let deployment: LocalDeployment;
    let killArmed = false;
    beforeAll(async () => {
      world = await startBackupWorld({
        vdi: { virtualSize: 24 * MiB, populate: 'generated' },
        target: {
          routing: { fargateThresholdBytes: 4 * MiB },
          // The first export that runs on Lambda (a delta) is killed once its multipart upload is open.
          simulateLambdaTimeout: {
            step: 'backup.export',
            killWhen: async () => {
              if (!killArmed) return new Promise<void>(() => undefined);
              for (;;) {
                if ((await world.openUploads()).length) return;
                await new Promise((resolve) => setTimeout(resolve, 50));
              }
            },
          },
        },
      });
      deployment = await world.deployment();
    });
    afterAll(async () => {
      if (deployment) recorded.push({ stack: deployment.stack, calls: [...deployment.gateway.calls] });
      await world?.close();
    });
    const backup = (input: unknown = { vdiUuids: [world.vdiUuid] }, expireSessionsAt?: string) =>
      runThrough(deployment, world, 'backup', input, expireSessionsAt ? { expireSessionsAt } : {});

    it('a full exported on Fargate', { timeout: SCENARIO_TIMEOUT }, async () => {
      const run = await backup();
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect(run.statesEntered).toEqual(expect.arrayContaining(['ExportOnFargate', 'CollectExport']));
      expect(run.statesEntered).not.toContain('Export');
      scenariosRun.add('fargate-full');
    });

    it(
      'a Lambda export killed by its time limit, retried on Fargate (PrepareFargateRetry logging in again)',
      {
        timeout: SCENARIO_TIMEOUT,
      },
      async () => {
        // A first delta is expected small: Lambda, 16 MiB parts; 18 MiB of changes make it multipart.
        world.sim.writeDisk(world.vdiUuid, 0, randomBytes(18 * MiB));
        world.sim.injectFault({ kind: 'throttle', on: 'export', bytesPerSecond: 24 * MiB, times: 1 });
        killArmed = true;
        const from = deployment.gateway.calls.length;
        const run = await backup(undefined, 'Plan');
        expect(run.status, run.cause).toBe('SUCCEEDED');
        expect(run.statesEntered).toEqual(
          expect.arrayContaining(['Export', 'PrepareFargateRetry', 'ExportOnFargate']),
        );
        expect(await world.openUploads()).toEqual([]);
        const prepare = secretReads(deployment, from, ['backup.prepareFargateRetry'])[
          'backup.prepareFargateRetry'
        ];
        expect(prepare).toBeGreaterThan(0);
        scenariosRun.add('lambda-timeout');
      },
    );

    it(
      'an export that fails on Fargate: the task aborts its upload, FailureCleanup runs',
      {
        timeout: SCENARIO_TIMEOUT,
      },
      async () => {
        // The last delta was 18 MiB: the next is expected above the threshold, on Fargate (multipart).
        world.sim.writeDisk(world.vdiUuid, 0, randomBytes(18 * MiB));
        world.sim.injectFault({ kind: 'fail-task-after-body', on: 'export', code: 'VDI_IO_ERROR', times: 1 });
        const run = await backup();
        world.sim.clearFaults();
        expect(run.status).toBe('FAILED');
        expect(run.cause).toMatch(/VDI_IO_ERROR/);
        expect(run.statesEntered).toEqual(expect.arrayContaining(['ExportOnFargate', 'FailureCleanup']));
        expect(await world.openUploads()).toEqual([]);
        scenariosRun.add('fargate-failing-export');
      },
    );

    it('restores on Fargate with replay and merge, bit-exact', { timeout: SCENARIO_TIMEOUT }, async () => {
      const latest = await latestManifest(world);
      const expected = world.sim.diskSha256(latest.snapshotUuid);
      for (const strategy of ['replay', 'merge'] as const) {
        const run = await runThrough(deployment, world, 'restore', {
          vdiUuid: world.vdiUuid,
          srUuid: world.sim.srs.shared.uuid,
          strategy,
        });
        expect(run.status, run.cause).toBe('SUCCEEDED');
        expect(run.statesEntered.some((state) => state.endsWith('OnFargate'))).toBe(true);
        const result = run.output as RestoreResult;
        expect(world.sim.diskSha256(result.vdiUuid)).toBe(expected);
        world.sim.deleteVdi(result.vdiUuid);
      }
      scenariosRun.add('fargate-restore');
    });

    it('a merge routed to Fargate by the size of its read-back', { timeout: SCENARIO_TIMEOUT }, async () => {
      world.sim.writeDisk(world.vdiUuid, 3 * MiB, randomBytes(4096));
      const run = await backup({ vdiUuids: [world.vdiUuid], retention: { keep: 1 } });
      expect(run.status, run.cause).toBe('SUCCEEDED');
      expect(run.statesEntered).toEqual(expect.arrayContaining(['Merge', 'MergeOnFargate', 'CollectMerge']));
      expect((run.output as BackupSummary).outcomes[0]).toMatchObject({ merge: { status: 'merged' } });
      expect(await world.openUploads()).toEqual([]);
      scenariosRun.add('fargate-merge');
    });
  });

  describe('over every call of every scenario', () => {
    /** The first deployment's stack; the others' calls are mapped onto its roles by logical id. */
    let stack: LocalStack;
    let calls: AwsCall[];
    beforeAll(() => {
      expect([...scenariosRun].sort(), 'every scenario ran').toEqual([...SCENARIOS].sort());
      stack = recorded[0]!.stack;
      calls = recorded.flatMap((deployment) =>
        deployment.calls.map((call) => {
          const logicalId = roleLogicalId(deployment.stack, call.principal);
          return logicalId ? { ...call, principal: stack.arnOf(logicalId) } : call;
        }),
      );
    });

    it('no call was denied', () => {
      const denied = recorded.flatMap((deployment) =>
        deployment.calls.filter((call) => !call.allowed).map((call) => describeCall(deployment.stack, call)),
      );
      expect(denied, `denied calls:\n${denied.join('\n')}`).toEqual([]);
    });

    it('every principal that made a call is a role of the template', () => {
      const principals = [...new Set(calls.map((call) => call.principal))];
      expect(principals.length).toBeGreaterThan(10);
      expect(principals.filter((principal) => !roleLogicalId(stack, principal))).toEqual([]);
    });

    it('every granted action is used by some scenario, or allowlisted with its reason', async () => {
      const roles = [...stackPolicies(stack).identity.keys()];
      const unused = await unusedGrants(stack, calls, roles);
      const listed: string[] = [];
      const unexplained: string[] = [];
      const matched = new Set<string>();
      for (const [role, actions] of Object.entries(unused)) {
        const name = principalName(stack, role);
        for (const action of actions) {
          listed.push(`${name} ${action}`);
          const entry = ALLOWED_UNUSED.find(
            (candidate) =>
              candidate.role.test(name) &&
              candidate.actions.some((allowed) => allowed.toLowerCase() === action.toLowerCase()),
          );
          if (entry) matched.add(`${entry.role.source} ${action.toLowerCase()}`);
          else unexplained.push(`${name} ${action}`);
        }
      }
      console.log(`granted but unused by any scenario (${listed.length}):\n${listed.join('\n')}`);
      expect(unexplained, `unused grants not on the allowlist:\n${unexplained.join('\n')}`).toEqual([]);
      const stale = ALLOWED_UNUSED.flatMap((entry) =>
        entry.actions
          .filter((action) => !matched.has(`${entry.role.source} ${action.toLowerCase()}`))
          .map((action) => `${entry.role.source} ${action}`),
      );
      expect(stale, 'allowlist entries no unused grant matches (remove them)').toEqual([]);
    });
  });
});

describe('a grant a step needs, removed from the construct, fails that step with AccessDenied', () => {
  let world: BackupWorld;
  /** A full: restored alone, its chain has one layer, so one ImportLayer runs (see the restore failure above). */
  let fullBackupId: string;
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 16 * MiB, populate: 'scattered' } });
    // The restore case's restore point (each case may run alone).
    const run = await world.backup();
    expect(run.status, run.cause).toBe('SUCCEEDED');
    fullBackupId = run.summary!.outcomes[0]!.backupId!;
  }, SCENARIO_TIMEOUT);
  afterAll(async () => {
    await world?.close();
  });

  it.each([
    {
      step: 'backup.plan',
      action: 's3:ListBucketMultipartUploads',
      why: 'Plan lists the series’ open uploads (a killed run’s) on every backup',
    },
    {
      step: 'backup.export',
      action: 'secretsmanager:GetSecretValue',
      why: 'Export logs in again when the execution’s session expired',
      expireSessionsAt: 'Plan',
    },
    { step: 'backup.export', action: 's3:PutObject', why: 'Export uploads the VHD' },
    {
      step: 'restore.importLayer',
      action: 's3:GetObject',
      why: 'ImportLayer reads the chain document and the layer',
    },
  ] as const)('$step without $action ($why)', { timeout: SCENARIO_TIMEOUT }, async (grant) => {
    const { step, action } = grant;
    const app = synthesizeApp(localConfig(world.target));
    const intact = await world.deployment();
    const { app: mutated, roleArn } = withoutGrant(app, intact.stack, step, action);
    const workflow = step.startsWith('restore.') ? 'restore' : 'backup';
    const input =
      workflow === 'backup'
        ? { vdiUuids: [world.vdiUuid] }
        : {
            vdiUuid: world.vdiUuid,
            restorePoint: fullBackupId,
            srUuid: world.sim.srs.shared.uuid,
            strategy: 'replay',
          };
    const options = 'expireSessionsAt' in grant ? { expireSessionsAt: grant.expireSessionsAt } : {};
    world.sim.writeDisk(world.vdiUuid, 0, randomBytes(4096));
    const vdisBefore = await world.vdiUuids();

    const deployment = await deployLocally(world.target, { app: mutated });
    try {
      const run = await runThrough(deployment, world, workflow, input, options);
      expect(run.status).toBe('FAILED');
      // The service's AccessDenied, as the step's error or inside the one it raised (CatalogError: …).
      expect(`${run.error}: ${run.cause}`).toMatch(/(^|: )AccessDenied(Exception)?: /);
      expect(run.cause).toContain(`is not authorized to perform: ${action}`);
      const denied = deployment.gateway.denied();
      const described = denied.map((call) => describeCall(deployment.stack, call)).join('\n');
      // One call denied: the SDK may send it twice (an upload refused before its body was read can
      // break the connection, which the SDK retries), but never another call.
      const distinct = new Set(denied.map((call) => `${call.principal} ${call.action} ${call.resource}`));
      expect(distinct.size, `exactly the call the missing grant allowed is denied:\n${described}`).toBe(1);
      expect(denied[0]).toMatchObject({ principal: roleArn, action });
    } finally {
      await deployment.close();
    }
    // The failure clean-up ran as usual: nothing left behind.
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
    expect(await world.vdiUuids()).toEqual(vdisBefore);

    // The same run through the template as synthesized succeeds, with nothing denied.
    const from = intact.gateway.calls.length;
    const run = await runThrough(intact, world, workflow, input, options);
    expect(run.status, run.cause).toBe('SUCCEEDED');
    if (workflow === 'restore') world.sim.deleteVdi((run.output as RestoreResult).vdiUuid);
    const calls = intact.gateway.calls.slice(from);
    expect(calls.filter((call) => !call.allowed)).toEqual([]);
    expect(calls.some((call) => call.principal === roleArn && call.action === action)).toBe(true);
  });
});
