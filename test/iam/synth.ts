/**
 * The stack's template as `cdk synth` emits it (bundling skipped), once per test process, and the ways the
 * IAM tests find things in it without depending on logical ids that other work may rename.
 */
import { App } from 'aws-cdk-lib';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../../infra/app.ts';
import { LocalStack } from '../../world/local/aws/account.ts';
import type { PhysicalOverrides, Template, TemplateResource } from '../../world/local/aws/account.ts';

let cached: Template | undefined;

/** A fresh deep copy each call, so a test may add resources to its own. */
export function synthesizedTemplate(): Template {
  if (!cached) {
    const outdir = mkdtempSync(join(tmpdir(), 'vdi-vault-iam-'));
    try {
      const { app, stack } = buildApp(new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } }), {
        nagChecks: false,
      });
      cached = app.synth().getStackByName(stack.stackName).template as Template;
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  }
  return structuredClone(cached);
}

export function synthesizedStack(
  overrides?: PhysicalOverrides,
  template = synthesizedTemplate(),
): LocalStack {
  return new LocalStack(template, overrides);
}

/** The one resource of `type` (e.g. the vault's key), or the one whose logical id starts with `prefix`. */
export function onlyOf(template: Template, type: string, prefix = ''): string {
  const ids = Object.entries(template.Resources)
    .filter(([id, resource]) => resource.Type === type && id.startsWith(prefix))
    .map(([id]) => id);
  if (ids.length !== 1)
    throw new Error(`${ids.length} ${type} resources named ${prefix}*: ${ids.join(', ')}`);
  return ids[0]!;
}

/** The role ARN of the Lambda function that runs `step` (e.g. `backup.plan`). */
export function functionRole(stack: LocalStack, step: string): string {
  for (const [logicalId, resource] of stack.resourcesOfType('AWS::Lambda::Function')) {
    const variables = stack.resolve(
      (resource.Properties?.Environment as { Variables?: unknown } | undefined)?.Variables,
    ) as Record<string, string> | undefined;
    const [workflow = '', name = ''] = step.split('.');
    const pascal = (word: string) =>
      word.replace(/(^|-)(\w)/g, (_, _dash: string, c: string) => c.toUpperCase());
    if (
      variables?.VDI_VAULT_STEP === step ||
      logicalId.startsWith(`${pascal(workflow)}${pascal(name)}Function`)
    ) {
      return String(stack.resolve(resource.Properties?.Role));
    }
  }
  throw new Error(`no function runs ${step}`);
}

/** A test-only role with inline statements (resolved like the template's own). */
export function testRole(statements: unknown[]): TemplateResource {
  return {
    Type: 'AWS::IAM::Role',
    Properties: {
      AssumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' },
        ],
      },
      ...(statements.length > 0
        ? {
            Policies: [
              { PolicyName: 'test', PolicyDocument: { Version: '2012-10-17', Statement: statements } },
            ],
          }
        : {}),
    },
  };
}
