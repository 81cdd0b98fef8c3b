import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../infra/config/config.ts';
import { DEFAULT_NO_SUCCESSFUL_BACKUP_HOURS } from '../../lambdas/runtime/defaults.ts';
import { METRICS, type MetricName } from '../../lambdas/runtime/metric-table.ts';
import { dashboardBody, namedMetrics } from './dashboard-body.ts';
import { JOB, POOL, resourceOf, synth } from './synth.ts';

const sorted = (dimensions: Record<string, string>) => JSON.stringify(Object.entries(dimensions).sort());
const withJobs = synth({ pools: [POOL], jobs: [JOB, { ...JOB, name: 'weekly' }] }, { nagChecks: false });

describe('the dashboard', () => {
  it('is on by default, and its console URL is the DashboardUrl output', () => {
    const { template } = synth({ pools: [POOL] }, { nagChecks: false });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const url = template.findOutputs('DashboardUrl').DashboardUrl!.Value as {
      'Fn::Join': [string, unknown[]];
    };
    const dashboardId = Object.keys(template.findResources('AWS::CloudWatch::Dashboard'))[0]!;
    expect(url['Fn::Join'][1]).toEqual([
      'https://',
      { Ref: 'AWS::Region' },
      '.console.aws.amazon.com/cloudwatch/home?region=',
      { Ref: 'AWS::Region' },
      '#dashboards:name=',
      { Ref: dashboardId },
    ]);
  });

  it('is left out, with its output and its function, by `dashboard: false`', () => {
    const { template } = synth({ pools: [POOL], dashboard: false }, { nagChecks: false });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    expect(template.findOutputs('DashboardUrl')).toEqual({});
    const steps = Object.values(template.findResources('AWS::Lambda::Function')).map(
      (fn) => fn.Properties.Environment?.Variables?.VDI_VAULT_STEP as string | undefined,
    );
    expect(steps).not.toContain('backup.publishCatalogMetrics');
  });

  it('refuses a `dashboard` that is not a boolean, naming the field and the fix', () => {
    expect(() => parseConfig({ pools: [POOL], dashboard: 'no' })).toThrow(
      /^config dashboard: must be true or false, not "no" \("dashboard": false leaves the dashboard out\)$/,
    );
  });

  it('names only metrics of the runtime table, each with one of its dimension sets', () => {
    const named = namedMetrics(dashboardBody(withJobs.template));
    expect(named.length).toBeGreaterThan(0);
    for (const metric of named) {
      const spec = METRICS[metric.name as MetricName];
      expect(spec, metric.name).toBeDefined();
      const { service, ...others } = metric.dimensions;
      expect(service, metric.name).toMatch(/^(vdi-vault|\*)$/);
      const keys = Object.keys(others).sort();
      expect(
        spec.dimensionSets.some((set) => [...set].sort().join() === keys.join()),
        `${metric.name} by ${keys.join()}`,
      ).toBe(true);
    }
  });

  it('shows backups, bytes, durations, rates, merges and restores in total and per configured job', () => {
    const named = namedMetrics(dashboardBody(withJobs.template));
    const has = (name: MetricName, dimensions: Record<string, string>) =>
      named.some(
        (metric) =>
          metric.name === name &&
          sorted(metric.dimensions) === sorted({ service: 'vdi-vault', ...dimensions }),
      );
    const totals: MetricName[] = [
      'BackupFailed',
      'BytesExported',
      'BytesImported',
      'ExportDuration',
      'ImportDuration',
      'ExportThroughput',
      'ImportThroughput',
      'RestoreSucceeded',
      'RestoreFailed',
      'MergeSucceeded',
      'MergeFailed',
    ];
    for (const name of totals) expect(has(name, {}), name).toBe(true);
    for (const kind of ['full', 'delta']) expect(has('BackupSucceeded', { kind }), kind).toBe(true);
    const perJob: MetricName[] = [
      'BackupSucceeded',
      'BackupFailed',
      'BytesExported',
      'ExportDuration',
      'ExportThroughput',
      'MergeSucceeded',
      'MergeFailed',
    ];
    for (const job of ['nightly', 'weekly'])
      for (const name of perJob) expect(has(name, { job }), `${name} of ${job}`).toBe(true);
  });

  it('draws the alarm window on the age of each series newest restore point', () => {
    const ageWidget = (template: typeof withJobs.template) =>
      dashboardBody(template).widgets.find((widget) =>
        JSON.stringify(widget.properties.metrics ?? []).includes('NewestRestorePointAge'),
      )!;
    const horizontal = (template: typeof withJobs.template) =>
      ageWidget(template).properties.annotations!.horizontal!;
    expect(horizontal(withJobs.template)).toEqual([
      expect.objectContaining({ value: DEFAULT_NO_SUCCESSFUL_BACKUP_HOURS * 3600 }),
    ]);
    const thirty = synth(
      { pools: [POOL], jobs: [JOB], alarms: { noSuccessfulBackupHours: 30 } },
      { nagChecks: false },
    ).template;
    expect(horizontal(thirty)).toEqual([
      expect.objectContaining({ value: 30 * 3600, label: 'alarm: no successful backup within 30 h' }),
    ]);
    // The same window the alarm evaluates.
    const alarm = Object.values(thirty.findResources('AWS::CloudWatch::Alarm')).find(
      (resource) => resource.Properties.MetricName === 'ExecutionsSucceeded',
    );
    expect(alarm?.Properties.Period).toBe(30 * 3600);
  });

  it('shows the whole bucket’s stored bytes, daily, from AWS/S3', () => {
    const metrics = dashboardBody(withJobs.template).widgets.flatMap(
      (widget) => widget.properties.metrics ?? [],
    );
    const bucketId = Object.keys(withJobs.template.findResources('AWS::S3::Bucket')).find((id) =>
      id.startsWith('Backups'),
    )!;
    expect(metrics).toContainEqual([
      'AWS/S3',
      'BucketSizeBytes',
      'BucketName',
      `<Ref:${bucketId}>`,
      'StorageType',
      'StandardStorage',
      expect.objectContaining({ period: 86400 }),
    ]);
  });

  it('links both state machines in the Step Functions console', () => {
    const markdown = dashboardBody(withJobs.template).widgets.find((widget) => widget.type === 'text')!
      .properties.markdown!;
    for (const machine of ['BackupStateMachine', 'RestoreStateMachine']) {
      const id = Object.keys(withJobs.template.findResources('AWS::StepFunctions::StateMachine')).find(
        (key) => key.startsWith(machine),
      )!;
      expect(markdown).toContain(
        `(https://<Ref:AWS::Region>.console.aws.amazon.com/states/home?region=<Ref:AWS::Region>#/statemachines/view/<Ref:${id}>)`,
      );
    }
  });

  it('has an hourly rule run the restore point ages, which may only list and read the catalog', () => {
    const fn = Object.entries(withJobs.template.findResources('AWS::Lambda::Function')).find(
      ([, resource]) =>
        resource.Properties.Environment?.Variables?.VDI_VAULT_STEP === 'backup.publishCatalogMetrics',
    )!;
    const rule = resourceOf(withJobs.template, 'AWS::Events::Rule', 'DashboardCatalogMetricsSchedule');
    expect(rule.Properties.ScheduleExpression).toBe('rate(1 hour)');
    expect(JSON.stringify(rule.Properties.Targets)).toContain(fn[0]);
  });
});
