import { RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { CfnOutput, Duration } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { VdiVaultConfig } from './config/config.ts';
import { acknowledgeFindings } from './nag-acknowledgements.ts';
import { grantCatalogAccess } from './constructs/catalog-access.ts';
import { BackupWorkflow } from './constructs/backup-workflow.ts';
import { RestoreWorkflow } from './constructs/restore-workflow.ts';

export interface VdiVaultStackProps extends StackProps {
  readonly config: VdiVaultConfig;
}

export class VdiVaultStack extends Stack {
  readonly bucket: s3.Bucket;
  readonly backupStateMachine: sfn.StateMachine;
  readonly restoreStateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: VdiVaultStackProps) {
    super(scope, id, props);
    const prefix = props.config.prefix ?? 'backups';

    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ expiration: Duration.days(90) }],
    });
    this.bucket = new s3.Bucket(this, 'Backups', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      versioned: true,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'backups/',
      removalPolicy: RemovalPolicy.RETAIN,
      // Second line of defence behind our own abort: no part outlives a crashed export by more than a day.
      lifecycleRules: [{ abortIncompleteMultipartUploadAfter: Duration.days(1) }],
    });

    const secrets = props.config.pools.map((pool, index) =>
      pool.secret.startsWith('arn:')
        ? secretsmanager.Secret.fromSecretCompleteArn(this, `PoolSecret${index}`, pool.secret)
        : secretsmanager.Secret.fromSecretNameV2(this, `PoolSecret${index}`, pool.secret),
    );
    const poolsEnvironment = Object.fromEntries(
      props.config.pools.map((pool, index) => [
        pool.name,
        {
          url: pool.url,
          secretId: secrets[index]!.secretArn,
          ...(pool.caCertificate ? { caPem: pool.caCertificate } : {}),
          ...(pool.pinnedSha256 ? { pinnedSha256: pool.pinnedSha256 } : {}),
        },
      ]),
    );
    const environment = {
      VDI_VAULT_BUCKET: this.bucket.bucketName,
      VDI_VAULT_PREFIX: prefix,
      VDI_VAULT_POOLS: this.toJsonString(poolsEnvironment),
      VDI_VAULT_DEFAULT_POOL: props.config.pools[0]!.name,
      POWERTOOLS_SERVICE_NAME: 'vdi-vault',
    };

    const backup = new BackupWorkflow(this, 'Backup', {
      environment,
      ...(props.config.concurrency ? { concurrency: props.config.concurrency } : {}),
    });
    const f = backup.functions;
    for (const secret of secrets) secret.grantRead(f.login!);
    const catalog = { bucket: this.bucket, prefix };
    grantCatalogAccess(f.plan!, catalog, ['s3:ListBucket', 's3:GetObject']);
    grantCatalogAccess(f.export!, catalog, ['s3:PutObject', 's3:AbortMultipartUpload']);
    grantCatalogAccess(f.commit!, catalog, ['s3:GetObject', 's3:PutObject']);
    grantCatalogAccess(f.failureCleanup!, catalog, [
      's3:ListBucketMultipartUploads',
      's3:AbortMultipartUpload',
      's3:DeleteObject',
    ]);

    this.backupStateMachine = new sfn.StateMachine(this, 'BackupStateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(backup.definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'BackupStateMachineLogs', {
          retention: logs.RetentionDays.ONE_MONTH,
        }),
        level: sfn.LogLevel.ALL,
        // Execution data holds session refs: keep it out of the logs.
        includeExecutionData: false,
      },
    });

    const restore = new RestoreWorkflow(this, 'Restore', { environment });
    const r = restore.functions;
    for (const secret of secrets) secret.grantRead(r.login!);
    grantCatalogAccess(r.resolveChain!, catalog, ['s3:ListBucket', 's3:GetObject']);
    grantCatalogAccess(r.importLayer!, catalog, ['s3:GetObject']);
    grantCatalogAccess(r.importMerged!, catalog, ['s3:GetObject']);
    this.restoreStateMachine = new sfn.StateMachine(this, 'RestoreStateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(restore.definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'RestoreStateMachineLogs', {
          retention: logs.RetentionDays.ONE_MONTH,
        }),
        level: sfn.LogLevel.ALL,
        includeExecutionData: false,
      },
    });

    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new CfnOutput(this, 'RestoreStateMachineArn', { value: this.restoreStateMachine.stateMachineArn });
    new CfnOutput(this, 'BackupStateMachineArn', { value: this.backupStateMachine.stateMachineArn });

    acknowledgeFindings(this, {
      bucket: this.bucket,
      prefix,
      functions: [...Object.values(f), ...Object.values(r)],
    });
  }
}
