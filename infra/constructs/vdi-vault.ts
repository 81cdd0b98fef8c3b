import { CfnOutput, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as events from 'aws-cdk-lib/aws-events';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import {
  DEFAULT_BACKUP_CONCURRENCY,
  DEFAULT_CATALOG_PREFIX,
  DEFAULT_FARGATE_THRESHOLD_BYTES,
  DEFAULT_NO_SUCCESSFUL_BACKUP_HOURS,
} from '../../lambdas/runtime/defaults.ts';
import { TRANSFER_MEMORY_MIB, transferSteps } from '../../lambdas/runtime/step-table.ts';
import { PROGRESS_TABLE_OUTPUT } from '../../lambdas/shared/transfer-progress.ts';
import { acknowledgeFindings } from '../nag-acknowledgements.ts';
import { BackupTriggers, type BackupJob } from './backup-triggers.ts';
import { BackupWorkflow } from './backup-workflow.ts';
import { grantCatalogAccess, type CatalogTarget } from './catalog-access.ts';
import { createLockTable } from './lock-table.ts';
import { createOperatorPolicy } from './operator-policy.ts';
import { poolsEnvironment, type VaultPool } from './pool-environment.ts';
import { RestoreWorkflow } from './restore-workflow.ts';
import { TransferTask } from './transfer-task.ts';
import { setStepFunctionDefaults, type StepFunctionNetwork } from './step-function.ts';
import { createVaultBucket, type ObjectLockRetentionProps } from './vault-bucket.ts';
import { VaultNotifications } from './vault-notifications.ts';
import { VaultDashboard } from './vault-dashboard.ts';
import { createWorkflowStateMachine } from './workflow-state-machine.ts';

export type { BackupJob } from './backup-triggers.ts';
export type { VaultPool } from './pool-environment.ts';
export type { ObjectLockRetentionProps } from './vault-bucket.ts';

/** Where the functions run. */
export interface VaultNetworkProps {
  readonly vpc: ec2.IVpc;
  /** Default: the VPC's private subnets with egress. */
  readonly subnets?: ec2.SubnetSelection;
  /**
   * Default: a new security group allowing egress only on TCP 443 and the pools' URL ports (XAPI, S3,
   * Secrets Manager, CloudWatch all speak HTTPS; DNS goes to the VPC resolver).
   */
  readonly securityGroups?: readonly ec2.ISecurityGroup[];
}

export interface VdiVaultProps {
  /** The pools backed up; at least one. */
  readonly pools: readonly VaultPool[];
  /** The pool used when an input names none. @default - the first pool */
  readonly defaultPool?: string;
  /** Key prefix of the catalog in the bucket. @default 'backups' */
  readonly prefix?: string;
  /** VDIs of one backup execution backed up at once. @default 2 */
  readonly concurrency?: number;
  /** Encrypts the bucket (unless existing), the state machines and the topic. @default - a new key, rotated yearly, retained */
  readonly encryptionKey?: kms.IKey;
  /** Back up into this bucket instead of a new one. @default - a new bucket (see `createVaultBucket`) */
  readonly existingBucket?: s3.IBucket;
  /** The key `existingBucket` encrypts with (SSE-KMS): the functions are allowed to use it. @default - none: SSE-S3 */
  readonly existingBucketKey?: kms.IKey;
  /** Object Lock default retention on the new bucket. @default - no Object Lock */
  readonly objectLock?: ObjectLockRetentionProps;
  /** Per-part checksum sent with uploads (Object Lock requires one). @default - 'CRC32' with `objectLock`, else none */
  readonly uploadChecksum?: 'CRC32' | 'SHA256';
  /** Server access logs for the new bucket. @default true */
  readonly serverAccessLogs?: boolean;
  /** Put the functions in a VPC to reach private management interfaces. @default - no VPC */
  readonly network?: VaultNetworkProps;
  /** Scheduled backups, one EventBridge Scheduler schedule each. @default - none */
  readonly jobs?: readonly BackupJob[];
  /** Notify this topic instead of a new one. @default - a new topic encrypted with the key */
  readonly topic?: sns.ITopic;
  /** E-mail addresses subscribed to the topic. @default - none */
  readonly notificationEmails?: readonly string[];
  /** Alarm when no backup succeeded for this long. @default - 26 hours when `jobs` are given, else no alarm */
  readonly noSuccessfulBackupWithin?: Duration;
  /** Transfers expected to move this many bytes run on Fargate instead of Lambda. @default 32 GiB */
  readonly fargateThresholdBytes?: number;
  /** A transfer whose host sends (or takes) nothing for this long fails. @default 60 seconds */
  readonly stallTimeout?: Duration;
  /** Memory of the export function (part size × parts in flight must fit). @default 1024 */
  readonly exportMemorySize?: number;
  /** Retention of the functions' log groups. @default logs.RetentionDays.ONE_WEEK */
  readonly functionLogRetention?: logs.RetentionDays;
  /** Bus the `Backup Requested` rule listens on. @default - the default event bus */
  readonly eventBus?: events.IEventBus;
  /** A CloudWatch dashboard of the vault (stack output `DashboardUrl`). @default true */
  readonly dashboard?: boolean;
}

const POWERTOOLS_NAMESPACE = 'VdiVault';

/**
 * vdi-vault: backups of XenServer / XCP-ng VDIs into S3. A backup and a restore state machine (Standard,
 * encrypted, logged without execution data) whose Lambdas each get only the S3 actions, prefix, key and
 * secrets they use; a private SSE-KMS bucket; a schedule per job and a `Backup Requested` event rule;
 * failure notifications and alarms on an SNS topic.
 *
 * The id `Default` keeps the resources' logical ids what the stack had before this construct existed (the
 * local runner finds `BackupStateMachine…` by it).
 */
export class VdiVault extends Construct {
  readonly key: kms.IKey;
  readonly bucket: s3.IBucket;
  readonly backupStateMachine: sfn.StateMachine;
  readonly restoreStateMachine: sfn.StateMachine;
  readonly topic: sns.ITopic;
  /** One backup per VDI at a time: the series lock table. */
  readonly lockTable: dynamodb.Table;
  readonly backupFunctions: Readonly<Record<string, lambda.IFunction>>;
  readonly restoreFunctions: Readonly<Record<string, lambda.IFunction>>;
  readonly schedules: Readonly<Record<string, scheduler.Schedule>>;
  readonly backupRequestRule: events.Rule;
  readonly alarms: readonly cloudwatch.Alarm[];
  /** The functions' security groups when they run in a VPC. */
  readonly securityGroups: readonly ec2.ISecurityGroup[];
  readonly prefix: string;
  /** Where exports and imports too large for a Lambda run: an ECS Fargate task. */
  readonly transferTask: TransferTask;
  /** What operators attach to use the `vdi-vault` CLI against this deployment (output `OperatorPolicyArn`). */
  readonly operatorPolicy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: VdiVaultProps) {
    super(scope, id);
    if (props.pools.length === 0) throw new Error('VdiVault: give at least one pool');
    const defaultPool = props.defaultPool ?? props.pools[0]!.name;
    if (!props.pools.some((pool) => pool.name === defaultPool)) {
      throw new Error(`VdiVault: defaultPool "${defaultPool}" is not one of the pools`);
    }
    if (props.objectLock && props.existingBucket) {
      throw new Error(
        'VdiVault: objectLock applies to a new bucket; set uploadChecksum for a locked existing one',
      );
    }
    const stack = Stack.of(this);
    this.prefix = props.prefix ?? DEFAULT_CATALOG_PREFIX;

    // Defaults first (construct context can only be set before any child exists); the step functions
    // created below read them. The security groups are filled in right after.
    const securityGroups: ec2.ISecurityGroup[] = [];
    const network: StepFunctionNetwork | undefined = props.network
      ? {
          vpc: props.network.vpc,
          subnets: props.network.subnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
          securityGroups,
        }
      : undefined;
    setStepFunctionDefaults(this, {
      ...(network ? { network } : {}),
      ...(props.functionLogRetention ? { logRetention: props.functionLogRetention } : {}),
    });
    if (props.network) securityGroups.push(...this.functionSecurityGroups(props.network, props.pools));
    this.securityGroups = securityGroups;

    const key =
      props.encryptionKey ??
      new kms.Key(this, 'Key', {
        description: 'vdi-vault: backups, workflow data and notifications',
        enableKeyRotation: true,
        removalPolicy: RemovalPolicy.RETAIN,
      });
    this.key = key;

    this.bucket =
      props.existingBucket ??
      createVaultBucket(this, {
        key,
        catalogPrefix: this.prefix,
        ...(props.objectLock ? { objectLock: props.objectLock } : {}),
        ...(props.serverAccessLogs !== undefined ? { accessLogs: props.serverAccessLogs } : {}),
      }).bucket;
    const bucketKey = props.existingBucket ? props.existingBucketKey : key;
    const catalog: CatalogTarget = {
      bucket: this.bucket,
      prefix: this.prefix,
      ...(bucketKey ? { key: bucketKey } : {}),
    };

    this.lockTable = createLockTable(this, key);

    const uploadChecksum = props.uploadChecksum ?? (props.objectLock ? 'CRC32' : undefined);
    const environment: Record<string, string> = {
      VDI_VAULT_BUCKET: this.bucket.bucketName,
      VDI_VAULT_PREFIX: this.prefix,
      VDI_VAULT_POOLS: poolsEnvironment(stack, props.pools),
      VDI_VAULT_DEFAULT_POOL: defaultPool,
      VDI_VAULT_LOCK_TABLE: this.lockTable.tableName,
      VDI_VAULT_CONCURRENCY: String(props.concurrency ?? DEFAULT_BACKUP_CONCURRENCY),
      VDI_VAULT_FARGATE_THRESHOLD: String(props.fargateThresholdBytes ?? DEFAULT_FARGATE_THRESHOLD_BYTES),
      VDI_VAULT_TRANSFER_MEMORY_MB: String(props.exportMemorySize ?? TRANSFER_MEMORY_MIB),
      ...(uploadChecksum ? { VDI_VAULT_UPLOAD_CHECKSUM: uploadChecksum } : {}),
      ...(props.stallTimeout
        ? { VDI_VAULT_STALL_TIMEOUT_MS: String(props.stallTimeout.toMilliseconds()) }
        : {}),
      POWERTOOLS_SERVICE_NAME: 'vdi-vault',
      POWERTOOLS_METRICS_NAMESPACE: POWERTOOLS_NAMESPACE,
    };

    // Transfers too large for a Lambda's 15 minutes run the same code as an ECS Fargate task.
    const transfer = new TransferTask(this, 'Transfer', {
      environment,
      egressPorts: [...new Set([443, ...props.pools.map((pool) => urlPort(pool.url))])],
      ...(props.network
        ? {
            vpc: props.network.vpc,
            subnets: props.network.subnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
            securityGroups: securityGroups,
          }
        : {}),
    });
    this.transferTask = transfer;
    for (const pool of props.pools) grantSecretValue(transfer.taskDefinition.taskRole, pool);
    // The task runs any transfer step (the table's), and writes its result under the prefix's `.transfers/`.
    const transferActions = new Set(transferSteps().flatMap((spec) => spec.catalog));
    grantCatalogAccess(transfer.taskDefinition.taskRole, catalog, [...transferActions, 's3:PutObject']);
    grantLockAccess(transfer.taskDefinition.taskRole, this.lockTable, [
      ...new Set(transferSteps().flatMap((spec) => spec.lock)),
    ]);

    const backup = new BackupWorkflow(this, 'Backup', {
      transfer,
      environment,
      ...(props.exportMemorySize ? { exportMemorySize: props.exportMemorySize } : {}),
    });
    const f = backup.functions;
    this.backupFunctions = f;
    this.backupStateMachine = createWorkflowStateMachine(this, 'BackupStateMachine', {
      definition: backup.definition,
      key,
    });

    const restore = new RestoreWorkflow(this, 'Restore', { environment, transfer });
    const r = restore.functions;
    this.restoreFunctions = r;
    // Each step function gets what its row of the step table says it reads and writes, nothing more.
    for (const fn of [...Object.values(f), ...Object.values(r)]) {
      grantCatalogAccess(fn, catalog, fn.spec.catalog);
      if (fn.spec.lock.length) grantLockAccess(fn, this.lockTable, fn.spec.lock);
      // Login, and any XAPI step that finds its session expired and logs in again.
      if (fn.spec.logsIn) for (const pool of props.pools) grantSecretValue(fn, pool);
    }
    this.restoreStateMachine = createWorkflowStateMachine(this, 'RestoreStateMachine', {
      definition: restore.definition,
      key,
    });

    const triggers = new BackupTriggers(this, 'Triggers', {
      stateMachine: this.backupStateMachine,
      key,
      ...(props.jobs ? { jobs: props.jobs } : {}),
      ...(props.eventBus ? { eventBus: props.eventBus } : {}),
    });
    this.schedules = triggers.schedules;
    this.backupRequestRule = triggers.backupRequestRule;

    const noSuccessWindow =
      props.noSuccessfulBackupWithin ??
      (props.jobs?.length ? Duration.hours(DEFAULT_NO_SUCCESSFUL_BACKUP_HOURS) : undefined);
    const notifications = new VaultNotifications(this, 'Notifications', {
      key,
      backupStateMachine: this.backupStateMachine,
      restoreStateMachine: this.restoreStateMachine,
      ...(props.topic ? { topic: props.topic } : {}),
      ...(props.notificationEmails ? { emails: props.notificationEmails } : {}),
      ...(noSuccessWindow ? { noSuccessfulBackupWithin: noSuccessWindow } : {}),
      deadLetterQueues: { Triggers: triggers.deadLetterQueue },
    });
    this.topic = notifications.topic;
    this.alarms = notifications.alarms;

    // docs/design.md § Dashboard and metric names.
    if (props.dashboard ?? true) {
      new VaultDashboard(this, VaultDashboard.ID, {
        backupStateMachine: this.backupStateMachine,
        restoreStateMachine: this.restoreStateMachine,
        bucket: this.bucket,
        catalog,
        environment,
        deadLetterQueue: triggers.deadLetterQueue,
        jobs: (props.jobs ?? []).map((job) => job.name),
        ...(noSuccessWindow ? { noSuccessfulBackupWithin: noSuccessWindow } : {}),
        defaultWindow: Duration.hours(DEFAULT_NO_SUCCESSFUL_BACKUP_HOURS),
      });
    }

    acknowledgeFindings(this, {
      ...(props.existingBucket
        ? { existingBucketName: props.existingBucket.bucketName }
        : { bucket: this.bucket as s3.Bucket }),
      prefix: this.prefix,
      functions: [...Object.values(f), ...Object.values(r)],
      inVpc: network !== undefined,
      transferTaskDefinition: transfer.taskDefinition,
    });

    this.operatorPolicy = createOperatorPolicy(this, 'OperatorPolicy', {
      backupStateMachine: this.backupStateMachine,
      restoreStateMachine: this.restoreStateMachine,
      stateMachineKey: key,
      bucket: this.bucket,
      prefix: this.prefix,
      ...(bucketKey ? { bucketKey } : {}),
      progressTable: this.lockTable,
    });
    new CfnOutput(this, 'OperatorPolicyArn', { value: this.operatorPolicy.managedPolicyArn });
    // Where `vdi-vault watch` reads the progress of running transfers.
    new CfnOutput(this, PROGRESS_TABLE_OUTPUT, { value: this.lockTable.tableName });
  }

  private functionSecurityGroups(
    network: VaultNetworkProps,
    pools: readonly VaultPool[],
  ): readonly ec2.ISecurityGroup[] {
    if (network.securityGroups?.length) return network.securityGroups;
    const group = new ec2.SecurityGroup(this, 'FunctionSecurityGroup', {
      vpc: network.vpc,
      description: 'vdi-vault functions: HTTPS to the pools and AWS APIs, nothing else',
      allowAllOutbound: false,
    });
    const ports = new Set([443, ...pools.map((pool) => urlPort(pool.url))]);
    for (const port of [...ports].sort((a, b) => a - b)) {
      group.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), `HTTPS/XAPI on ${port}`);
    }
    return [group];
  }
}

/**
 * Reading a pool's credentials: `secretsmanager:GetSecretValue` only (the secret's `grantRead` adds
 * `DescribeSecret`, which nothing calls). A secret named without its random suffix matches any suffix.
 */
function grantSecretValue(grantee: iam.IGrantable, pool: VaultPool): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['secretsmanager:GetSecretValue'],
      resources: [pool.secret.secretFullArn ?? `${pool.secret.secretArn}-??????`],
    }),
  );
  // A secret encrypted with a key of its own needs it too (the default aws/secretsmanager key does not).
  pool.secret.encryptionKey?.grantDecrypt(grantee);
}

/** Exactly the item actions a step uses on the lock table, and the key to encrypt and read items. */
function grantLockAccess(grantee: iam.IGrantable, table: dynamodb.Table, actions: readonly string[]): void {
  const principal = grantee.grantPrincipal;
  principal.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: [...actions], resources: [table.tableArn] }),
  );
  const key = table.encryptionKey;
  if (key) {
    // DynamoDB decrypts the table key with the caller's credentials for every item call; a progress
    // record's UpdateItem needs nothing more.
    principal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Decrypt', ...(actions.includes('dynamodb:PutItem') ? ['kms:GenerateDataKey'] : [])],
        resources: [key.keyArn],
        conditions: {
          StringEquals: { 'kms:ViaService': `dynamodb.${Stack.of(table).region}.amazonaws.com` },
        },
      }),
    );
  }
}

function urlPort(url: string): number {
  const parsed = new URL(url);
  if (parsed.port) return Number(parsed.port);
  return parsed.protocol === 'http:' ? 80 : 443;
}
