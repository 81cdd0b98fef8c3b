import { App } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { JOB, POOL } from './synth.ts';

function app(config?: unknown) {
  const context: Record<string, unknown> = { 'aws:cdk:bundling-stacks': [] };
  if (config !== undefined) context.config = config;
  return buildApp(new App({ context }));
}

describe('cdk-nag AwsSolutions', () => {
  it.each([
    ['the example', undefined],
    [
      'every option',
      {
        pools: [POOL],
        jobs: [JOB],
        network: {
          vpcId: 'vpc-0123456789abcdef0',
          subnetIds: ['subnet-0123456789abcdef0'],
        },
        bucket: { objectLock: { mode: 'GOVERNANCE', days: 7 }, accessLogs: true },
        notifications: { emails: ['ops@example.com'] },
      },
    ],
    [
      'existing bucket, key, topic and secret ARN',
      {
        pools: [{ ...POOL, secret: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lab-AbCdEf' }],
        bucket: {
          existingBucketName: 'corp-backups',
          existingKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        },
        notifications: { existingTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops' },
      },
    ],
  ])('finds nothing unacknowledged on %s', (_name, config) => {
    expect(() => app(config).app.synth()).not.toThrow();
  });

  it('is really on: an unacknowledged finding fails synth', () => {
    const { app: built, stack } = app();
    new s3.Bucket(stack, 'Careless');
    expect(() => built.synth()).toThrow(/AwsSolutions-S1/);
  });
});
