import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { InputValidationError } from '../../lambdas/shared/input-error.ts';
import {
  parseTransferParameters,
  TRANSFER_ENV,
  transferFieldVariable,
} from '../../lambdas/transfer/transfer-task.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { backupAndRecord, expectInvariants, type RestorePointHashes } from '../safety/invariants.ts';

const MiB = 1024 * 1024;

describe('transfers on Fargate (the container entrypoint as a local child process)', () => {
  let world: BackupWorld | undefined;
  const hashes: RestorePointHashes = new Map();
  afterEach(async () => {
    hashes.clear();
    await world?.close();
    world = undefined;
  });

  it('routes by threshold: a small delta export on Lambda; the large full, and restores of a chain holding it, on Fargate', async () => {
    world = await startBackupWorld({
      vdi: { virtualSize: 24 * MiB, populate: 'scattered' },
      // The full (~9 MiB allocated) goes to Fargate, the small deltas stay on Lambda.
      target: { routing: { fargateThresholdBytes: 4 * MiB } },
    });
    const full = await world.backup();
    expect(full.status, full.cause).toBe('SUCCEEDED');
    expect(full.statesEntered).toEqual(expect.arrayContaining(['ExportOnFargate', 'CollectExport']));
    expect(full.statesEntered).not.toContain('Export');
    let manifest = (await world.manifests()).at(-1)!;
    hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));

    world.sim.writeDisk(world.vdiUuid, 0, Buffer.alloc(4096, 9));
    const delta = await world.backup();
    expect(delta.status, delta.cause).toBe('SUCCEEDED');
    expect(delta.statesEntered).toContain('Export');
    expect(delta.statesEntered).not.toContain('ExportOnFargate');
    manifest = (await world.manifests()).at(-1)!;
    hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));

    const srUuid = world.sim.srs.shared.uuid;
    const replay = await world.restore({ vdiUuid: world.vdiUuid, srUuid, strategy: 'replay' });
    expect(replay.status, replay.cause).toBe('SUCCEEDED');
    // The full's layer is above the threshold: the whole chain replays in one Fargate task, in order.
    expect(replay.statesEntered).toEqual(expect.arrayContaining(['ReplayOnFargate', 'CollectImportReplay']));
    expect(replay.statesEntered).not.toContain('ImportLayer');
    expect(replay.result!.layersApplied).toHaveLength(2);
    expect(world.sim.diskSha256(replay.result!.vdiUuid)).toBe(hashes.get(manifest.backupId));
    const merge = await world.restore({ vdiUuid: world.vdiUuid, srUuid, strategy: 'merge' });
    expect(merge.status, merge.cause).toBe('SUCCEEDED');
    expect(merge.statesEntered).toContain('ImportMergedOnFargate');
    expect(world.sim.diskSha256(merge.result!.vdiUuid)).toBe(hashes.get(manifest.backupId));
    world.sim.deleteVdi(replay.result!.vdiUuid);
    world.sim.deleteVdi(merge.result!.vdiUuid);
    await expectInvariants(world, hashes);
  });

  it('a Lambda export that times out is cleaned up, retried once on Fargate, and succeeds with no orphans', async () => {
    let armed = false;
    world = await startBackupWorld({
      vdi: { virtualSize: 64 * MiB, populate: 'generated' },
      target: {
        // Killed (SIGKILL, no clean-up of its own) once its multipart upload holds a part.
        simulateLambdaTimeout: {
          step: 'backup.export',
          killWhen: async () => {
            if (!armed) return new Promise<void>(() => undefined);
            for (;;) {
              const uploads = await world!.openUploads();
              if (uploads.length) return;
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          },
        },
      },
    });
    await backupAndRecord(world, hashes);
    armed = true;
    world.sim.injectFault({ kind: 'throttle', on: 'export', bytesPerSecond: 24 * MiB, times: 1 });
    const before = world.sim.transfers().length;
    const run = await world.backup({ vdiUuids: [world.vdiUuid], mode: 'full' });
    expect(run.status, run.cause).toBe('SUCCEEDED');
    // Retried once, as the host saw it: the killed export, then one that completed.
    const exports = world.sim
      .transfers()
      .slice(before)
      .filter((transfer) => transfer.direction === 'export');
    expect(exports.map((transfer) => transfer.outcome)).toEqual(['failure', 'success']);
    expect(run.statesEntered).toEqual(
      expect.arrayContaining(['Export', 'PrepareFargateRetry', 'ExportOnFargate']),
    );
    const manifest = (await world.manifests()).at(-1)!;
    expect(manifest.kind).toBe('full');
    hashes.set(manifest.backupId, world.sim.diskSha256(manifest.snapshotUuid));
    await expectInvariants(world, hashes);
  });
});

describe('the container entrypoint’s parameters', () => {
  const vdiField = transferFieldVariable('vdiUuid');
  const valid = {
    [TRANSFER_ENV.step]: 'backup.export',
    [vdiField]: '"x"',
    [transferFieldVariable('chain.chainKey')]: '"backups/.transfers/c.chain.json"',
    [TRANSFER_ENV.resultKey]: 'backups/.transfers/x.result',
  };
  it('parses the step, its input (one variable per field, nested by path) and the result key', () => {
    expect(parseTransferParameters(valid)).toEqual({
      step: 'backup.export',
      input: { vdiUuid: 'x', chain: { chainKey: 'backups/.transfers/c.chain.json' } },
      resultKey: 'backups/.transfers/x.result',
    });
  });
  it.each([
    [{ [TRANSFER_ENV.step]: undefined }, TRANSFER_ENV.step, /is missing. Set it to one of backup.export/],
    [{ [TRANSFER_ENV.step]: 'backup.login' }, TRANSFER_ENV.step, /is not a transfer step/],
    [
      { [vdiField]: undefined, [transferFieldVariable('chain.chainKey')]: undefined },
      `${TRANSFER_ENV.fieldPrefix}*`,
      /is missing/,
    ],
    [{ [vdiField]: '{' }, vdiField, /is not JSON/],
    [{ [TRANSFER_ENV.resultKey]: '' }, TRANSFER_ENV.resultKey, /is missing/],
  ])('names a bad parameter: %j', (change, field, message) => {
    try {
      parseTransferParameters({ ...valid, ...change });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InputValidationError);
      expect((error as InputValidationError).field).toBe(field);
      expect((error as Error).message).toMatch(message);
    }
  });
});

describe('the Fargate transfer in the template', () => {
  const { stack } = buildApp(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), { nagChecks: false });
  const template = Template.fromStack(stack);

  it('holds an arm64 Fargate task definition running the transfer container', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      NetworkMode: 'awsvpc',
      Cpu: '2048',
      Memory: '4096',
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'transfer',
          ReadonlyRootFilesystem: true,
          LogConfiguration: Match.anyValue(),
        }),
      ],
    });
  });

  it('starts it with ecs:runTask.sync from both workflows, in its subnets and security group', () => {
    const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
    for (const machine of machines) {
      const definition = JSON.stringify(machine.Properties.DefinitionString);
      expect(definition).toContain(':states:::ecs:runTask.sync');
      expect(definition).toContain('AssignPublicIp');
      expect(definition).toContain('SecurityGroups');
    }
  });

  it('hands the task ids only: never the session, never the whole state (RunTask parameters reach CloudTrail)', () => {
    const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
    let overrides = 0;
    for (const machine of machines) {
      const definition = JSON.stringify(machine.Properties.DefinitionString);
      for (const match of definition.matchAll(/\\"Environment\\":\[(.*?)\]/g)) {
        overrides++;
        expect(match[1]).not.toContain('session');
        expect(match[1]).not.toMatch(/States\.JsonToString\(\$\)/);
        expect(match[1]).not.toContain('layers');
      }
    }
    // ExportOnFargate, MergeOnFargate, ImportLayerOnFargate, ImportMergedOnFargate, ReplayOnFargate,
    // VmDiskImportOnFargate.
    expect(overrides).toBe(6);
  });

  it('passes the configured Fargate threshold and the allocator setting to every transfer process', () => {
    const functions = Object.values(template.findResources('AWS::Lambda::Function')).filter(
      (fn) => fn.Properties.Environment?.Variables?.VDI_VAULT_STEP,
    );
    for (const fn of functions) {
      expect(fn.Properties.Environment.Variables.VDI_VAULT_FARGATE_THRESHOLD).toBe(String(32 * 1024 ** 3));
      // Part buffers go back to the OS when freed: memory stays flat with disk size.
      expect(fn.Properties.Environment.Variables.MALLOC_MMAP_THRESHOLD_).toBe('4194304');
      expect(fn.Properties.Environment.Variables.NODE_OPTIONS).toBe('--max-semi-space-size=8');
    }
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([{ Name: 'MALLOC_MMAP_THRESHOLD_', Value: '4194304' }]),
        }),
      ],
    });
  });

  it('gives the task role only the catalog objects, the pool secrets and its progress records', () => {
    const policies = template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^TransferTaskDefinitionTaskRole') }] },
    });
    const actions = Object.values(policies)
      .flatMap((policy) => policy.Properties.PolicyDocument.Statement as { Action: string | string[] }[])
      .flatMap((statement) => statement.Action)
      .sort();
    expect(actions).toEqual([
      // Progress records: UpdateItem on the lock table, its key through DynamoDB.
      'dynamodb:UpdateItem',
      'kms:Decrypt',
      'kms:Decrypt',
      'kms:GenerateDataKey',
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:GetObject',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:PutObject',
      'secretsmanager:GetSecretValue',
    ]);
  });
});
