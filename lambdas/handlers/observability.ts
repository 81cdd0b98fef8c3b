import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy, { type MiddlewareObj, type MiddyfiedHandler } from '@middy/core';
import type { Context } from 'aws-lambda';
import {
  METRIC_NAMESPACE,
  METRIC_SERVICE,
  METRICS,
  TRANSFER_METRICS,
  type DimensionOf,
  type JobMetricName,
  type MetricName,
} from '../runtime/metric-table.ts';

/**
 * Powertools for AWS Lambda, one of each per container: structured JSON logs, CloudWatch metrics in EMF
 * (only the names of `lambdas/runtime/metric-table.ts`, through `publishMetric`), X-Ray traces. They
 * configure themselves from `POWERTOOLS_*` variables the infrastructure sets (service `vdi-vault`,
 * namespace `VdiVault`); outside a Lambda function the tracer stays off.
 */
export const logger = new Logger({ serviceName: METRIC_SERVICE });
export const metrics = new Metrics({ serviceName: METRIC_SERVICE, namespace: METRIC_NAMESPACE });
// Only Lambda hands the process a trace segment; in the Fargate task (where AWS_EXECUTION_ENV is set too)
// an enabled tracer logs a stack trace per request for the segment it cannot find.
export const tracer = new Tracer({
  serviceName: METRIC_SERVICE,
  enabled:
    process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined && process.env.POWERTOOLS_TRACE_ENABLED !== 'false',
});

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
      publishMetric('StepFailed', 1, { step });
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

/**
 * Publishes one metric of the table (`lambdas/runtime/metric-table.ts`): a name or a dimension it does not
 * list does not compile. Without dimensions it joins the invocation's batch (flushed by the middleware);
 * with dimensions it is written on its own, as Powertools' `singleMetric()` does.
 */
export function publishMetric<N extends MetricName>(
  name: N,
  value: number,
  dimensions: { readonly [D in DimensionOf<N>]?: string } = {},
): void {
  const unit = METRICS[name].unit;
  const given = Object.entries(dimensions as Record<string, string | undefined>).filter(
    (entry): entry is [string, string] => entry[1] !== undefined,
  );
  if (given.length === 0) {
    metrics.addMetric(name, unit, value);
    return;
  }
  const single = metrics.singleMetric();
  for (const [dimension, dimensionValue] of given) single.addDimension(dimension, dimensionValue);
  single.addMetric(name, unit, value);
}

/**
 * A metric as a total and, for a run a job's schedule started, once more with the job's name. Totals are
 * published, not summed from the jobs on the dashboard, so they include runs started outside any job and
 * keep the history of renamed or removed jobs (docs/design.md § Dashboard and metric names).
 */
export function publishForJob<N extends JobMetricName>(
  name: N,
  value: number,
  job: string | null | undefined,
  total: { readonly [D in Exclude<DimensionOf<N>, 'job'>]?: string } = {},
): void {
  type Dimensions = { readonly [D in DimensionOf<N>]?: string };
  publishMetric(name, value, total as Dimensions);
  if (job) publishMetric(name, value, { job } as Dimensions);
}

/** Bytes, duration and throughput of one transfer (export or import); an export by its job too. */
export function addTransferMetrics(
  direction: keyof typeof TRANSFER_METRICS,
  bytes: number,
  durationMs: number,
  job?: string | null,
): void {
  const throughput = durationMs > 0 ? Math.round((bytes * 1000) / durationMs) : undefined;
  if (direction === 'Exported') {
    const names = TRANSFER_METRICS.Exported;
    publishForJob(names.bytes, bytes, job);
    publishForJob(names.duration, durationMs, job);
    if (throughput !== undefined) publishForJob(names.throughput, throughput, job);
    return;
  }
  const names = TRANSFER_METRICS.Imported;
  publishMetric(names.bytes, bytes);
  publishMetric(names.duration, durationMs);
  if (throughput !== undefined) publishMetric(names.throughput, throughput);
}
