import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { VdiVault } from '../../infra/constructs/vdi-vault.ts';

describe('VdiVault in another CDK app', () => {
  it('builds from props alone and exposes the state machines, bucket, key and topic', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new Stack(app, 'Other');
    const secret = secretsmanager.Secret.fromSecretNameV2(stack, 'Secret', 'pool/creds');
    const vault = new VdiVault(stack, 'Vault', {
      pools: [{ name: 'prod', url: 'https://xcp.prod.example', secret }],
      prefix: 'vdi',
    });
    expect(vault.backupStateMachine).toBeDefined();
    expect(vault.restoreStateMachine).toBeDefined();
    expect(vault.bucket).toBeInstanceOf(s3.Bucket);
    expect(vault.key.keyArn).toBeDefined();
    expect(vault.topic.topicArn).toBeDefined();
    // Backups failed, restores failed, and a message in either dead-letter queue.
    expect(vault.alarms).toHaveLength(4);
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 2);
    expect(JSON.stringify(template.findResources('AWS::IAM::Policy'))).toContain('/vdi/*');
  });

  it('refuses Object Lock on an existing bucket, and an unknown default pool', () => {
    const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Other');
    const secret = secretsmanager.Secret.fromSecretNameV2(stack, 'Secret', 'pool/creds');
    const pools = [{ name: 'prod', url: 'https://xcp.prod.example', secret }];
    expect(
      () =>
        new VdiVault(stack, 'Locked', {
          pools,
          existingBucket: s3.Bucket.fromBucketName(stack, 'Existing', 'corp-backups'),
          objectLock: { mode: 'GOVERNANCE', days: 1 },
        }),
    ).toThrow(/objectLock/);
    expect(() => new VdiVault(stack, 'Unknown', { pools, defaultPool: 'lab' })).toThrow(/defaultPool/);
  });
});
