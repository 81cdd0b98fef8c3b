import { CfnOutput, Duration, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import type { VdiVaultConfig } from './config/config.ts';
import { DEFAULT_BACKUP_CONCURRENCY } from '../lambdas/runtime/defaults.ts';
import { DASHBOARD_URL_OUTPUT } from '../lambdas/runtime/metric-table.ts';
import { VdiVault, type VaultNetworkProps, type VdiVaultProps } from './constructs/vdi-vault.ts';
import { VaultDashboard } from './constructs/vault-dashboard.ts';

export interface VdiVaultStackProps extends StackProps {
  /** The validated configuration (`infra/config/config.ts`). */
  readonly config: VdiVaultConfig;
}

/** The deployable app's stack: the `VdiVault` construct built from the configuration, and its outputs. */
export class VdiVaultStack extends Stack {
  readonly vault: VdiVault;
  readonly bucket: s3.IBucket;
  readonly backupStateMachine: sfn.StateMachine;
  readonly restoreStateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: VdiVaultStackProps) {
    super(scope, id, props);
    // `Default` adds nothing to logical ids: `BackupStateMachine…` stays what the local runner looks for.
    this.vault = new VdiVault(this, 'Default', vaultProps(this, props.config));
    this.bucket = this.vault.bucket;
    this.backupStateMachine = this.vault.backupStateMachine;
    this.restoreStateMachine = this.vault.restoreStateMachine;

    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new CfnOutput(this, 'BackupStateMachineArn', { value: this.backupStateMachine.stateMachineArn });
    new CfnOutput(this, 'RestoreStateMachineArn', { value: this.restoreStateMachine.stateMachineArn });
    new CfnOutput(this, 'TopicArn', { value: this.vault.topic.topicArn });
    new CfnOutput(this, 'KeyArn', { value: this.vault.key.keyArn });
    new CfnOutput(this, 'DefaultPool', { value: props.config.pools[0]!.name });
    new CfnOutput(this, 'CatalogPrefix', { value: this.vault.prefix });
    const dashboard = VaultDashboard.of(this.vault);
    if (dashboard) new CfnOutput(this, DASHBOARD_URL_OUTPUT, { value: dashboard.url });
  }
}

/** Turns the JSON configuration into the construct's props, importing what already exists by id. */
function vaultProps(scope: Construct, config: VdiVaultConfig): VdiVaultProps {
  const pools = config.pools.map((pool, index) => ({
    name: pool.name,
    url: pool.url,
    secret: pool.secret.startsWith('arn:')
      ? secretsmanager.Secret.fromSecretCompleteArn(scope, `PoolSecret${index}`, pool.secret)
      : secretsmanager.Secret.fromSecretNameV2(scope, `PoolSecret${index}`, pool.secret),
    ...(pool.caCertificate ? { caCertificate: pool.caCertificate } : {}),
    ...(pool.pinnedSha256 ? { pinnedSha256: pool.pinnedSha256 } : {}),
  }));
  const jobs = config.jobs ?? [];
  const concurrency =
    config.concurrency ??
    Math.max(DEFAULT_BACKUP_CONCURRENCY, ...jobs.map((job) => job.concurrency ?? 0).filter((n) => n > 0));
  const bucket = config.bucket ?? {};
  const notifications = config.notifications ?? {};
  return {
    pools,
    ...(config.prefix ? { prefix: config.prefix } : {}),
    concurrency,
    ...(config.fargateThresholdGiB !== undefined
      ? { fargateThresholdBytes: Math.round(config.fargateThresholdGiB * 1024 ** 3) }
      : {}),
    ...(config.stallTimeoutSeconds !== undefined
      ? { stallTimeout: Duration.millis(Math.round(config.stallTimeoutSeconds * 1000)) }
      : {}),
    ...(config.network ? { network: importNetwork(scope, config.network) } : {}),
    jobs,
    ...(bucket.existingBucketName
      ? { existingBucket: s3.Bucket.fromBucketName(scope, 'ExistingBucket', bucket.existingBucketName) }
      : {}),
    ...(bucket.existingKeyArn
      ? { existingBucketKey: kms.Key.fromKeyArn(scope, 'ExistingBucketKey', bucket.existingKeyArn) }
      : {}),
    ...(bucket.objectLock ? { objectLock: bucket.objectLock } : {}),
    ...(bucket.uploadChecksum ? { uploadChecksum: bucket.uploadChecksum } : {}),
    ...(bucket.accessLogs !== undefined ? { serverAccessLogs: bucket.accessLogs } : {}),
    ...(notifications.existingTopicArn
      ? { topic: sns.Topic.fromTopicArn(scope, 'ExistingTopic', notifications.existingTopicArn) }
      : {}),
    ...(notifications.emails ? { notificationEmails: notifications.emails } : {}),
    ...(config.dashboard !== undefined ? { dashboard: config.dashboard } : {}),
    ...(config.alarms?.noSuccessfulBackupHours
      ? { noSuccessfulBackupWithin: Duration.hours(config.alarms.noSuccessfulBackupHours) }
      : {}),
  };
}

/** Imports the VPC and subnets by id, offline (no context lookup, so synth needs no AWS account). */
function importNetwork(scope: Construct, network: NonNullable<VdiVaultConfig['network']>): VaultNetworkProps {
  const vpc = ec2.Vpc.fromVpcAttributes(scope, 'Vpc', {
    vpcId: network.vpcId,
    // Only the explicit subnets below are used: the zones never matter, but the import wants a list.
    availabilityZones: Fn.getAzs(),
  });
  return {
    vpc,
    subnets: {
      subnets: network.subnetIds.map((id, index) => ec2.Subnet.fromSubnetId(scope, `Subnet${index}`, id)),
    },
    ...(network.securityGroupId
      ? {
          securityGroups: [
            ec2.SecurityGroup.fromSecurityGroupId(scope, 'FunctionSecurityGroup', network.securityGroupId),
          ],
        }
      : {}),
  };
}
