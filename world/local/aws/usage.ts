/**
 * Which granted actions a test run used: least privilege is only checkable once the grants nobody exercised
 * are listed.
 */
import type { LocalStack } from './account.ts';
import { expandAction } from './authorize.ts';
import type { AwsCall } from './gateway.ts';
import { stackPolicies } from './policies.ts';

/**
 * The actions the role's identity policies allow (Allow statements with `Action`), wildcards expanded
 * against iam-data's action list (`s3:GetObject*` → each action; `*` and `service:*` stay as written).
 * Lower-cased service prefix, action names as iam-data spells them.
 */
export async function grantedActions(stack: LocalStack, roleArn: string): Promise<string[]> {
  const policies = stackPolicies(stack).identity.get(roleArn);
  if (!policies) throw new Error(`${roleArn} is no role of the stack`);
  const granted = new Set<string>();
  for (const { document } of policies) {
    for (const statement of document.Statement) {
      if (statement.Effect !== 'Allow' || statement.Action === undefined) continue;
      for (const pattern of [statement.Action].flat()) {
        const whole = pattern === '*' || pattern.endsWith(':*');
        for (const action of whole ? [pattern] : await expandAction(pattern)) granted.add(normalize(action));
      }
    }
  }
  return [...granted].sort();
}

/** Per role: granted actions that no recorded call (allowed or not) used. */
export async function unusedGrants(
  stack: LocalStack,
  calls: readonly AwsCall[],
  principals: readonly string[],
): Promise<Record<string, string[]>> {
  const unused: Record<string, string[]> = {};
  for (const principal of principals) {
    const used = calls
      .filter((call) => call.principal === principal)
      .map((call) => call.action.toLowerCase());
    const usedSet = new Set(used);
    // A grant written `service:*` (or `*`) counts as used by any call it covers.
    const covered = (action: string) =>
      action === '*'
        ? used.length > 0
        : action.endsWith(':*')
          ? used.some((call) => call.startsWith(action.slice(0, -1)))
          : usedSet.has(action.toLowerCase());
    unused[principal] = (await grantedActions(stack, principal)).filter((action) => !covered(action));
  }
  return unused;
}

function normalize(action: string): string {
  const [service = '', name = ''] = action.split(':');
  return `${service.toLowerCase()}:${name}`;
}
