import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { JOB, POOL, resourceOf, synth, type Synthesized } from './synth.ts';

let deployed: Synthesized;

beforeAll(() => {
  deployed = synth(
    {
      pools: [POOL],
      jobs: [JOB],
      notifications: { emails: ['ops@example.com'] },
      alarms: { noSuccessfulBackupHours: 30 },
    },
    { nagChecks: false },
  );
});

const topicRef = { Ref: Match.stringLikeRegexp('^NotificationsTopic') };

describe('notifications', () => {
  it('has a KMS-encrypted, TLS-only topic with the e-mail subscriptions', () => {
    const { template } = deployed;
    template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Key'), 'Arn'] },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
      TopicArn: topicRef,
    });
  });

  it('notifies the topic of failed, timed-out or aborted executions of either state machine', () => {
    deployed.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: {
          status: ['FAILED', 'TIMED_OUT', 'ABORTED'],
          stateMachineArn: [
            { Ref: Match.stringLikeRegexp('^BackupStateMachine') },
            { Ref: Match.stringLikeRegexp('^RestoreStateMachine') },
          ],
        },
      },
      Targets: [Match.objectLike({ Arn: topicRef })],
    });
  });

  it('alarms on failed executions and on no successful backup within the window', () => {
    const { template } = deployed;
    const failed = resourceOf(template, 'AWS::CloudWatch::Alarm', 'NotificationsBackupExecutionsFailed');
    expect(failed.Properties).toMatchObject({
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
      AlarmActions: [{ Ref: expect.stringMatching(/^NotificationsTopic/) }],
    });
    expect(JSON.stringify(failed.Properties.Metrics)).toContain('ExecutionsFailed');
    resourceOf(template, 'AWS::CloudWatch::Alarm', 'NotificationsRestoreExecutionsFailed');
    const quiet = resourceOf(template, 'AWS::CloudWatch::Alarm', 'NotificationsNoSuccessfulBackup');
    expect(quiet.Properties).toMatchObject({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsSucceeded',
      Period: 30 * 3600,
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
    });
  });

  it('lets CloudWatch and EventBridge publish to the encrypted topic', () => {
    const key = resourceOf(deployed.template, 'AWS::KMS::Key', 'Key');
    const policy = JSON.stringify(key.Properties.KeyPolicy);
    expect(policy).toContain('cloudwatch.amazonaws.com');
    expect(policy).toContain('events.amazonaws.com');
  });

  it('publishes to an existing topic instead, and skips the quiet alarm without jobs', () => {
    const arn = 'arn:aws:sns:eu-west-1:123456789012:ops';
    const { template } = synth(
      { pools: [POOL], notifications: { existingTopicArn: arn } },
      { nagChecks: false },
    );
    template.resourceCountIs('AWS::SNS::Topic', 0);
    // Failed backups, failed restores, and the two dead-letter queues (notifications, triggers).
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [arn] });
  });
});
