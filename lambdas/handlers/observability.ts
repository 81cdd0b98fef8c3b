import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type { Context } from 'aws-lambda';

/**
 * Powertools for AWS Lambda, one of each per container: structured JSON logs, CloudWatch metrics in EMF,
 * X-Ray traces. They configure themselves from `POWERTOOLS_*` variables the infrastructure sets
 * (service `vdi-vault`, namespace `VdiVault`); outside Lambda the tracer stays off.
 */
export const logger = new Logger({ serviceName: 'vdi-vault' });
export const metrics = new Metrics({ serviceName: 'vdi-vault', namespace: 'VdiVault' });
export const tracer = new Tracer({ serviceName: 'vdi-vault' });

export { MetricUnit };

/** Keys that tie one function's logs to the execution, VDI and backup it works for. */
const CORRELATION_KEYS = ['step', 'executionId', 'pool', 'vdiUuid', 'backupId', 'restorePoint'] as const;

/** Pulls correlation ids out of a step's state; only ids, never session refs or data. */
export function correlationOf(event: unknown): Record<string, string> {
  const state = (typeof event === 'object' && event !== null ? event : {}) as Record<string, unknown>;
  const nested = (key: string, field: string): unknown =>
    typeof state[key] === 'object' && state[key] !== null
      ? (state[key] as Record<string, unknown>)[field]
      : undefined;
  const candidates: Record<string, unknown> = {
    executionId: state.executionId ?? state.executionArn,
    pool: state.pool,
    vdiUuid: state.vdiUuid ?? nested('request', 'vdiUuid'),
    backupId: nested('plan', 'backupId') ?? nested('layer', 'backupId'),
    restorePoint: state.restorePoint ?? nested('request', 'restorePoint'),
  };
  return Object.fromEntries(
    Object.entries(candidates).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
}

/** Measures a successful step: adds metrics from its input and result. */
export type Measure<E, R> = (event: E, result: R, durationMs: number) => void;

/**
 * Wraps a step so every invocation logs with its correlation keys, runs in its own trace subsegment
 * (annotated with step, pool and VDI), counts `StepFailed` on error, and publishes its metrics before
 * returning. The wrapped handler keeps the step's own signature: `(event) => Promise<result>`.
 */
export function instrumentStep<E, R>(
  step: string,
  run: (event: E) => Promise<R>,
  measure?: Measure<E, R>,
): (event: E, context?: Context) => Promise<R> {
  return async (event, context) => {
    if (context) logger.addContext(context);
    const keys = { step, ...correlationOf(event) };
    logger.appendKeys(keys);
    const parent = tracer.isTracingEnabled() ? tracer.getSegment() : undefined;
    const segment = parent?.addNewSubsegment(`## ${step}`);
    if (segment) {
      tracer.setSegment(segment);
      for (const [key, value] of Object.entries(keys)) tracer.putAnnotation(key, value);
    }
    const started = Date.now();
    try {
      const result = await run(event);
      measure?.(event, result, Date.now() - started);
      return result;
    } catch (error) {
      if (segment) tracer.addErrorAsMetadata(error as Error);
      const failed = metrics.singleMetric();
      failed.addDimension('step', step);
      failed.addMetric('StepFailed', MetricUnit.Count, 1);
      logger.error('step failed', { error: error instanceof Error ? error : String(error) });
      throw error;
    } finally {
      segment?.close();
      if (parent) tracer.setSegment(parent);
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
      logger.removeKeys(CORRELATION_KEYS as unknown as string[]);
    }
  };
}

/** Bytes, duration and throughput of one transfer (export or import), in a given direction. */
export function addTransferMetrics(
  direction: 'Exported' | 'Imported',
  bytes: number,
  durationMs: number,
): void {
  metrics.addMetric(`Bytes${direction}`, MetricUnit.Bytes, bytes);
  const verb = direction === 'Exported' ? 'Export' : 'Import';
  metrics.addMetric(`${verb}Duration`, MetricUnit.Milliseconds, durationMs);
  if (durationMs > 0) {
    metrics.addMetric(
      `${verb}Throughput`,
      MetricUnit.BytesPerSecond,
      Math.round((bytes * 1000) / durationMs),
    );
  }
}

/** One count with a dimension (e.g. `BackupSucceeded` by `kind`), published on its own. */
export function addCount(name: string, dimension?: { readonly name: string; readonly value: string }): void {
  if (!dimension) {
    metrics.addMetric(name, MetricUnit.Count, 1);
    return;
  }
  const single = metrics.singleMetric();
  single.addDimension(dimension.name, dimension.value);
  single.addMetric(name, MetricUnit.Count, 1);
}
