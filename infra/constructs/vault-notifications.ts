import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';

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
}

const FAILED_STATUSES = ['FAILED', 'TIMED_OUT', 'ABORTED'];

/**
 * The SNS topic operators hear from: every backup or restore execution that fails, times out or is aborted
 * (an EventBridge rule on Step Functions status changes), and CloudWatch alarms on failures and on no
 * successful backup within a window.
 */
export class VaultNotifications extends Construct {
  readonly topic: sns.ITopic;
  readonly executionFailedRule: events.Rule;
  readonly alarms: readonly cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: VaultNotificationsProps) {
    super(scope, id);
    const account = Stack.of(this).account;
    this.topic =
      props.topic ??
      new sns.Topic(this, 'Topic', {
        displayName: 'vdi-vault notifications',
        masterKey: props.key,
        enforceSSL: true,
      });
    if (!props.topic) {
      for (const service of ['events.amazonaws.com', 'cloudwatch.amazonaws.com']) {
        props.key.addToResourcePolicy(
          new iam.PolicyStatement({
            sid: `PublishToEncryptedTopicFrom${service.split('.')[0]}`,
            principals: [new iam.ServicePrincipal(service)],
            actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
            resources: ['*'],
            conditions: { StringEquals: { 'aws:SourceAccount': account } },
          }),
        );
      }
    }
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
    this.alarms = alarms;
  }
}
