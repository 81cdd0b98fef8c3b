/**
 * The dashboard against what the runtime really publishes: real backups (full, delta with a merge, a merge
 * that fails, a failed disk), restores (one succeeds, one fails) and the hourly restore point ages run in
 * the local world, the handlers' EMF is captured from their output, and every metric and dimension set the
 * dashboard names in our namespace must be among them (docs/design.md § Dashboard and metric names).
 */
import { randomUUID } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRIC_NAMESPACE } from '../../lambdas/runtime/metric-table.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { dashboardBody, namedMetrics, type NamedMetric } from './dashboard-body.ts';
import { JOB, POOL, synth } from './synth.ts';

type Json = Record<string, unknown>;
interface Emf {
  readonly _aws: {
    CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
  };
}

/** Each metric an EMF line publishes, with the values of each of its dimension sets. */
function published(lines: readonly string[]): NamedMetric[] {
  const out: NamedMetric[] = [];
  for (const line of lines) {
    let entry: Json;
    try {
      entry = JSON.parse(line) as Json;
    } catch {
      continue;
    }
    if (entry._aws === undefined) continue;
    for (const directive of (entry as unknown as Emf)._aws.CloudWatchMetrics) {
      if (directive.Namespace !== METRIC_NAMESPACE) continue;
      for (const set of directive.Dimensions)
        for (const metric of directive.Metrics)
          out.push({
            name: metric.Name,
            dimensions: Object.fromEntries(set.map((key) => [key, String(entry[key])])),
          });
    }
  }
  return out;
}

const matches = (named: NamedMetric, emitted: NamedMetric) =>
  named.name === emitted.name &&
  Object.keys(named.dimensions).length === Object.keys(emitted.dimensions).length &&
  Object.entries(named.dimensions).every(
    ([key, value]) =>
      emitted.dimensions[key] !== undefined && (value === '*' || emitted.dimensions[key] === value),
  );

describe('the dashboard names what the handlers publish', () => {
  let world: BackupWorld;
  const lines: string[] = [];
  let ageSeries: string | undefined;
  let ageSeconds: number | undefined;

  beforeAll(async () => {
    // Outside readers off: a stored object is spoiled below on purpose (so that a merge fails).
    world = await startBackupWorld({
      outsideReaders: false,
      target: { onLog: (_source, line) => lines.push(line) },
    });
    const job = { vdiUuids: [world.vdiUuid], job: JOB.name, retention: { keep: 1 } };
    expect((await world.backup(job)).status).toBe('SUCCEEDED'); // a full
    expect((await world.backup(job)).status).toBe('SUCCEEDED'); // a delta, merged into a synthetic full
    const srUuid = world.sim.srs.shared.uuid;
    const restored = await world.restore({ vdiUuid: world.vdiUuid, srUuid });
    expect(restored.status, restored.cause).toBe('SUCCEEDED');
    const missing = await world.restore({
      vdiUuid: world.vdiUuid,
      restorePoint: '20200101T000000.000Z-full',
      srUuid,
    });
    expect(missing.status).toBe('FAILED');
    // The next merge reads this full back: spoiled, the merge fails and the backup stands.
    const full = (await world.manifests()).at(-1)!;
    await world.s3.send(
      new PutObjectCommand({ Bucket: world.bucket, Key: full.objectKey, Body: Buffer.alloc(full.bytes) }),
    );
    const third = await world.backup(job);
    expect(third.status, third.cause).toBe('SUCCEEDED');
    expect((await world.backup({ vdiUuids: [randomUUID()], job: JOB.name })).status).toBe('FAILED');

    const deployment = await world.deployment();
    const [ages] = deployment.stack
      .resourcesOfType('AWS::Lambda::Function')
      .find(([, resource]) =>
        JSON.stringify(resource.Properties?.Environment ?? {}).includes('backup.publishCatalogMetrics'),
      )!;
    const result = (await deployment.lambdas.invoke(ages, {})) as { series: number };
    expect(result.series).toBe(1);
    // A worker's output reaches us after its answer, as Lambda's logs reach CloudWatch after the result.
    const deadline = Date.now() + 5000;
    while (!lines.some((entry) => entry.includes('"NewestRestorePointAge"')) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const line = lines.find((entry) => entry.includes('"NewestRestorePointAge"'))!;
    const age = JSON.parse(line) as Json;
    ageSeries = String(age.series);
    ageSeconds = Number(age.NewestRestorePointAge);
  }, 600_000);
  afterAll(() => world?.close());

  it('every metric and dimension set of the dashboard is one a real run published', () => {
    const { template } = synth({ pools: [POOL], jobs: [JOB] }, { nagChecks: false });
    const named = namedMetrics(dashboardBody(template));
    const emitted = published(lines);
    const missing = named.filter((metric) => !emitted.some((candidate) => matches(metric, candidate)));
    expect(missing).toEqual([]);
    // The job's series are there (not only totals): the schedule's `job` reached every disk's metrics.
    expect(named.filter((metric) => metric.dimensions.job === JOB.name).length).toBeGreaterThan(0);
  });

  it('publishes the age of each series newest restore point, by series', () => {
    expect(ageSeries).toBe(`lab/${world.vdiUuid}`);
    expect(ageSeconds).toBeGreaterThanOrEqual(0);
    expect(ageSeconds).toBeLessThan(600);
  });
});
