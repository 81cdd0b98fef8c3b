import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy, { type MiddlewareObj, type MiddyfiedHandler } from '@middy/core';
import type { Context } from 'aws-lambda';

/**
 * Powertools for AWS Lambda, one of each per container: structured JSON logs, CloudWatch metrics in EMF,
 * X-Ray traces. They configure themselves from `POWERTOOLS_*` variables the infrastructure sets
 * (service `vdi-vault`, namespace `VdiVault`); outside a Lambda function the tracer stays off.
 */
export const logger = new Logger({ serviceName: 'vdi-vault' });
export const metrics = new Metrics({ serviceName: 'vdi-vault', namespace: 'VdiVault' });
// Only Lambda hands the process a trace segment; in the Fargate task (where AWS_EXECUTION_ENV is set too)
// an enabled tracer logs a stack trace per request for the segment it cannot find.
export const tracer = new Tracer({
  serviceName: 'vdi-vault',
  enabled:
    process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined && process.env.POWERTOOLS_TRACE_ENABLED !== 'false',
});

export { MetricUnit };

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

/** A step's Lambda handler: `(event, context) => result`, the same entry for Lambda, Fargate and local runs. */
export type StepHandler<E, R> = MiddyfiedHandler<E, R, Error, Context>;

/**
 * Builds a step's handler with Powertools' own middleware: the Lambda context and correlation keys on every
 * log line (keys reset after each invocation), metrics flushed after each invocation with the cold-start
 * metric, and the handler traced when X-Ray is on. `StepFailed` counts failures, by step.
 */
export function stepHandler<E, R>(
  step: string,
  run: (event: E) => Promise<R>,
  measure?: Measure<E, R>,
): StepHandler<E, R> {
  const started = new WeakMap<object, number>();
  const correlation: MiddlewareObj<E, R, Error, Context> = {
    before: (request) => {
      started.set(request, Date.now());
      const keys = { step, ...correlationOf(request.event) };
      logger.appendKeys(keys);
      if (tracer.isTracingEnabled())
        for (const [key, value] of Object.entries(keys)) tracer.putAnnotation(key, value);
    },
    after: (request) => {
      measure?.(request.event, request.response as R, Date.now() - (started.get(request) ?? Date.now()));
    },
    onError: (request) => {
      const failed = metrics.singleMetric();
      failed.addDimension('step', step);
      failed.addMetric('StepFailed', MetricUnit.Count, 1);
      logger.error('step failed', { error: request.error ?? 'unknown' });
    },
  };
  return middy<E, R, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(logMetrics(metrics, { captureColdStartMetric: true }))
    .use(captureLambdaHandler(tracer, { captureResponse: false }))
    .use(correlation)
    .handler((event: E) => run(event));
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
