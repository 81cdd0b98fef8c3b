import type { RetentionPolicy } from '../../lambdas/catalog/retention.ts';
import { Duration, Stack, TimeZone } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { createDeadLetterQueue } from './vault-notifications.ts';

/**
 * A scheduled backup: its schedule starts the backup state machine with
 * `{job, vdiUuids?, vmUuids?, tags?, pool, mode, concurrency?, retention?}`. A job by tags finds its VMs at each run.
 */
export interface BackupJob {
  /** Names the schedule's construct id; letters, digits, dash, underscore. */
  readonly name: string;
  /** One of the pools' names. */
  readonly pool: string;
  readonly vdiUuids?: readonly string[];
  /** Whole VMs (a VM restore point each). */
  readonly vmUuids?: readonly string[];
  /** Every VM carrying one of these tags when the schedule fires. */
  readonly tags?: readonly string[];
  /** EventBridge Scheduler expression: `cron(0 2 * * ? *)`, `rate(12 hours)` or `at(2026-01-01T00:00:00)`. */
  readonly schedule: string;
  /** IANA zone the expression is read in. Default `UTC`. */
  readonly timezone?: string;
  /** Default `auto`. */
  readonly mode?: 'auto' | 'full';
  /** VDIs backed up at once. Default: the deployment's concurrency. */
  readonly concurrency?: number;
  /** Keep the newest `keep` restore points, forever incremental or a full every `fullEvery`. Default: keep all. */
  readonly retention?: RetentionPolicy;
  /** A disabled job keeps its schedule, switched off. Default true. */
  readonly enabled?: boolean;
}

/** The source and detail-type of the custom event that requests a backup. */
export const BACKUP_REQUEST_EVENT = { source: 'vdi-vault', detailType: 'Backup Requested' } as const;

export interface BackupTriggersProps {
  readonly stateMachine: sfn.IStateMachine;
  /** The key the state machine is encrypted with: starting an execution encrypts its input. */
  readonly key: kms.IKey;
  /** Default: none. */
  readonly jobs?: readonly BackupJob[];
  /** The bus the `Backup Requested` rule listens on. Default: the account's default bus. */
  readonly eventBus?: events.IEventBus;
}

/**
 * What starts backups: an EventBridge Scheduler schedule per job, and a rule on the custom event
 * `{source: "vdi-vault", detail-type: "Backup Requested", detail: {vdiUuids | vmUuids | tags, pool, mode}}` that starts the
 * backup state machine with the detail as its input. A start that still fails after the retries (3, within
 * an hour) lands in the dead-letter queue, which `VaultNotifications` alarms on.
 */
export class BackupTriggers extends Construct {
  readonly schedules: Readonly<Record<string, scheduler.Schedule>>;
  readonly backupRequestRule: events.Rule;
  /** Assumed by EventBridge Scheduler and EventBridge to start executions, and nothing else. */
  readonly role: iam.Role;
  /** Backup starts no schedule or event could deliver. */
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: BackupTriggersProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const account = stack.account;
    this.deadLetterQueue = createDeadLetterQueue(this, 'DeadLetters', props.key);
    this.role = new iam.Role(this, 'StartBackupRole', {
      description: 'Starts vdi-vault backup executions from schedules and Backup Requested events',
      assumedBy: new iam.CompositePrincipal(
        new iam.ServicePrincipal('scheduler.amazonaws.com', {
          conditions: { StringEquals: { 'aws:SourceAccount': account } },
        }),
        new iam.ServicePrincipal('events.amazonaws.com', {
          conditions: { StringEquals: { 'aws:SourceAccount': account } },
        }),
      ),
    });
    props.stateMachine.grantStartExecution(this.role);
    this.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [props.key.keyArn],
        conditions: {
          StringEquals: {
            'kms:EncryptionContext:aws:states:stateMachineArn': props.stateMachine.stateMachineArn,
          },
        },
      }),
    );

    // Scheduler sends a schedule's dead letters with the schedule's role: SQS then needs the key for it.
    if (props.jobs?.length) {
      this.role.addToPolicy(
        new iam.PolicyStatement({
          actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
          resources: [props.key.keyArn],
          conditions: {
            StringEquals: {
              'kms:ViaService': `sqs.${stack.region}.amazonaws.com`,
              'kms:EncryptionContext:aws:sqs:arn': this.deadLetterQueue.queueArn,
            },
          },
        }),
      );
    }

    const schedules: Record<string, scheduler.Schedule> = {};
    for (const job of props.jobs ?? []) {
      const input = {
        // Names the run's metrics by job (docs/design.md § Dashboard and metric names).
        job: job.name,
        ...(job.vdiUuids?.length ? { vdiUuids: [...job.vdiUuids] } : {}),
        ...(job.vmUuids?.length ? { vmUuids: [...job.vmUuids] } : {}),
        ...(job.tags?.length ? { tags: [...job.tags] } : {}),
        pool: job.pool,
        mode: job.mode ?? 'auto',
        ...(job.concurrency ? { concurrency: job.concurrency } : {}),
        ...(job.retention
          ? {
              retention: {
                keep: job.retention.keep,
                ...(job.retention.fullEvery !== undefined ? { fullEvery: job.retention.fullEvery } : {}),
              },
            }
          : {}),
      };
      schedules[job.name] = new scheduler.Schedule(this, `Job-${job.name}`, {
        description: describeJob(job),
        schedule: scheduler.ScheduleExpression.expression(job.schedule, TimeZone.of(job.timezone ?? 'UTC')),
        enabled: job.enabled ?? true,
        timeWindow: scheduler.TimeWindow.off(),
        target: new schedulerTargets.StepFunctionsStartExecution(props.stateMachine, {
          role: this.role,
          input: scheduler.ScheduleTargetInput.fromObject(input),
          retryAttempts: 3,
          maxEventAge: Duration.hours(1),
          deadLetterQueue: this.deadLetterQueue,
        }),
      });
    }
    this.schedules = schedules;

    this.backupRequestRule = new events.Rule(this, 'BackupRequested', {
      description: 'Starts a vdi-vault backup: detail {vdiUuids?, vmUuids?, tags?, pool?, mode?}',
      ...(props.eventBus ? { eventBus: props.eventBus } : {}),
      eventPattern: {
        source: [BACKUP_REQUEST_EVENT.source],
        detailType: [BACKUP_REQUEST_EVENT.detailType],
        // Any selection; the workflow's Login names what is wrong with it.
        detail: {
          $or: [
            { vdiUuids: [{ exists: true }] },
            { vmUuids: [{ exists: true }] },
            { tags: [{ exists: true }] },
          ],
        },
      },
      targets: [
        new targets.SfnStateMachine(props.stateMachine, {
          role: this.role,
          input: events.RuleTargetInput.fromEventPath('$.detail'),
          retryAttempts: 3,
          maxEventAge: Duration.hours(1),
          deadLetterQueue: this.deadLetterQueue,
        }),
      ],
    });
  }
}

function describeJob(job: BackupJob): string {
  const chosen = [
    ...(job.vdiUuids?.length ? [`${job.vdiUuids.length} VDI(s)`] : []),
    ...(job.vmUuids?.length ? [`${job.vmUuids.length} VM(s)`] : []),
    ...(job.tags?.length ? [`VMs tagged ${job.tags.join(', ')}`] : []),
  ];
  const parts = [`vdi-vault job ${job.name}: ${chosen.join(' and ')} of pool ${job.pool}`];
  if (job.concurrency !== undefined) parts.push(`concurrency ${job.concurrency}`);
  if (job.retention)
    parts.push(
      `retention keep ${job.retention.keep}, ` +
        (job.retention.fullEvery !== undefined
          ? `full every ${job.retention.fullEvery}`
          : 'forever incremental'),
    );
  return parts.join('; ').slice(0, 512);
}
