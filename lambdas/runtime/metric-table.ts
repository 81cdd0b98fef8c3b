/**
 * Every CloudWatch metric the runtime publishes, spelled once: its unit and the dimension sets it is
 * published with (besides Powertools' `service`). The handlers emit only through this table
 * (`lambdas/handlers/observability.ts`), the dashboard is built from it (`infra/constructs/vault-dashboard.ts`).
 * Pure data: no CDK, no AWS SDK (docs/design.md § Dashboard and metric names).
 */

/** Powertools' namespace and service (the `service` dimension of every metric). */
export const METRIC_NAMESPACE = 'VdiVault';
export const METRIC_SERVICE = 'vdi-vault';

/** The stack output holding the dashboard's console URL (printed by `vdi-vault backup` and `restore`). */
export const DASHBOARD_URL_OUTPUT = 'DashboardUrl';

/** The dimensions a metric may carry besides `service`. */
export type MetricDimension = 'kind' | 'job' | 'step' | 'series';

/** CloudWatch units used here, as CloudWatch spells them (the values of Powertools' `MetricUnit`). */
export type MetricUnitName = 'Count' | 'Bytes' | 'Milliseconds' | 'Bytes/Second' | 'Seconds';

export interface MetricSpec {
  readonly unit: MetricUnitName;
  /**
   * Each dimension set the metric is published with; `[]` is the total (only `service`). A job's run
   * publishes `['job']` as well: one series per configured job, beside the total.
   */
  readonly dimensionSets: readonly (readonly MetricDimension[])[];
}

const TOTAL_AND_JOB = [[], ['job']] as const;

export const METRICS = {
  /** A VDI's backup committed (Cleanup), by the kind of point it stored. */
  BackupSucceeded: { unit: 'Count', dimensionSets: [['kind'], ['job']] },
  /** A VDI's backup failed before its commit (FailureCleanup). */
  BackupFailed: { unit: 'Count', dimensionSets: TOTAL_AND_JOB },
  /** Forever incremental: a chain folded into a synthetic full, or a merge that failed (the backup stands). */
  MergeSucceeded: { unit: 'Count', dimensionSets: TOTAL_AND_JOB },
  MergeFailed: { unit: 'Count', dimensionSets: TOTAL_AND_JOB },
  BytesExported: { unit: 'Bytes', dimensionSets: TOTAL_AND_JOB },
  ExportDuration: { unit: 'Milliseconds', dimensionSets: TOTAL_AND_JOB },
  ExportThroughput: { unit: 'Bytes/Second', dimensionSets: TOTAL_AND_JOB },
  BytesImported: { unit: 'Bytes', dimensionSets: [[]] },
  ImportDuration: { unit: 'Milliseconds', dimensionSets: [[]] },
  ImportThroughput: { unit: 'Bytes/Second', dimensionSets: [[]] },
  RestoreSucceeded: { unit: 'Count', dimensionSets: [[]] },
  RestoreFailed: { unit: 'Count', dimensionSets: [[]] },
  /** A step's handler threw, by step (`backup.plan`, `restore.validate`…). */
  StepFailed: { unit: 'Count', dimensionSets: [['step']] },
  /** Published hourly: since the newest restore point of each series (`<pool>/<vdi-uuid>`) ended. */
  NewestRestorePointAge: { unit: 'Seconds', dimensionSets: [['series']] },
} as const satisfies Record<string, MetricSpec>;

export type MetricName = keyof typeof METRICS;

/** The dimensions a metric is published with, by name: `DimensionOf<'BackupSucceeded'>` is `'kind' | 'job'`. */
export type DimensionOf<N extends MetricName> = (typeof METRICS)[N]['dimensionSets'][number][number];

/** The metrics published with a `job` dimension too (beside their total). */
export type JobMetricName = { [K in MetricName]: 'job' extends DimensionOf<K> ? K : never }[MetricName];

/** A transfer's direction and the three metrics it publishes. */
export const TRANSFER_METRICS = {
  Exported: { bytes: 'BytesExported', duration: 'ExportDuration', throughput: 'ExportThroughput' },
  Imported: { bytes: 'BytesImported', duration: 'ImportDuration', throughput: 'ImportThroughput' },
} as const satisfies Record<string, Record<'bytes' | 'duration' | 'throughput', MetricName>>;
