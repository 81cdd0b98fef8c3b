/**
 * People, not functions: an operator is a principal holding exactly one managed policy of the stack (the
 * `OperatorPolicy` the stack outputs), and the CLI's control-plane calls (Step Functions, CloudFormation) are
 * translated into the IAM requests AWS evaluates for them and authorized like the functions' calls (the gateway
 * records HTTP services; these calls never reach it). S3 needs nothing here: the gateway serves any role of the
 * template, this one included.
 */
import { LOCAL_ACCOUNT } from './account.ts';
import type { LocalStack, Template } from './account.ts';
import { authorize, globalContext } from './authorize.ts';
import type { Decision } from './authorize.ts';

const { accountId, region, partition } = LOCAL_ACCOUNT;

export const OPERATOR_ROLE_LOGICAL_ID = 'LocalOperatorRole';

/**
 * A copy of `template` with one more role, `roleName` (default `operator`: ARN
 * `arn:aws:iam::123456789012:role/operator`), whose only policy is the managed policy `policyLogicalId`
 * (default: the one output `OperatorPolicyArn` names), attached as `aws iam attach-role-policy` would, and which
 * the account's principals may assume. Its ARN is `new LocalStack(copy).arnOf(OPERATOR_ROLE_LOGICAL_ID)`.
 */
export function withOperatorRole(
  template: Template,
  options: { readonly roleName?: string; readonly policyLogicalId?: string } = {},
): { template: Template; policyLogicalId: string } {
  const policyLogicalId = options.policyLogicalId ?? operatorPolicyLogicalId(template);
  if (template.Resources[policyLogicalId]?.Type !== 'AWS::IAM::ManagedPolicy')
    throw new Error(`${policyLogicalId} is no managed policy of the template`);
  const copy = structuredClone(template);
  copy.Resources[OPERATOR_ROLE_LOGICAL_ID] = {
    Type: 'AWS::IAM::Role',
    Properties: {
      RoleName: options.roleName ?? 'operator',
      AssumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: `arn:${partition}:iam::${accountId}:root` },
            Action: 'sts:AssumeRole',
          },
        ],
      },
      ManagedPolicyArns: [{ Ref: policyLogicalId }],
    },
  };
  return { template: copy, policyLogicalId };
}

/** The managed policy the stack outputs as `OperatorPolicyArn`. */
export function operatorPolicyLogicalId(template: Template): string {
  const value = template.Outputs?.OperatorPolicyArn?.Value as { Ref?: unknown } | undefined;
  if (typeof value?.Ref !== 'string') throw new Error('the template has no output OperatorPolicyArn');
  return value.Ref;
}

/** The services whose calls the CLI makes through its stubbed clients, and the KMS use they cause. */
export type ControlPlaneService = 'states' | 'cloudformation' | 'kms';

export interface ControlPlaneRequest {
  readonly principal: string;
  readonly service: ControlPlaneService;
  readonly action: string;
  readonly resource: string;
  readonly context: Record<string, string | string[]>;
}

/**
 * The IAM requests AWS evaluates, in order, for one Step Functions or CloudFormation API command (the SDK
 * command's class name and input, as a client's `send` receives them). An unmapped command throws: a new call
 * of the CLI gets mapped before it can pass unchecked.
 *
 * A state machine encrypted with a customer managed key makes Step Functions call KMS with the caller's
 * credentials (Step Functions developer guide, "Data at rest encryption", table "Required permissions for API
 * callers": StartExecution `--`, DescribeExecution and GetExecutionHistory `kms:Decrypt`; the execution role,
 * not the caller, encrypts the execution's data), in the encryption context `aws:states:stateMachineArn` and
 * through `states.<region>.amazonaws.com` (CloudTrail shows these calls `invokedBy` Step Functions).
 */
export function controlPlaneRequests(
  stack: LocalStack,
  principal: string,
  command: string,
  input: Readonly<Record<string, unknown>>,
): ControlPlaneRequest[] {
  const request = (
    service: ControlPlaneService,
    action: string,
    resource: string,
    context: Record<string, string | string[]> = {},
  ): ControlPlaneRequest => ({ principal, service, action, resource, context });
  const field = (name: string): string => {
    const value = input[name];
    if (typeof value !== 'string') throw new Error(`${command}: no ${name} in ${JSON.stringify(input)}`);
    return value;
  };
  /** Step Functions' kms:Decrypt of an encrypted execution's data, for the caller. */
  const decryptFor = (executionArn: string): ControlPlaneRequest[] => {
    const machineArn = stateMachineOfExecution(executionArn);
    const keyArn = stateMachineKey(stack, machineArn);
    if (keyArn === undefined) return [];
    return [
      request('kms', 'kms:Decrypt', keyArn, {
        'kms:ViaService': `states.${region}.amazonaws.com`,
        'kms:CallerAccount': accountId,
        'kms:EncryptionContext:aws:states:stateMachineArn': machineArn,
        'kms:EncryptionContextKeys': ['aws:states:stateMachineArn'],
        'aws:ViaAWSService': 'true',
      }),
    ];
  };
  switch (command) {
    case 'StartExecutionCommand':
      return [request('states', 'states:StartExecution', field('stateMachineArn'))];
    case 'ListExecutionsCommand':
      return [request('states', 'states:ListExecutions', field('stateMachineArn'))];
    case 'DescribeExecutionCommand': {
      const executionArn = field('executionArn');
      return [
        request('states', 'states:DescribeExecution', executionArn),
        ...(input.includedData === 'METADATA_ONLY' ? [] : decryptFor(executionArn)),
      ];
    }
    case 'GetExecutionHistoryCommand': {
      const executionArn = field('executionArn');
      return [request('states', 'states:GetExecutionHistory', executionArn), ...decryptFor(executionArn)];
    }
    case 'DescribeStacksCommand':
      return [
        request('cloudformation', 'cloudformation:DescribeStacks', stackArn(stack, field('StackName'))),
      ];
    default:
      throw new Error(`no IAM mapping for ${command}: add it to controlPlaneRequests`);
  }
}

/** A control-plane call as authorized: the request with the global context, and the decision. */
export interface ControlPlaneCall extends ControlPlaneRequest {
  readonly allowed: boolean;
  readonly reason: string;
  readonly at: number;
}

/** Authorizes one request as the gateway authorizes HTTP calls (the global context keys added). */
export async function authorizeControlPlane(
  stack: LocalStack,
  request: ControlPlaneRequest,
): Promise<[Decision, ControlPlaneCall]> {
  const context = { ...globalContext(request.principal), ...request.context };
  const decision = await authorize(stack, { ...request, context });
  return [
    decision,
    { ...request, context, allowed: decision.allowed, reason: decision.reason, at: Date.now() },
  ];
}

/** `arn:…:execution:<state machine name>:<execution name>` → `arn:…:stateMachine:<state machine name>`. */
export function stateMachineOfExecution(executionArn: string): string {
  const parts = executionArn.split(':');
  if (parts[2] !== 'states' || parts[5] !== 'execution' || parts.length !== 8)
    throw new Error(`${executionArn} is not the ARN of a standard workflow's execution`);
  return [...parts.slice(0, 5), 'stateMachine', parts[6]].join(':');
}

/** The customer managed key a state machine of the stack is encrypted with, if any. */
function stateMachineKey(stack: LocalStack, machineArn: string): string | undefined {
  const logicalId = stack.logicalIdOfArn(machineArn);
  const machine = logicalId === undefined ? undefined : stack.template.Resources[logicalId];
  if (machine?.Type !== 'AWS::StepFunctions::StateMachine') return undefined;
  const encryption = stack.resolve(machine.Properties?.EncryptionConfiguration) as
    { Type?: string; KmsKeyId?: string } | undefined;
  if (encryption?.Type !== 'CUSTOMER_MANAGED_KMS_KEY' || !encryption.KmsKeyId) return undefined;
  const key = encryption.KmsKeyId;
  if (key.includes('alias/')) throw new Error(`${machineArn}: a key given by alias (${key}) is not modelled`);
  return key.startsWith('arn:') ? key : `arn:${partition}:kms:${region}:${accountId}:key/${key}`;
}

/** The stack a DescribeStacks names (by name or ARN): its ARN, unique id included, when it is this stack. */
function stackArn(stack: LocalStack, stackName: string): string {
  const id = stack.resolve({ Ref: 'AWS::StackId' }) as string;
  if (stackName === id || stackName === stack.resolve({ Ref: 'AWS::StackName' })) return id;
  return stackName.startsWith('arn:')
    ? stackName
    : `arn:${partition}:cloudformation:${region}:${accountId}:stack/${stackName}/*`;
}
