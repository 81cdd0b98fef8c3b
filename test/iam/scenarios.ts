/**
 * What the IAM coverage tests share: runs through a world's deployment with the pool's sessions expiring
 * at a chosen state, the role that runs a step, a template with one grant taken away, and how a recorded
 * call reads in a failure message.
 */
import type { LocalStack, Template } from '../../world/local/aws/account.ts';
import type { AwsCall } from '../../world/local/aws/gateway.ts';
import type { LocalDeployment } from '../../world/local/local-deployment.ts';
import type { WorkflowEvent, WorkflowRun } from '../../world/local/run-workflow.ts';
import type { SynthesizedApp } from '../../world/local/synthesized-workflows.ts';
import type { BackupWorld } from '../world/backup-world.ts';

export interface SessionExpiry {
  /** Every pool session expires as this state is entered (its first time), so later XAPI steps log in again. */
  readonly expireSessionsAt?: string;
}

/**
 * Runs a workflow through the deployment. With `expireSessionsAt`, the simulator expires every session when
 * the execution enters that state: the state's own task starts only after the event (its worker has to
 * answer first), so the state and each XAPI step after it find the execution's session invalid and read the
 * pool secret to log in again.
 */
export async function runThrough(
  deployment: LocalDeployment,
  world: BackupWorld,
  workflow: 'backup' | 'restore',
  input: unknown,
  options: SessionExpiry = {},
): Promise<WorkflowRun & { readonly expired: number }> {
  let expired = 0;
  let armed = options.expireSessionsAt !== undefined;
  const onEvent = (event: WorkflowEvent) => {
    if (armed && event.type === 'StateEntered' && event.state === options.expireSessionsAt) {
      armed = false;
      expired = world.sim.openSessions().length;
      world.sim.expireSessions();
    }
  };
  const run =
    workflow === 'backup'
      ? await deployment.runBackup(input, onEvent)
      : await deployment.runRestore(input, onEvent);
  return { ...run, expired };
}

/** The role ARN of the function that runs `step` (`backup.plan`), found by its `VDI_VAULT_STEP`. */
export function roleOfStep(stack: LocalStack, step: string): string {
  const roles = stack
    .resourcesOfType('AWS::Lambda::Function')
    .filter(([, resource]) => {
      const variables = (
        resource.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined
      )?.Variables;
      return variables?.VDI_VAULT_STEP === step;
    })
    .map(([, resource]) => String(stack.resolve(resource.Properties?.Role)));
  if (roles.length !== 1) throw new Error(`${roles.length} functions run ${step}`);
  return roles[0]!;
}

/** The logical id of the role an ARN names, or undefined when it is no role of the template. */
export function roleLogicalId(stack: LocalStack, arn: string): string | undefined {
  const logicalId = stack.logicalIdOfArn(arn);
  return logicalId && stack.template.Resources[logicalId]?.Type === 'AWS::IAM::Role' ? logicalId : undefined;
}

/** A principal as a reader knows it: the role's logical id (its ARN when it is not the template's). */
export function principalName(stack: LocalStack, arn: string): string {
  return roleLogicalId(stack, arn) ?? arn;
}

export function describeCall(stack: LocalStack, call: AwsCall): string {
  return `${principalName(stack, call.principal)} ${call.action} on ${call.resource}: ${call.reason}`;
}

interface PolicyStatement {
  Effect?: string;
  Action?: string | string[];
}

/**
 * The app with `action` taken out of the policy statement that grants it to the role of `step`, nothing
 * else changed (the template is deep-cloned: `synthesizeApp` is memoized). Fails unless exactly one
 * statement of that role's own policies names the action, so the test cannot pass by removing nothing.
 */
export function withoutGrant(
  app: SynthesizedApp,
  stack: LocalStack,
  step: string,
  action: string,
): { app: SynthesizedApp; roleArn: string } {
  const template = structuredClone(app.template) as unknown as Template;
  const roleArn = roleOfStep(stack, step);
  const roleId = roleLogicalId(stack, roleArn) ?? fail(`${roleArn} is no role of the template`);
  const documents: { Statement: PolicyStatement[] }[] = [];
  for (const [logicalId, resource] of Object.entries(template.Resources)) {
    const properties = (resource.Properties ?? {}) as Record<string, unknown>;
    if (resource.Type === 'AWS::IAM::Policy') {
      const roles = (properties.Roles ?? []) as unknown[];
      if (!roles.some((role) => JSON.stringify(role) === JSON.stringify({ Ref: roleId }))) continue;
      if (roles.length !== 1) throw new Error(`${logicalId} is shared by ${roles.length} roles`);
      documents.push(properties.PolicyDocument as { Statement: PolicyStatement[] });
    } else if (logicalId === roleId) {
      for (const inline of (properties.Policies ?? []) as {
        PolicyDocument: { Statement: PolicyStatement[] };
      }[])
        documents.push(inline.PolicyDocument);
    }
  }
  let removed = 0;
  for (const document of documents) {
    document.Statement = document.Statement.flatMap((statement) => {
      const actions = [statement.Action ?? []].flat();
      if (statement.Effect !== 'Allow' || !actions.includes(action)) return [statement];
      removed++;
      const rest = actions.filter((candidate) => candidate !== action);
      if (rest.length === 0) return [];
      return [{ ...statement, Action: rest.length === 1 ? rest[0]! : rest }];
    });
  }
  if (removed !== 1)
    throw new Error(`${removed} statements of ${roleId} grant ${action}, expected exactly one`);
  return { app: { ...app, template: template as unknown as SynthesizedApp['template'] }, roleArn };
}

function fail(message: string): never {
  throw new Error(message);
}
