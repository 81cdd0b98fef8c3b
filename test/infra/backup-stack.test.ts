import { beforeAll, describe, expect, it } from 'vitest';
import { synth, type Synthesized } from './synth.ts';

let example: Synthesized;

beforeAll(() => {
  // The shipped example config, with cdk-nag as in `cdk synth`: an unacknowledged finding throws here.
  example = synth();
});

describe('the app on the example config', () => {
  it('yields what the issue asks of `cdk synth`', () => {
    const { template } = example;
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 2);
    template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    expect(Object.keys(template.findResources('AWS::CloudWatch::Alarm')).length).toBeGreaterThanOrEqual(1);
    // Backup Requested, the failure notifications, and the dashboard's hourly restore point ages.
    expect(Object.keys(template.findResources('AWS::Events::Rule')).length).toBe(3);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('keeps the logical ids the local runner looks for', () => {
    const machines = Object.keys(example.template.findResources('AWS::StepFunctions::StateMachine'));
    expect(machines.some((id) => id.startsWith('BackupStateMachine'))).toBe(true);
    expect(machines.some((id) => id.startsWith('RestoreStateMachine'))).toBe(true);
  });

  it('runs every step as Node.js 24 on arm64 with JSON logs, tracing and Powertools settings', () => {
    const functions = Object.values(example.template.findResources('AWS::Lambda::Function'));
    const steps = functions.filter((fn) => fn.Properties.Environment?.Variables?.VDI_VAULT_STEP);
    expect(steps.map((fn) => fn.Properties.Environment.Variables.VDI_VAULT_STEP).sort()).toEqual(
      [
        'backup.cleanup',
        'backup.collectExport',
        'backup.collectMerge',
        'backup.commit',
        'backup.commitVms',
        'backup.createTask',
        'backup.export',
        'backup.failureCleanup',
        'backup.login',
        'backup.merge',
        'backup.logout',
        'backup.plan',
        'backup.prepareFargateRetry',
        'backup.publishCatalogMetrics',
        'backup.snapshot',
        'backup.snapshotVms',
        'restore.cleanup',
        'restore.collectImport',
        'restore.createVdi',
        'restore.failureCleanup',
        'restore.importLayer',
        'restore.importMerged',
        'restore.login',
        'restore.logout',
        'restore.resolveChain',
        'restore.validate',
        'restore.resolveVm',
        'restore.createVm',
        'restore.attachVmDisk',
        'restore.finishVm',
        'restore.vmFailureCleanup',
      ].sort(),
    );
    for (const fn of functions) expect(fn.Properties.Runtime).toBe('nodejs24.x');
    for (const fn of steps) {
      expect(fn.Properties).toMatchObject({
        Architectures: ['arm64'],
        LoggingConfig: { LogFormat: 'JSON' },
        TracingConfig: { Mode: 'Active' },
        Environment: {
          Variables: expect.objectContaining({
            POWERTOOLS_SERVICE_NAME: 'vdi-vault',
            POWERTOOLS_METRICS_NAMESPACE: 'VdiVault',
            VDI_VAULT_PREFIX: 'backups',
            VDI_VAULT_DEFAULT_POOL: 'lab',
          }),
        },
      });
      expect(fn.Properties.VpcConfig).toBeUndefined();
      // Without Object Lock no checksum is forced on uploads.
      expect(fn.Properties.Environment.Variables.VDI_VAULT_UPLOAD_CHECKSUM).toBeUndefined();
    }
    const exportFn = steps.find(
      (fn) => fn.Properties.Environment.Variables.VDI_VAULT_STEP === 'backup.export',
    );
    expect(exportFn!.Properties.Timeout).toBe(900);
  });

  it('outputs the state machine ARNs, the bucket name, the topic ARN, and what the CLI reads', () => {
    const outputs = example.template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual(
      [
        'BackupStateMachineArn',
        'BucketName',
        'CatalogPrefix',
        'DashboardUrl',
        'DefaultPool',
        'KeyArn',
        'OperatorPolicyArn',
        'ProgressTableName',
        'RestoreStateMachineArn',
        'TopicArn',
      ].sort(),
    );
    expect(outputs.DefaultPool!.Value).toBe('lab');
    expect(outputs.CatalogPrefix!.Value).toBe('backups');
    expect(outputs.BackupStateMachineArn!.Value).toEqual({
      Ref: expect.stringMatching(/^BackupStateMachine/),
    });
  });

  it('passes the pools to the functions without credentials: only the secret ARN', () => {
    const functions = Object.values(example.template.findResources('AWS::Lambda::Function'));
    const pools = JSON.stringify(functions[0]!.Properties.Environment.Variables.VDI_VAULT_POOLS);
    expect(pools).toContain('https://xcp-master.example.com');
    expect(pools).toContain(':secret:vdi-vault/lab');
    expect(pools).not.toMatch(/password/i);
  });
});
