import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import {
  METRIC_NAMESPACE,
  METRIC_SERVICE,
  METRICS,
  type DimensionOf,
  type JobMetricName,
  type MetricName,
} from '../../lambdas/runtime/metric-table.ts';
import { CATALOG_METRICS_EVERY_MINUTES, SCHEDULED_STEPS } from '../../lambdas/runtime/step-table.ts';
import { grantCatalogAccess, type CatalogTarget } from './catalog-access.ts';
import { StepFunction } from './step-function.ts';

export interface VaultDashboardProps {
  readonly backupStateMachine: sfn.IStateMachine;
  readonly restoreStateMachine: sfn.IStateMachine;
  readonly bucket: s3.IBucket;
  /** The catalog the hourly restore point ages are read from. */
  readonly catalog: CatalogTarget;
  /** The step functions' environment (bucket, prefix…): the ages' function reads the same. */
  readonly environment: Record<string, string>;
  /** Where the hourly rule sends invocations it could not deliver (alarmed on by `VaultNotifications`). */
  readonly deadLetterQueue: sqs.IQueue;
  /** The configured jobs' names: a series each on the per-job graphs. */
  readonly jobs: readonly string[];
  /** The "no successful backup" alarm's window, drawn on the restore point ages; none: no alarm. */
  readonly noSuccessfulBackupWithin?: Duration;
  /** Drawn instead when there is no alarm (the window the alarm would have). */
  readonly defaultWindow: Duration;
}

const HOUR = Duration.hours(1);
/** One value per run of the ages' function. */
const AGE_PERIOD = Duration.minutes(CATALOG_METRICS_EVERY_MINUTES);

/**
 * A CloudWatch dashboard of the vault, built from the runtime's metric table (docs/design.md § Dashboard
 * and metric names): backups, merges, transfers and restores in total and per job, the age of each series'
 * newest restore point against the alarm's window, the bucket's stored bytes, and links to the state
 * machines. `url` is the console address (stack output `DashboardUrl`).
 */
export class VaultDashboard extends Construct {
  /** The construct id `VdiVault` gives it. */
  static readonly ID = 'Dashboard';

  /** The dashboard of a `VdiVault`, unless it was turned off (`dashboard: false`). */
  static of(vault: Construct): VaultDashboard | undefined {
    const child = vault.node.tryFindChild(VaultDashboard.ID);
    return child instanceof VaultDashboard ? child : undefined;
  }

  readonly dashboard: cloudwatch.Dashboard;
  readonly url: string;
  /** Publishes `NewestRestorePointAge` hourly (nothing else would while backups stop). */
  readonly catalogMetricsFunction: StepFunction;

  constructor(scope: Construct, id: string, props: VaultDashboardProps) {
    super(scope, id);
    const region = Stack.of(this).region;
    const spec = SCHEDULED_STEPS.publishCatalogMetrics;
    this.catalogMetricsFunction = new StepFunction(this, {
      workflow: 'backup',
      spec,
      environment: props.environment,
    });
    grantCatalogAccess(this.catalogMetricsFunction, props.catalog, spec.catalog);
    new events.Rule(this, 'CatalogMetricsSchedule', {
      description: 'vdi-vault: publishes the age of each series newest restore point',
      schedule: events.Schedule.rate(Duration.minutes(CATALOG_METRICS_EVERY_MINUTES)),
      targets: [
        new targets.LambdaFunction(this.catalogMetricsFunction, {
          retryAttempts: 2,
          deadLetterQueue: props.deadLetterQueue,
        }),
      ],
    });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.days(7),
    });
    this.url = `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards:name=${this.dashboard.dashboardName}`;

    const jobs = props.jobs;
    const perJob = (name: JobMetricName, statistic: string) =>
      jobs.map((job) => vaultMetric(name, { job }, { statistic, label: job }));
    // Graphs by job only when there are jobs (an empty graph says nothing).
    const byJob = (widgets: cloudwatch.IWidget[]) => (jobs.length ? widgets : []);
    const machineUrl = (arn: string) =>
      `https://${region}.console.aws.amazon.com/states/home?region=${region}#/statemachines/view/${arn}`;

    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        width: 24,
        height: 3,
        markdown: [
          '# vdi-vault',
          `[Backup state machine](${machineUrl(props.backupStateMachine.stateMachineArn)}) · ` +
            `[Restore state machine](${machineUrl(props.restoreStateMachine.stateMachineArn)}) ` +
            '(a console restore: _Start execution_ with the input README § Restore describes) · ' +
            `[Bucket](https://s3.console.aws.amazon.com/s3/buckets/${props.bucket.bucketName}?region=${region})`,
          '',
          'Counts are per disk. Per-job series cover runs a schedule started; totals cover every run.',
        ].join('\n'),
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.SingleValueWidget({
        title: 'In the time range (all runs)',
        width: 24,
        height: 4,
        setPeriodToTimeRange: true,
        metrics: [
          vaultMetric('BackupSucceeded', { kind: 'full' }, { label: 'full backups' }),
          vaultMetric('BackupSucceeded', { kind: 'delta' }, { label: 'delta backups' }),
          vaultMetric('BackupFailed', {}, { label: 'failed backups' }),
          vaultMetric('MergeSucceeded', {}, { label: 'merges' }),
          vaultMetric('MergeFailed', {}, { label: 'failed merges' }),
          vaultMetric('RestoreSucceeded', {}, { label: 'restores' }),
          vaultMetric('RestoreFailed', {}, { label: 'failed restores' }),
          vaultMetric('BytesExported', {}, { label: 'bytes exported' }),
        ],
      }),
    );
    this.dashboard.addWidgets(
      graph('Backups (all runs)', [
        vaultMetric('BackupSucceeded', { kind: 'full' }, { label: 'succeeded, full' }),
        vaultMetric('BackupSucceeded', { kind: 'delta' }, { label: 'succeeded, delta' }),
        vaultMetric('BackupFailed', {}, { label: 'failed' }),
      ]),
      ...byJob([
        graph('Backups succeeded by job', perJob('BackupSucceeded', 'Sum')),
        graph('Backups failed by job', perJob('BackupFailed', 'Sum')),
      ]),
    );
    this.dashboard.addWidgets(
      graph('Bytes exported and imported (all runs)', [
        vaultMetric('BytesExported', {}, { label: 'exported' }),
        vaultMetric('BytesImported', {}, { label: 'imported' }),
      ]),
      ...byJob([graph('Bytes exported by job', perJob('BytesExported', 'Sum'))]),
      graph('Merges (forever incremental)', [
        vaultMetric('MergeSucceeded', {}, { label: 'succeeded' }),
        vaultMetric('MergeFailed', {}, { label: 'failed' }),
        ...jobs.flatMap((job) => [
          vaultMetric('MergeSucceeded', { job }, { label: `${job} succeeded` }),
          vaultMetric('MergeFailed', { job }, { label: `${job} failed` }),
        ]),
      ]),
    );
    this.dashboard.addWidgets(
      graph('Transfer duration (average, ms)', [
        vaultMetric('ExportDuration', {}, { statistic: 'Average', label: 'export' }),
        vaultMetric('ImportDuration', {}, { statistic: 'Average', label: 'import' }),
        ...perJob('ExportDuration', 'Average').map((metric) =>
          metric.with({ label: `export, ${metric.label ?? ''}` }),
        ),
      ]),
      graph('Transfer throughput (average, bytes/s)', [
        vaultMetric('ExportThroughput', {}, { statistic: 'Average', label: 'export' }),
        vaultMetric('ImportThroughput', {}, { statistic: 'Average', label: 'import' }),
        ...perJob('ExportThroughput', 'Average').map((metric) =>
          metric.with({ label: `export, ${metric.label ?? ''}` }),
        ),
      ]),
      graph('Restores', [
        vaultMetric('RestoreSucceeded', {}, { label: 'succeeded' }),
        vaultMetric('RestoreFailed', {}, { label: 'failed' }),
      ]),
    );
    const window = props.noSuccessfulBackupWithin ?? props.defaultWindow;
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Age of the newest restore point per series (s)',
        width: 12,
        left: [
          // Series appear as backups create them: a search, not a list fixed at synth.
          new cloudwatch.MathExpression({
            expression: searchOf('NewestRestorePointAge', ['series'], 'Maximum', AGE_PERIOD),
            label: '',
            period: AGE_PERIOD,
            usingMetrics: {},
          }),
        ],
        leftAnnotations: [
          {
            value: window.toSeconds(),
            color: cloudwatch.Color.RED,
            label: props.noSuccessfulBackupWithin
              ? `alarm: no successful backup within ${window.toHours()} h`
              : `${window.toHours()} h (no alarm without jobs)`,
          },
        ],
        leftYAxis: { min: 0 },
      }),
      new cloudwatch.GraphWidget({
        title: 'Bytes stored in the bucket (whole bucket, daily)',
        width: 12,
        left: [
          new cloudwatch.Metric({
            namespace: 'AWS/S3',
            metricName: 'BucketSizeBytes',
            dimensionsMap: { BucketName: props.bucket.bucketName, StorageType: 'StandardStorage' },
            statistic: 'Average',
            period: Duration.days(1),
            label: 'S3 Standard (current and noncurrent versions)',
          }),
        ],
        right: [
          new cloudwatch.Metric({
            namespace: 'AWS/S3',
            metricName: 'NumberOfObjects',
            dimensionsMap: { BucketName: props.bucket.bucketName, StorageType: 'AllStorageTypes' },
            statistic: 'Average',
            period: Duration.days(1),
            label: 'objects',
          }),
        ],
        leftYAxis: { min: 0 },
      }),
    );
  }
}

type Dimensions<N extends MetricName> = { readonly [D in DimensionOf<N>]?: string };

/** A metric of the runtime's table, with Powertools' `service` dimension and the given others. */
export function vaultMetric<N extends MetricName>(
  name: N,
  dimensions: Dimensions<N>,
  options: { readonly statistic?: string; readonly label?: string; readonly period?: Duration } = {},
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRIC_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: METRIC_SERVICE, ...(dimensions as Record<string, string>) },
    statistic: options.statistic ?? 'Sum',
    period: options.period ?? HOUR,
    ...(options.label !== undefined ? { label: options.label } : {}),
  });
}

/** A search over one metric of the table published with `dimensions` (plus `service`), any values. */
function searchOf<N extends MetricName>(
  name: N,
  dimensions: readonly DimensionOf<N>[],
  statistic: string,
  period: Duration,
): string {
  if (!METRICS[name].dimensionSets.some((set) => sameSet(set, dimensions))) {
    throw new Error(`${name} is not published with the dimensions ${dimensions.join(', ')}`);
  }
  const schema = [METRIC_NAMESPACE, ...[...dimensions, 'service'].sort()].join(',');
  return `SEARCH('{${schema}} MetricName="${name}"', '${statistic}', ${period.toSeconds()})`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item) => b.includes(item));
}

function graph(title: string, metrics: readonly cloudwatch.IMetric[]): cloudwatch.GraphWidget {
  return new cloudwatch.GraphWidget({
    title,
    width: 8,
    left: [...metrics],
    leftYAxis: { min: 0 },
  });
}
