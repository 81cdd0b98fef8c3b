import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as backupHandlers from '../../lambdas/handlers/backup.ts';
import * as restoreHandlers from '../../lambdas/handlers/restore.ts';
import {
  OUT_OF_LAMBDA_ERRORS,
  SCHEDULED_STEPS,
  WORKFLOW_STEPS,
  type StepSpec,
} from '../../lambdas/runtime/step-table.ts';
import { TRANSFER_STEPS } from '../../lambdas/transfer/transfer-task.ts';
import { LocalStack } from '../../world/local/aws/account.ts';
import { visitStates } from '../../world/local/synthesized-workflows.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { synth } from './synth.ts';

const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const OBSERVABILITY = fileURLToPath(new URL('../../lambdas/handlers/observability.ts', import.meta.url));

type Json = Record<string, unknown>;
const { template } = synth(undefined, { nagChecks: false });
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Json }>;
const functions = Object.entries(resources).filter(
  ([, resource]) =>
    resource.Type === 'AWS::Lambda::Function' &&
    (resource.Properties.Environment as { Variables?: Json } | undefined)?.Variables?.VDI_VAULT_STEP,
);
const stepOf = (properties: Json) =>
  (properties.Environment as { Variables: Record<string, string> }).Variables.VDI_VAULT_STEP!;
const lambdaSteps = Object.entries(WORKFLOW_STEPS).flatMap(([workflow, steps]) =>
  Object.values(steps as Record<string, StepSpec>)
    .filter((spec) => !spec.fargateOnly)
    .map((spec) => ({ workflow, spec })),
);
// Scheduled functions (outside the workflows) are built from their own table, in the backup bundle.
const scheduledSteps = Object.values(SCHEDULED_STEPS as Record<string, StepSpec>).map((spec) => ({
  workflow: 'backup',
  spec,
}));
const specs = new Map(
  [...lambdaSteps, ...scheduledSteps].map(({ workflow, spec }) => [`${workflow}.${spec.name}`, spec]),
);
const specOf = (properties: Json): StepSpec => specs.get(stepOf(properties))!;

describe('one step runtime: the table builds functions and handlers', () => {
  it('every Lambda step of the tables is one function with its handler, memory and timeout; nothing else', () => {
    expect(functions.map(([, fn]) => stepOf(fn.Properties)).sort()).toEqual([...specs.keys()].sort());
    for (const [, fn] of functions) {
      const spec = specOf(fn.Properties);
      expect(fn.Properties.Handler).toBe(`index.${spec.name}`);
      expect(fn.Properties.Timeout).toBe(spec.timeoutSeconds);
      expect(fn.Properties.MemorySize).toBe(spec.memoryMiB);
    }
  });

  it('each workflow bundle exports exactly one handler per step of the table (backup: and the scheduled ones)', () => {
    expect(Object.keys(backupHandlers).sort()).toEqual(
      [...Object.keys(WORKFLOW_STEPS.backup), ...Object.keys(SCHEDULED_STEPS)].sort(),
    );
    expect(Object.keys(restoreHandlers).sort()).toEqual(Object.keys(WORKFLOW_STEPS.restore).sort());
  });

  it('the Fargate task can run exactly the transfer steps of the table', () => {
    const transfers = Object.entries(WORKFLOW_STEPS).flatMap(([workflow, steps]) =>
      Object.values(steps as Record<string, StepSpec>)
        .filter((spec) => spec.transfer)
        .map((spec) => `${workflow}.${spec.name}`),
    );
    expect([...TRANSFER_STEPS].sort()).toEqual(transfers.sort());
  });

  it('16: each transfer state outlasts its Lambda, and a Lambda out of time or memory goes to Fargate', () => {
    const stack = new LocalStack(template.toJSON() as never);
    const states = new Map<string, Json>();
    for (const [id, resource] of Object.entries(resources)) {
      if (resource.Type !== 'AWS::StepFunctions::StateMachine') continue;
      const definition = JSON.parse(stack.resolve(resource.Properties.DefinitionString) as string) as Json;
      visitStates(definition as never, (name, state) => states.set(name, state as Json));
      expect(id).toBeTruthy();
    }
    for (const { spec } of lambdaSteps.filter(({ spec }) => spec.transfer)) {
      const state = states.get(spec.states[0]!)!;
      expect(state.TimeoutSeconds, spec.states[0]).toBeGreaterThan(spec.timeoutSeconds);
      const caught = (state.Catch as { ErrorEquals: string[] }[]).flatMap((entry) => entry.ErrorEquals);
      expect(caught).toEqual(expect.arrayContaining([...OUT_OF_LAMBDA_ERRORS]));
    }
  });

  it('6: Login and every step that may log in again (its session expired) read the secret, nothing else does', () => {
    const policies = Object.values(resources).filter((resource) => resource.Type === 'AWS::IAM::Policy');
    for (const [logicalId, fn] of functions) {
      const spec = specOf(fn.Properties);
      const role = JSON.stringify((fn.Properties.Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0]);
      const readsSecret = policies.some(
        (policy) =>
          JSON.stringify(policy.Properties.Roles).includes(role) &&
          JSON.stringify(policy.Properties.PolicyDocument).includes('secretsmanager:GetSecretValue'),
      );
      expect(readsSecret, `${logicalId} (${stepOf(fn.Properties)})`).toBe(spec.logsIn);
    }
  });
});

describe('11: the tracer is on in Lambda only', () => {
  const tracingEnabled = (env: Record<string, string>) => {
    const result = spawnSync(
      NODE,
      [
        '--input-type=module',
        '-e',
        `const { tracer } = await import(${JSON.stringify(OBSERVABILITY)}); process.stdout.write(String(tracer.isTracingEnabled()));`,
      ],
      { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' },
    );
    expect(result.status, result.stderr).toBe(0);
    return result.stdout;
  };

  it('is off in the Fargate task, where ECS sets AWS_EXECUTION_ENV', () => {
    expect(tracingEnabled({ AWS_EXECUTION_ENV: 'AWS_ECS_FARGATE' })).toBe('false');
  });

  it('is on in a Lambda function', () => {
    expect(
      tracingEnabled({ AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x', AWS_LAMBDA_FUNCTION_NAME: 'f' }),
    ).toBe('true');
  });
});

describe('the handlers as Lambda runs them: Powertools middleware', () => {
  let world: BackupWorld;
  const lines: { source: string; line: string }[] = [];
  beforeAll(async () => {
    world = await startBackupWorld({
      target: { onLog: (source, line) => lines.push({ source, line }) },
    });
  });
  afterAll(() => world?.close());

  it('logs JSON with the Lambda context and the step, and publishes ColdStart and StepFailed metrics', async () => {
    const run = await world.restore({ vdiUuid: 'not-a-uuid', srUuid: world.sim.srs.shared.uuid });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('InputValidationError');
    // A worker's output reaches us after its answer, as Lambda's logs reach CloudWatch after the result.
    await expect
      .poll(() => lines.some(({ line }) => line.includes('step failed')), { timeout: 5000 })
      .toBe(true);
    const json = lines
      .map(({ line }) => {
        try {
          return JSON.parse(line) as Json;
        } catch {
          return undefined;
        }
      })
      .filter((entry): entry is Json => entry !== undefined);
    const failure = json.find((entry) => entry.message === 'step failed');
    expect(failure).toMatchObject({ step: 'restore.validate', level: 'ERROR', cold_start: true });
    expect(String(failure?.function_name)).toContain('RestoreValidateFunction');
    const metrics = json.filter((entry) => entry._aws !== undefined);
    const names = metrics.flatMap((entry) =>
      (entry._aws as { CloudWatchMetrics: { Metrics: { Name: string }[] }[] }).CloudWatchMetrics.flatMap(
        (directive) => directive.Metrics.map((metric) => metric.Name),
      ),
    );
    expect(names).toEqual(expect.arrayContaining(['ColdStart', 'StepFailed']));
  });
});
