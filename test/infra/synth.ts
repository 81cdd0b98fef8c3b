import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp } from '../../infra/app.ts';
import type { VdiVaultStack } from '../../infra/vdi-vault-stack.ts';

export const POOL = { name: 'lab', url: 'https://xcp.example.com', secret: 'vdi-vault/lab' } as const;
export const VDI = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';
export const JOB = {
  name: 'nightly',
  pool: 'lab',
  vdiUuids: [VDI],
  schedule: 'cron(0 2 * * ? *)',
  timezone: 'Europe/Paris',
  retention: { keep: 14, fullEvery: 7 },
} as const;

export interface Synthesized {
  readonly app: App;
  readonly stack: VdiVaultStack;
  readonly template: Template;
}

/**
 * The app as `cdk synth` builds it (bundling skipped: only the template matters), from an inline config or
 * the shipped example. cdk-nag runs unless `nagChecks` is false: an unacknowledged finding throws.
 */
export function synth(config?: unknown, options: { nagChecks?: boolean } = {}): Synthesized {
  const context: Record<string, unknown> = { 'aws:cdk:bundling-stacks': [] };
  if (config !== undefined) context.config = config;
  const { app, stack } = buildApp(new App({ context }), options);
  return { app, stack, template: Template.fromStack(stack) };
}

interface Statement {
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, unknown>;
}

/** The statements of the policies attached to the role of the function whose logical id starts with `prefix`. */
export function statementsOf(template: Template, functionPrefix: string): Statement[] {
  const roles = template.findResources('AWS::IAM::Role');
  const roleId = Object.keys(roles).find((id) => id.startsWith(`${functionPrefix}ServiceRole`));
  if (!roleId) throw new Error(`no role for ${functionPrefix}`);
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((policy) => (policy.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleId))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

/** The actions a function may take, X-Ray's trace upload left out (every traced function has it). */
export function actionsOf(template: Template, functionPrefix: string): string[] {
  return statementsOf(template, functionPrefix)
    .flatMap((statement) => statement.Action)
    .filter((action) => !action.startsWith('xray:'))
    .sort();
}

/** The one resource of a type whose logical id starts with `prefix`. */
export function resourceOf(template: Template, type: string, prefix: string) {
  const entries = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith(prefix));
  if (entries.length !== 1) throw new Error(`${entries.length} ${type} named ${prefix}*`);
  return entries[0]![1] as { Properties: Record<string, unknown> };
}
