import { ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { acknowledgeDeadLetterQueue } from '../nag-acknowledgements.ts';

export interface VaultNotificationsProps {
  /**
   * Encrypts a new topic; EventBridge and CloudWatch are allowed to use it for publishing. (An imported key's
   * policy cannot be changed here: grant them yourself.)
   */
  readonly key: kms.IKey;
  readonly backupStateMachine: sfn.IStateMachine;
  readonly restoreStateMachine: sfn.IStateMachine;
  /** Publish to this topic instead. Its key policy (if encrypted) must let EventBridge and CloudWatch use it. Default: a new topic. */
  readonly topic?: sns.ITopic;
  /** Subscribed by e-mail. Default none. */
  readonly emails?: readonly string[];
  /**
   * Alarm when no backup execution succeeded for this long (1 to 168 hours). Default: no such alarm. Only
   * meaningful when schedules start backups regularly.
   */
  readonly noSuccessfulBackupWithin?: Duration;
  /**
   * Other dead-letter queues to alarm on (any visible message), by a name for the alarm's id, e.g. the
   * triggers' (`BackupTriggers.deadLetterQueue`). This construct's own (the failure rule's) always is.
   */
  readonly deadLetterQueues?: Readonly<Record<string, sqs.IQueue>>;
}

/** Dead letters are kept this long (SQS's maximum). */
export const DEAD_LETTER_RETENTION = Duration.days(14);

const eventBridgeDeadLetterKeys = new WeakSet<kms.IKey>();

/**
 * A dead-letter queue for EventBridge or Scheduler targets: SQS-KMS with the deployment's key, TLS only,
 * letters kept 14 days. EventBridge sends dead letters as its service principal, so the key policy (when the
 * key is ours) lets `events.amazonaws.com` use the key for this account's queues (the encryption context SQS
 * uses is `aws:sqs:arn`; the queue's own ARN can't be named there: the queue depends on the key). Scheduler
 * sends them with the schedule's role, which needs its own grant (see `BackupTriggers`).
 */
export function createDeadLetterQueue(scope: Construct, id: string, key: kms.IKey): sqs.Queue {
  const queue = new sqs.Queue(scope, id, {
    encryption: sqs.QueueEncryption.KMS,
    encryptionMasterKey: key,
    enforceSSL: true,
    retentionPeriod: DEAD_LETTER_RETENTION,
  });
  acknowledgeDeadLetterQueue(queue);
  if (!eventBridgeDeadLetterKeys.has(key)) {
    eventBridgeDeadLetterKeys.add(key);
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DeadLettersFromEventBridge',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:sqs:arn': Stack.of(scope).formatArn({
              service: 'sqs',
              resource: '*',
              arnFormat: ArnFormat.NO_RESOURCE_NAME,
            }),
          },
        },
      }),
    );
  }
  return queue;
}

const FAILED_STATUSES = ['FAILED', 'TIMED_OUT', 'ABORTED'];

/**
 * The SNS topic operators hear from: every backup or restore execution that fails, times out or is aborted
 * (an EventBridge rule on Step Functions status changes), and CloudWatch alarms on failures, on no
 * successful backup within a window, and on dead letters.
 *
 * Who may publish to a new topic: its policy replaces SNS's default one (which let the account's
 * principals and, through them, CloudWatch publish), so it names both services. EventBridge gets
 * `sns:Publish` and the key from the rule target (CDK's grant, without conditions: AWS documents that
 * EventBridge's KMS requests for an encrypted topic carry no `aws:SourceAccount`/`aws:SourceArn`).
 * CloudWatch gets `sns:Publish` for this account's alarms (`aws:SourceArn`, `aws:SourceAccount`) and the key
 * only to encrypt messages of SNS topics in this account and region (`kms:EncryptionContext:aws:sns:topicArn`;
 * the topic's own ARN can't be named there: the topic depends on the key).
 */
export class VaultNotifications extends Construct {
  readonly topic: sns.ITopic;
  readonly executionFailedRule: events.Rule;
  readonly alarms: readonly cloudwatch.Alarm[];
  /** Where failure events that could not be delivered to the topic go. */
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: VaultNotificationsProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.topic =
      props.topic ??
      new sns.Topic(this, 'Topic', {
        displayName: 'vdi-vault notifications',
        masterKey: props.key,
        enforceSSL: true,
      });
    if (!props.topic) {
      (this.topic as sns.Topic).addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'PublishFromCloudWatchAlarms',
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['sns:Publish'],
          resources: [this.topic.topicArn],
          conditions: {
            ArnLike: {
              'aws:SourceArn': stack.formatArn({
                service: 'cloudwatch',
                resource: 'alarm',
                resourceName: '*',
                arnFormat: ArnFormat.COLON_RESOURCE_NAME,
              }),
            },
            StringEquals: { 'aws:SourceAccount': stack.account },
          },
        }),
      );
      props.key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'PublishToEncryptedTopicFromCloudWatch',
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
          resources: ['*'],
          conditions: {
            ArnLike: {
              'kms:EncryptionContext:aws:sns:topicArn': stack.formatArn({
                service: 'sns',
                resource: '*',
                arnFormat: ArnFormat.NO_RESOURCE_NAME,
              }),
            },
          },
        }),
      );
    }
    this.deadLetterQueue = createDeadLetterQueue(this, 'DeadLetters', props.key);
    for (const email of props.emails ?? [])
      this.topic.addSubscription(new subscriptions.EmailSubscription(email));

    this.executionFailedRule = new events.Rule(this, 'ExecutionFailed', {
      description: 'Notifies the vdi-vault topic of failed, timed-out or aborted executions',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: {
          status: FAILED_STATUSES,
          stateMachineArn: [
            props.backupStateMachine.stateMachineArn,
            props.restoreStateMachine.stateMachineArn,
          ],
        },
      },
      targets: [
        new targets.SnsTopic(this.topic, {
          deadLetterQueue: this.deadLetterQueue,
          message: events.RuleTargetInput.fromText(
            `vdi-vault: execution ${events.EventField.fromPath('$.detail.name')} ` +
              `${events.EventField.fromPath('$.detail.status')} ` +
              `(${events.EventField.fromPath('$.detail.stateMachineArn')}). ` +
              `Error: ${events.EventField.fromPath('$.detail.error')}. ` +
              `Cause: ${events.EventField.fromPath('$.detail.cause')}`,
          ),
        }),
      ],
    });

    const action = new cloudwatchActions.SnsAction(this.topic);
    const alarms: cloudwatch.Alarm[] = [];
    for (const [name, machine] of [
      ['Backup', props.backupStateMachine],
      ['Restore', props.restoreStateMachine],
    ] as const) {
      const period = Duration.minutes(5);
      const alarm = new cloudwatch.MathExpression({
        label: `${name} executions failed, timed out or aborted`,
        expression: 'FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)',
        usingMetrics: {
          failed: machine.metricFailed({ period, statistic: 'Sum' }),
          timedOut: machine.metricTimedOut({ period, statistic: 'Sum' }),
          aborted: machine.metricAborted({ period, statistic: 'Sum' }),
        },
        period,
      }).createAlarm(this, `${name}ExecutionsFailed`, {
        alarmDescription: `A vdi-vault ${name.toLowerCase()} execution failed, timed out or was aborted.`,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm.addAlarmAction(action);
      alarms.push(alarm);
    }
    if (props.noSuccessfulBackupWithin) {
      const window = props.noSuccessfulBackupWithin;
      const alarm = props.backupStateMachine
        .metricSucceeded({ period: window, statistic: 'Sum' })
        .createAlarm(this, 'NoSuccessfulBackup', {
          alarmDescription: `No vdi-vault backup execution succeeded in ${window.toHours()} hours.`,
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
          evaluationPeriods: 1,
          // No data means no execution succeeded at all.
          treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        });
      alarm.addAlarmAction(action);
      alarm.addOkAction(action);
      alarms.push(alarm);
    }
    for (const [name, queue] of [
      ['Notification', this.deadLetterQueue] as const,
      ...Object.entries(props.deadLetterQueues ?? {}),
    ]) {
      const alarm = queue
        .metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' })
        .createAlarm(this, `${name}DeadLetters`, {
          alarmDescription: `vdi-vault: a ${name.toLowerCase()} event could not be delivered; it waits in the dead-letter queue ${queue.node.path}.`,
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
      alarm.addAlarmAction(action);
      alarms.push(alarm);
    }
    this.alarms = alarms;
  }
}
