/**
 * The calls AWS services make for the stack (alarms and rules publishing, schedules starting executions,
 * Step Functions using its key and running the transfer task), evaluated statically on the synthesized
 * template with the context each service sends. No network: these are the paths no local run exercises.
 */
import { describe, expect, it } from 'vitest';
import { LOCAL_ACCOUNT } from '../../world/local/aws/account.ts';
import { authorize } from '../../world/local/aws/authorize.ts';
import type { AwsRequest } from '../../world/local/aws/authorize.ts';
import { onlyOf, synthesizedStack } from './synth.ts';

const { accountId: acct, region } = LOCAL_ACCOUNT;
const stack = synthesizedStack();
const template = stack.template;

async function expectAllowed(request: AwsRequest): Promise<void> {
  const decision = await authorize(stack, request);
  expect(
    decision.allowed,
    `${request.principal} ${request.action} on ${request.resource}: ${decision.reason}`,
  ).toBe(true);
}

const props = (logicalId: string) =>
  stack.resolve(template.Resources[logicalId]!.Properties ?? {}) as Record<string, unknown>;
const topicId = onlyOf(template, 'AWS::SNS::Topic');
const topicArn = stack.ref(topicId);
const topicKey = String(props(topicId).KmsMasterKeyId);
const snsKmsContext = {
  'kms:ViaService': `sns.${region}.amazonaws.com`,
  'kms:EncryptionContext:aws:sns:topicArn': topicArn,
  'kms:EncryptionContextKeys': ['aws:sns:topicArn'],
};
const alarms = stack
  .resourcesOfType('AWS::CloudWatch::Alarm')
  .map(([id]) => id)
  .filter((id) => [props(id).AlarmActions, props(id).OKActions].flat().includes(topicArn));
const topicRules = stack
  .resourcesOfType('AWS::Events::Rule')
  .map(([id]) => id)
  .filter((id) =>
    ((props(id).Targets as { Arn: string }[] | undefined) ?? []).some((target) => target.Arn === topicArn),
  );

interface Machine {
  readonly id: string;
  readonly arn: string;
  readonly role: string;
  readonly key?: string;
  readonly definition: unknown;
}
const machines: Machine[] = stack.resourcesOfType('AWS::StepFunctions::StateMachine').map(([id]) => {
  const { RoleArn, EncryptionConfiguration, DefinitionString } = props(id) as {
    RoleArn: string;
    EncryptionConfiguration?: { Type: string; KmsKeyId?: string };
    DefinitionString: string;
  };
  const key =
    EncryptionConfiguration?.Type === 'CUSTOMER_MANAGED_KMS_KEY'
      ? EncryptionConfiguration.KmsKeyId
      : undefined;
  return {
    id,
    arn: stack.ref(id),
    role: RoleArn,
    ...(key ? { key } : {}),
    definition: JSON.parse(DefinitionString),
  };
});

/** Every Task state of a definition, Map and Parallel branches included. */
function tasks(definition: unknown): { Resource: string; Parameters?: Record<string, unknown> }[] {
  const found: { Resource: string; Parameters?: Record<string, unknown> }[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    const state = node as { Type?: string; Resource?: string; Parameters?: Record<string, unknown> };
    if (state.Type === 'Task' && state.Resource) found.push(state as { Resource: string });
    Object.values(node).forEach(walk);
  };
  walk(definition);
  return found;
}

describe('CloudWatch alarms notify the encrypted topic', () => {
  it('has alarms acting on the topic', () => expect(alarms.length).toBeGreaterThan(0));

  it.each(alarms)('the topic policy lets cloudwatch.amazonaws.com publish for alarm %s', async (alarm) => {
    await expectAllowed({
      principal: 'cloudwatch.amazonaws.com',
      action: 'sns:Publish',
      resource: topicArn,
      context: { 'aws:SourceArn': stack.arnOf(alarm), 'aws:SourceAccount': acct },
    });
  });

  // SNS makes these KMS calls as the publishing service principal, with the topic as encryption context. AWS
  // documents the key-policy statement for CloudWatch with no condition and no aws:SourceAccount on these
  // requests, so the context here has none: a key policy that needs it would not be shown to work.
  it.each(['kms:GenerateDataKey', 'kms:Decrypt'])(
    'the key policy lets cloudwatch.amazonaws.com %s for the topic',
    async (action) => {
      await expectAllowed({
        principal: 'cloudwatch.amazonaws.com',
        action,
        resource: topicKey,
        context: snsKmsContext,
      });
    },
  );
});

describe('EventBridge notifies the encrypted topic', () => {
  it('has rules targeting the topic', () => expect(topicRules.length).toBeGreaterThan(0));

  it.each(topicRules)('the topic policy lets events.amazonaws.com publish for rule %s', async (rule) => {
    await expectAllowed({
      principal: 'events.amazonaws.com',
      action: 'sns:Publish',
      resource: topicArn,
      context: { 'aws:SourceArn': stack.arnOf(rule), 'aws:SourceAccount': acct },
    });
  });

  it.each(['kms:GenerateDataKey', 'kms:Decrypt'])(
    'the key policy lets events.amazonaws.com %s for the topic',
    async (action) => {
      await expectAllowed({
        principal: 'events.amazonaws.com',
        action,
        resource: topicKey,
        context: snsKmsContext,
      });
    },
  );
});

/** Targets that start executions: [service principal, source ARN, role ARN, state machine ARN]. */
const starters: [string, string, string, string][] = [
  ...stack.resourcesOfType('AWS::Scheduler::Schedule').map(([id]): [string, string, string, string] => {
    const target = props(id).Target as { Arn: string; RoleArn: string };
    return ['scheduler.amazonaws.com', stack.arnOf(id), target.RoleArn, target.Arn];
  }),
  ...stack
    .resourcesOfType('AWS::Events::Rule')
    .flatMap(([id]) =>
      ((props(id).Targets as { Arn: string; RoleArn?: string }[] | undefined) ?? [])
        .filter((target) => target.RoleArn && target.Arn.includes(':states:'))
        .map((target): [string, string, string, string] => [
          'events.amazonaws.com',
          stack.arnOf(id),
          target.RoleArn!,
          target.Arn,
        ]),
    ),
];

describe('Scheduler and the Backup Requested rule start backup executions', () => {
  it('has a schedule and a rule starting the backup state machine', () => {
    const backup = machines.find((machine) => machine.id.startsWith('Backup'))!;
    expect(starters.map(([service, , , machine]) => [service, machine])).toEqual(
      expect.arrayContaining([
        ['scheduler.amazonaws.com', backup.arn],
        ['events.amazonaws.com', backup.arn],
      ]),
    );
  });

  it.each(starters)('%s may assume the role it is given (source %s)', async (service, source, role) => {
    await expectAllowed({
      principal: service,
      action: 'sts:AssumeRole',
      resource: role,
      context: { 'aws:SourceArn': source, 'aws:SourceAccount': acct },
    });
  });

  it.each(starters)(
    '%s’s role may states:StartExecution (source %s)',
    async (_service, _source, role, machine) => {
      await expectAllowed({ principal: role, action: 'states:StartExecution', resource: machine });
    },
  );

  // StartExecution on a state machine under a customer managed key encrypts the input with that key.
  it.each(starters)(
    '%s’s role may kms:GenerateDataKey for the execution input (source %s)',
    async (_service, _source, role, machineArn) => {
      const machine = machines.find((candidate) => candidate.arn === machineArn)!;
      if (!machine.key) return;
      await expectAllowed({
        principal: role,
        action: 'kms:GenerateDataKey',
        resource: machine.key,
        context: {
          'kms:EncryptionContext:aws:states:stateMachineArn': machine.arn,
          'kms:EncryptionContextKeys': ['aws:states:stateMachineArn'],
        },
      });
    },
  );
});

describe('each state machine runs as its role', () => {
  it.each(machines.map((machine) => [machine.id, machine] as const))(
    'states.amazonaws.com may assume the role of %s',
    async (_id, machine) => {
      await expectAllowed({
        principal: 'states.amazonaws.com',
        action: 'sts:AssumeRole',
        resource: machine.role,
        context: { 'aws:SourceArn': machine.arn, 'aws:SourceAccount': acct },
      });
    },
  );

  const keyed = machines
    .filter((machine) => machine.key)
    .flatMap((machine) =>
      ['kms:GenerateDataKey', 'kms:Decrypt'].map((action) => [machine.id, action, machine] as const),
    );
  it.each(keyed)('the role of %s may %s for its own execution data', async (_id, action, machine) => {
    await expectAllowed({
      principal: machine.role,
      action,
      resource: machine.key!,
      context: {
        'kms:EncryptionContext:aws:states:stateMachineArn': machine.arn,
        'kms:EncryptionContextKeys': ['aws:states:stateMachineArn'],
      },
    });
  });

  it.each(machines.map((machine) => [machine.id, machine] as const))(
    'the role of %s may invoke every function its definition names',
    async (_id, machine) => {
      const functions = tasks(machine.definition)
        .map((task) =>
          task.Resource.startsWith('arn:aws:states:::lambda:invoke')
            ? String(task.Parameters?.FunctionName)
            : task.Resource,
        )
        .filter((resource) => resource.includes(':lambda:'));
      expect(functions.length).toBeGreaterThan(0);
      for (const fn of functions)
        await expectAllowed({ principal: machine.role, action: 'lambda:InvokeFunction', resource: fn });
    },
  );
});

describe('Step Functions runs the transfer task with ecs:runTask.sync', () => {
  // One case per state machine (its first ECS task state; they all run the same task definition).
  const runners = machines.flatMap((machine) =>
    tasks(machine.definition)
      .filter((task) => task.Resource.startsWith('arn:aws:states:::ecs:runTask'))
      .slice(0, 1)
      .map((task) => [machine.id, machine, task.Parameters ?? {}] as const),
  );
  const taskDefinitionId = onlyOf(template, 'AWS::ECS::TaskDefinition');
  const taskDefinitionArn = stack.ref(taskDefinitionId);
  const { TaskRoleArn, ExecutionRoleArn } = props(taskDefinitionId) as {
    TaskRoleArn: string;
    ExecutionRoleArn: string;
  };

  it('has state machines that run the task', () => expect(runners.length).toBeGreaterThan(0));

  it.each(runners)(
    'the role of %s may ecs:RunTask the task definition on the cluster',
    async (_id, machine, parameters) => {
      // A family name runs its latest revision: the one this stack registers.
      const named = String(parameters.TaskDefinition);
      const resource = named.startsWith('arn:') ? named : taskDefinitionArn;
      expect(resource.split('/')[1]?.split(':')[0]).toBe(taskDefinitionArn.split('/')[1]?.split(':')[0]);
      await expectAllowed({
        principal: machine.role,
        action: 'ecs:RunTask',
        resource,
        context: { 'ecs:cluster': String(parameters.Cluster) },
      });
    },
  );

  it.each(runners)(
    'the role of %s may iam:PassRole the task and execution roles to ECS tasks',
    async (_id, machine) => {
      for (const role of [TaskRoleArn, ExecutionRoleArn]) {
        await expectAllowed({
          principal: machine.role,
          action: 'iam:PassRole',
          resource: role,
          context: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' },
        });
      }
    },
  );

  it.each(runners)(
    'the role of %s may manage the .sync integration’s managed rule and watch the task',
    async (_id, machine, parameters) => {
      const rule = `arn:aws:events:${region}:${acct}:rule/StepFunctionsGetEventsForECSTaskRule`;
      for (const action of ['events:PutTargets', 'events:PutRule', 'events:DescribeRule']) {
        await expectAllowed({ principal: machine.role, action, resource: rule });
      }
      const clusterName = String(parameters.Cluster).split('/').pop();
      const task = `arn:aws:ecs:${region}:${acct}:task/${clusterName}/0123456789abcdef0123456789abcdef`;
      for (const action of ['ecs:DescribeTasks', 'ecs:StopTask']) {
        await expectAllowed({
          principal: machine.role,
          action,
          resource: task,
          context: { 'ecs:cluster': String(parameters.Cluster) },
        });
      }
    },
  );

  it('ecs-tasks.amazonaws.com may assume the task and execution roles', async () => {
    for (const role of [TaskRoleArn, ExecutionRoleArn]) {
      await expectAllowed({
        principal: 'ecs-tasks.amazonaws.com',
        action: 'sts:AssumeRole',
        resource: role,
        context: { 'aws:SourceAccount': acct },
      });
    }
  });
});

describe('Lambda runs each function as its role', () => {
  it('lambda.amazonaws.com may assume every function role', async () => {
    const roles = stack.resourcesOfType('AWS::Lambda::Function').map(([id]) => String(props(id).Role));
    expect(roles.length).toBeGreaterThan(0);
    for (const role of roles)
      await expectAllowed({ principal: 'lambda.amazonaws.com', action: 'sts:AssumeRole', resource: role });
  });
});
