import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { parseConfig } from '../../infra/config/config.ts';

let template: Template;

beforeAll(() => {
  // cdk-nag runs here as in `cdk synth`: an unacknowledged finding makes synth throw.
  const { stack } = buildApp(new App({ context: { 'aws:cdk:bundling-stacks': [] } }));
  template = Template.fromStack(stack);
});

function policyStatementsOf(functionLogicalIdPrefix: string): unknown[] {
  const roles = template.findResources('AWS::IAM::Role');
  const roleId = Object.keys(roles).find((id) =>
    id.startsWith(`Backup${functionLogicalIdPrefix}ServiceRole`),
  );
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((policy) => JSON.stringify(policy.Properties.Roles).includes(String(roleId)))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as unknown[]);
}

describe('backup stack', () => {
  it('runs a Standard state machine that logs without execution data and traces', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: Match.objectLike({ IncludeExecutionData: false, Level: 'ALL' }),
    });
  });

  it('runs every step as Node.js 24 on arm64 with JSON logs', () => {
    const functions = template.findResources('AWS::Lambda::Function');
    const steps = Object.values(functions).filter(
      (fn) => fn.Properties.Environment?.Variables?.VDI_VAULT_STEP,
    );
    expect(steps.map((fn) => fn.Properties.Environment.Variables.VDI_VAULT_STEP).sort()).toEqual(
      [
        'backup.cleanup',
        'backup.commit',
        'backup.createTask',
        'backup.export',
        'backup.failureCleanup',
        'backup.login',
        'backup.logout',
        'backup.plan',
        'backup.snapshot',
      ].sort(),
    );
    for (const fn of steps) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        LoggingConfig: { LogFormat: 'JSON' },
      });
    }
    const exportFn = steps.find(
      (fn) => fn.Properties.Environment.Variables.VDI_VAULT_STEP === 'backup.export',
    );
    expect(exportFn!.Properties.Timeout).toBe(900);
  });

  it('keeps backups in a private, TLS-only bucket that aborts stale uploads after a day', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('grants each function only what it uses', () => {
    const actions = (prefix: string) =>
      policyStatementsOf(prefix)
        .flatMap((statement) => (statement as { Action: string | string[] }).Action)
        .sort();
    expect(actions('LoginFunction')).toEqual([
      'secretsmanager:DescribeSecret',
      'secretsmanager:GetSecretValue',
    ]);
    expect(actions('PlanFunction')).toEqual(['s3:GetObject', 's3:ListBucket']);
    expect(actions('ExportFunction')).toEqual(['s3:AbortMultipartUpload', 's3:PutObject']);
    expect(actions('CommitFunction')).toEqual(['s3:GetObject', 's3:PutObject']);
    expect(actions('FailureCleanupFunction')).toEqual([
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:ListBucketMultipartUploads',
    ]);
    for (const prefix of ['SnapshotFunction', 'CreateTaskFunction', 'CleanupFunction', 'LogoutFunction']) {
      expect(actions(prefix)).toEqual([]);
    }
  });
});

describe('configuration', () => {
  it('names the field of each error', () => {
    const pool = { name: 'lab', url: 'https://xcp.example', secret: 's' };
    expect(() => parseConfig({ pools: [] })).toThrow(/^config pools: /);
    expect(() => parseConfig({ pools: [{ ...pool, url: 'xcp' }] })).toThrow(/^config pools\[0\]\.url: /);
    expect(() => parseConfig({ pools: [pool, pool] })).toThrow(
      /^config pools\[1\]\.name: "lab" is used twice/,
    );
    expect(() => parseConfig({ pools: [{ ...pool, secret: '' }] })).toThrow(/^config pools\[0\]\.secret: /);
    expect(() => parseConfig({ pools: [pool], concurrency: 0 })).toThrow(/^config concurrency: /);
    expect(parseConfig({ pools: [pool] }).pools[0]!.name).toBe('lab');
  });
});
