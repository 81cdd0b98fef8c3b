/**
 * Every IAM policy a synthesized stack puts in the account, resolved to plain JSON and indexed the way AWS
 * looks them up: identity policies per role ARN, trust policies per role ARN, resource policies per
 * resource ARN (bucket, key, topic, queue, secret, function).
 */
import { LOCAL_ACCOUNT } from './account.ts';
import type { LocalStack } from './account.ts';

export interface PolicyDocument {
  Version?: string;
  Id?: string;
  Statement: PolicyStatement[];
}
export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Principal?: unknown;
  NotPrincipal?: unknown;
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, unknown>>;
}
/** A policy and where it came from (`<logical id>` of the template, or `aws-managed:<name>`). */
export interface NamedPolicy {
  readonly name: string;
  readonly document: PolicyDocument;
}
export interface StackPolicies {
  /** Role ARN → the policies attached to it (inline, AWS::IAM::Policy, customer and AWS managed). */
  readonly identity: ReadonlyMap<string, readonly NamedPolicy[]>;
  /** Role ARN → its trust policy (the resource policy of `sts:AssumeRole` on it). */
  readonly trust: ReadonlyMap<string, NamedPolicy>;
  /** Resource ARN (bucket, key, topic, queue, secret, function) → its resource policy. */
  readonly resource: ReadonlyMap<string, NamedPolicy>;
  /** Customer managed policy ARN → the policy, attached or not (e.g. an operator policy for the CLI). */
  readonly managed: ReadonlyMap<string, NamedPolicy>;
}

const { accountId, region, partition } = LOCAL_ACCOUNT;

/**
 * The AWS managed policies CDK attaches, as documented by AWS (IAM console, policy version current in 2025).
 * Only their statements matter here; an unknown one is an error so that it gets added rather than ignored.
 */
export const AWS_MANAGED_POLICIES: Readonly<Record<string, PolicyDocument>> = {
  'service-role/AWSLambdaBasicExecutionRole': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: '*',
      },
    ],
  },
  'service-role/AWSLambdaVPCAccessExecutionRole': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: [
          'logs:CreateLogGroup',
          'logs:CreateLogStream',
          'logs:PutLogEvents',
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        Resource: '*',
      },
    ],
  },
  AWSXRayDaemonWriteAccess: {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: [
          'xray:PutTraceSegments',
          'xray:PutTelemetryRecords',
          'xray:GetSamplingRules',
          'xray:GetSamplingTargets',
          'xray:GetSamplingStatisticSummaries',
        ],
        Resource: '*',
      },
    ],
  },
  'service-role/AmazonECSTaskExecutionRolePolicy': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: [
          'ecr:GetAuthorizationToken',
          'ecr:BatchCheckLayerAvailability',
          'ecr:GetDownloadUrlForLayer',
          'ecr:BatchGetImage',
          'logs:CreateLogStream',
          'logs:PutLogEvents',
        ],
        Resource: '*',
      },
    ],
  },
};

/** The policy CloudFormation gives a KMS key created without `KeyPolicy`: the account root, i.e. IAM decides. */
const DEFAULT_KEY_POLICY: PolicyDocument = {
  Version: '2012-10-17',
  Statement: [
    {
      Effect: 'Allow',
      Principal: { AWS: `arn:${partition}:iam::${accountId}:root` },
      Action: 'kms:*',
      Resource: '*',
    },
  ],
};

/** SNS's default topic policy (until a TopicPolicy replaces it): the owner account's principals. */
function defaultTopicPolicy(topicArn: string): PolicyDocument {
  return {
    Version: '2008-10-17',
    Statement: [
      {
        Sid: '__default_statement_ID',
        Effect: 'Allow',
        Principal: { AWS: '*' },
        Action: [
          'SNS:GetTopicAttributes',
          'SNS:SetTopicAttributes',
          'SNS:AddPermission',
          'SNS:RemovePermission',
          'SNS:DeleteTopic',
          'SNS:Subscribe',
          'SNS:ListSubscriptionsByTopic',
          'SNS:Publish',
        ],
        Resource: topicArn,
        Condition: { StringEquals: { 'AWS:SourceOwner': accountId } },
      },
    ],
  };
}

const cache = new WeakMap<LocalStack, StackPolicies>();

/** The stack's policies, resolved once per LocalStack. */
export function stackPolicies(stack: LocalStack): StackPolicies {
  let policies = cache.get(stack);
  if (!policies) {
    policies = extract(stack);
    cache.set(stack, policies);
  }
  return policies;
}

/** The resource policy AWS evaluates for a request on `resourceArn` (an object's is its bucket's). */
export function resourcePolicyFor(
  policies: StackPolicies,
  action: string,
  resourceArn: string,
): NamedPolicy | undefined {
  if (action.toLowerCase() === 'sts:assumerole') return policies.trust.get(resourceArn);
  if (resourceArn.startsWith(`arn:${partition}:s3:::`)) {
    return policies.resource.get(resourceArn.split('/')[0]!);
  }
  if (resourceArn.startsWith(`arn:${partition}:lambda:`)) {
    // A qualified function ARN (version or alias) shares the function's policy.
    return policies.resource.get(resourceArn.split(':').slice(0, 7).join(':'));
  }
  return policies.resource.get(resourceArn);
}

function extract(stack: LocalStack): StackPolicies {
  const identity = new Map<string, NamedPolicy[]>();
  const trust = new Map<string, NamedPolicy>();
  const resource = new Map<string, NamedPolicy>();
  const managed = new Map<string, NamedPolicy>();
  const roleArnByName = new Map<string, string>();
  const attach = (roleArn: string, policy: NamedPolicy) => {
    const list = identity.get(roleArn) ?? [];
    if (!list.some((existing) => existing.name === policy.name)) list.push(policy);
    identity.set(roleArn, list);
  };
  const document = (value: unknown, where: string): PolicyDocument => {
    const resolved = stack.resolve(value) as PolicyDocument | undefined;
    if (!resolved || typeof resolved !== 'object') throw new Error(`${where}: no policy document`);
    return { ...resolved, Statement: [resolved.Statement].flat() };
  };
  const addResourcePolicy = (arn: string, policy: NamedPolicy) => {
    const existing = resource.get(arn);
    resource.set(
      arn,
      existing
        ? {
            name: `${existing.name}+${policy.name}`,
            document: {
              ...existing.document,
              Statement: [...existing.document.Statement, ...policy.document.Statement],
            },
          }
        : policy,
    );
  };

  for (const [logicalId, role] of stack.resourcesOfType('AWS::IAM::Role')) {
    const roleArn = stack.arnOf(logicalId);
    roleArnByName.set(stack.ref(logicalId), roleArn);
    identity.set(roleArn, []);
    const props = role.Properties ?? {};
    trust.set(roleArn, {
      name: `${logicalId} trust policy`,
      document: document(props.AssumeRolePolicyDocument, logicalId),
    });
    for (const inline of (props.Policies as { PolicyName: unknown; PolicyDocument: unknown }[] | undefined) ??
      []) {
      const name = `${logicalId}/${String(stack.resolve(inline.PolicyName))}`;
      attach(roleArn, { name, document: document(inline.PolicyDocument, name) });
    }
  }
  const roleArn = (name: string) =>
    roleArnByName.get(name) ?? `arn:${partition}:iam::${accountId}:role/${name}`;
  const rolesOf = (props: Record<string, unknown>) =>
    ((stack.resolve(props.Roles) as string[] | undefined) ?? []).map(roleArn);

  for (const [logicalId, policy] of stack.resourcesOfType('AWS::IAM::Policy')) {
    const props = policy.Properties ?? {};
    const named = { name: logicalId, document: document(props.PolicyDocument, logicalId) };
    for (const arn of rolesOf(props)) attach(arn, named);
  }
  for (const [logicalId, policy] of stack.resourcesOfType('AWS::IAM::ManagedPolicy')) {
    const props = policy.Properties ?? {};
    const named = { name: logicalId, document: document(props.PolicyDocument, logicalId) };
    managed.set(stack.ref(logicalId), named);
    for (const arn of rolesOf(props)) attach(arn, named);
  }
  for (const [logicalId, role] of stack.resourcesOfType('AWS::IAM::Role')) {
    for (const policyArn of (stack.resolve(role.Properties?.ManagedPolicyArns) as string[] | undefined) ??
      []) {
      attach(stack.arnOf(logicalId), managedPolicy(policyArn, managed));
    }
  }

  for (const [logicalId, policy] of stack.resourcesOfType('AWS::S3::BucketPolicy')) {
    const bucket = String(stack.resolve(policy.Properties?.Bucket));
    addResourcePolicy(`arn:${partition}:s3:::${bucket}`, {
      name: logicalId,
      document: document(policy.Properties?.PolicyDocument, logicalId),
    });
  }
  for (const [logicalId, key] of stack.resourcesOfType('AWS::KMS::Key')) {
    const keyPolicy = key.Properties?.KeyPolicy;
    resource.set(stack.arnOf(logicalId), {
      name: `${logicalId} key policy`,
      document: keyPolicy === undefined ? DEFAULT_KEY_POLICY : document(keyPolicy, logicalId),
    });
  }
  const topicPolicies = stack.resourcesOfType('AWS::SNS::TopicPolicy');
  for (const [logicalId, policy] of topicPolicies) {
    const named = { name: logicalId, document: document(policy.Properties?.PolicyDocument, logicalId) };
    for (const topic of stack.resolve(policy.Properties?.Topics) as string[]) addResourcePolicy(topic, named);
  }
  for (const [logicalId] of stack.resourcesOfType('AWS::SNS::Topic')) {
    const topicArn = stack.ref(logicalId);
    if (!resource.has(topicArn))
      resource.set(topicArn, { name: `${logicalId} default policy`, document: defaultTopicPolicy(topicArn) });
  }
  for (const [logicalId, policy] of stack.resourcesOfType('AWS::SQS::QueuePolicy')) {
    const named = { name: logicalId, document: document(policy.Properties?.PolicyDocument, logicalId) };
    for (const url of stack.resolve(policy.Properties?.Queues) as string[]) {
      const [, , host, account, name] = url.split('/');
      const queueRegion = host?.split('.')[1] ?? region;
      addResourcePolicy(`arn:${partition}:sqs:${queueRegion}:${account}:${name}`, named);
    }
  }
  for (const [logicalId, policy] of stack.resourcesOfType('AWS::SecretsManager::ResourcePolicy')) {
    addResourcePolicy(String(stack.resolve(policy.Properties?.SecretId)), {
      name: logicalId,
      document: document(policy.Properties?.ResourcePolicy, logicalId),
    });
  }
  for (const [logicalId, permission] of stack.resourcesOfType('AWS::Lambda::Permission')) {
    addResourcePolicy(...lambdaPermission(stack, logicalId, permission.Properties ?? {}));
  }
  return { identity, trust, resource, managed };
}

function managedPolicy(policyArn: string, managed: ReadonlyMap<string, NamedPolicy>): NamedPolicy {
  const customer = managed.get(policyArn);
  if (customer) return customer;
  const awsManaged = /^arn:[^:]+:iam::aws:policy\/(.+)$/.exec(policyArn)?.[1];
  const document = awsManaged === undefined ? undefined : AWS_MANAGED_POLICIES[awsManaged];
  if (!document) {
    throw new Error(
      `managed policy ${policyArn} is not modelled: add its statements to AWS_MANAGED_POLICIES`,
    );
  }
  return { name: `aws-managed:${awsManaged}`, document };
}

/** An AWS::Lambda::Permission as the statement Lambda adds to the function's resource policy. */
function lambdaPermission(
  stack: LocalStack,
  logicalId: string,
  props: Record<string, unknown>,
): [string, NamedPolicy] {
  const given = String(stack.resolve(props.FunctionName));
  const functionArn = given.startsWith('arn:')
    ? given
    : `arn:${partition}:lambda:${region}:${accountId}:function:${given}`;
  const principal = String(stack.resolve(props.Principal));
  const conditions: Record<string, Record<string, unknown>> = {};
  if (props.SourceArn !== undefined) conditions.ArnLike = { 'AWS:SourceArn': stack.resolve(props.SourceArn) };
  if (props.SourceAccount !== undefined) {
    conditions.StringEquals = { 'AWS:SourceAccount': stack.resolve(props.SourceAccount) };
  }
  const statement: PolicyStatement = {
    Sid: logicalId,
    Effect: 'Allow',
    Principal: principal.endsWith('.amazonaws.com') ? { Service: principal } : { AWS: principal },
    Action: String(stack.resolve(props.Action)),
    Resource: functionArn,
    ...(Object.keys(conditions).length > 0 ? { Condition: conditions } : {}),
  };
  return [functionArn, { name: logicalId, document: { Version: '2012-10-17', Statement: [statement] } }];
}
