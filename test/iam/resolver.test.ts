import { describe, expect, it } from 'vitest';
import { LOCAL_ACCOUNT, LocalStack } from '../../world/local/aws/account.ts';
import type { Template } from '../../world/local/aws/account.ts';
import { onlyOf, synthesizedStack, synthesizedTemplate } from './synth.ts';

const { accountId: acct, region } = LOCAL_ACCOUNT;

describe('LocalStack resolver on the synthesized template', () => {
  const template = synthesizedTemplate();
  const stack = new LocalStack(template);

  it('resolves every Lambda function environment variable to a string with no token left', () => {
    const functions = stack.resourcesOfType('AWS::Lambda::Function');
    expect(functions.length).toBeGreaterThan(0);
    for (const [logicalId, resource] of functions) {
      const variables = stack.resolve(
        (resource.Properties?.Environment as { Variables?: unknown } | undefined)?.Variables,
      ) as Record<string, unknown>;
      expect(Object.keys(variables).length, logicalId).toBeGreaterThan(0);
      for (const [name, value] of Object.entries(variables)) {
        expect(typeof value, `${logicalId} ${name}`).toBe('string');
        expect(value as string, `${logicalId} ${name}`).not.toMatch(
          /\$\{Token|Fn::|"Ref"|\[object |undefined/,
        );
      }
    }
  });

  it('resolves the whole template, and the container environment, without leftovers', () => {
    const text = JSON.stringify(stack.resolve(template.Resources));
    expect(text).not.toMatch(/"Fn::|"Ref":/);
    const task = template.Resources[onlyOf(template, 'AWS::ECS::TaskDefinition')]!;
    const [container] = stack.resolve(task.Properties?.ContainerDefinitions) as {
      Environment: { Value: unknown }[];
    }[];
    for (const variable of container!.Environment) expect(typeof variable.Value).toBe('string');
  });

  it('shapes ARNs and Refs per resource type like CloudFormation', () => {
    const bucket = onlyOf(template, 'AWS::S3::Bucket', 'Backups');
    expect(stack.ref(bucket)).toMatch(/^vdivault-backups[a-z0-9]*-[a-z0-9]{6}$/);
    expect(stack.arnOf(bucket)).toBe(`arn:aws:s3:::${stack.ref(bucket)}`);

    const table = onlyOf(template, 'AWS::DynamoDB::Table');
    expect(stack.arnOf(table)).toBe(`arn:aws:dynamodb:${region}:${acct}:table/${stack.ref(table)}`);

    const key = onlyOf(template, 'AWS::KMS::Key');
    expect(stack.ref(key)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(stack.arnOf(key)).toBe(`arn:aws:kms:${region}:${acct}:key/${stack.ref(key)}`);

    for (const [id] of stack.resourcesOfType('AWS::IAM::Role')) {
      expect(stack.arnOf(id)).toBe(`arn:aws:iam::${acct}:role/${stack.ref(id)}`);
      expect(stack.ref(id).length).toBeLessThanOrEqual(64);
    }
    for (const [id] of stack.resourcesOfType('AWS::Lambda::Function')) {
      expect(stack.ref(id)).toMatch(/^VdiVault-[A-Za-z0-9]+-[A-Z0-9]{6}$/);
      expect(stack.arnOf(id)).toBe(`arn:aws:lambda:${region}:${acct}:function:${stack.ref(id)}`);
    }
    for (const [id] of stack.resourcesOfType('AWS::StepFunctions::StateMachine')) {
      const name = stack.attribute(id, 'Name');
      expect(stack.ref(id)).toBe(`arn:aws:states:${region}:${acct}:stateMachine:${name}`);
      expect(name).not.toBe('');
    }
    const topic = onlyOf(template, 'AWS::SNS::Topic');
    expect(stack.ref(topic)).toBe(`arn:aws:sns:${region}:${acct}:${stack.attribute(topic, 'TopicName')}`);
    for (const [id] of stack.resourcesOfType('AWS::Logs::LogGroup')) {
      expect(stack.arnOf(id)).toBe(`arn:aws:logs:${region}:${acct}:log-group:${stack.ref(id)}:*`);
    }
    const taskDefinition = onlyOf(template, 'AWS::ECS::TaskDefinition');
    expect(stack.ref(taskDefinition)).toMatch(
      new RegExp(`^arn:aws:ecs:${region}:${acct}:task-definition/[\\w-]+:1$`),
    );
    const cluster = onlyOf(template, 'AWS::ECS::Cluster');
    expect(stack.arnOf(cluster)).toBe(`arn:aws:ecs:${region}:${acct}:cluster/${stack.ref(cluster)}`);
    for (const [id] of stack.resourcesOfType('AWS::Scheduler::Schedule')) {
      expect(stack.arnOf(id)).toBe(`arn:aws:scheduler:${region}:${acct}:schedule/default/${stack.ref(id)}`);
    }
    for (const [id] of stack.resourcesOfType('AWS::Events::Rule')) {
      expect(stack.arnOf(id)).toBe(`arn:aws:events:${region}:${acct}:rule/${stack.ref(id)}`);
    }
    for (const [id] of stack.resourcesOfType('AWS::CloudWatch::Alarm')) {
      expect(stack.arnOf(id)).toBe(`arn:aws:cloudwatch:${region}:${acct}:alarm:${stack.ref(id)}`);
    }
  });

  it('resolves the state machine roles’ ecs:RunTask resource from the task definition’s ARN', () => {
    const taskDefinition = stack.ref(onlyOf(template, 'AWS::ECS::TaskDefinition'));
    const resources = stack
      .resourcesOfType('AWS::IAM::Policy')
      .flatMap(
        ([, policy]) =>
          (
            stack.resolve(policy.Properties?.PolicyDocument) as {
              Statement: { Action: unknown; Resource: unknown }[];
            }
          ).Statement,
      )
      .filter((statement) => [statement.Action].flat().includes('ecs:RunTask'))
      .map((statement) => statement.Resource);
    expect(resources.length).toBeGreaterThan(0);
    for (const resource of resources) expect(resource).toBe(taskDefinition.replace(/:1$/, ':*'));
  });

  it('is deterministic, maps ARNs back to logical ids, and takes the physical ids a test world chose', () => {
    const again = synthesizedStack();
    const bucket = onlyOf(template, 'AWS::S3::Bucket', 'Backups');
    const machine = onlyOf(template, 'AWS::StepFunctions::StateMachine', 'Backup');
    expect(again.ref(machine)).toBe(stack.ref(machine));
    expect(stack.logicalIdOfArn(stack.ref(machine))).toBe(machine);
    expect(stack.logicalIdOfArn(stack.arnOf(bucket))).toBe(bucket);
    const logs = stack.resourcesOfType('AWS::Logs::LogGroup')[0]![0];
    expect(stack.logicalIdOfArn(stack.arnOf(logs).replace(/:\*$/, ''))).toBe(logs);

    const table = onlyOf(template, 'AWS::DynamoDB::Table');
    const pinned = new LocalStack(template, {
      [bucket]: { ref: 'real-bucket-on-swift' },
      [table]: { ref: 'vdi-vault-locks' },
      [machine]: { ref: `arn:aws:states:${region}:${acct}:stateMachine:pinned` },
    });
    expect(pinned.arnOf(bucket)).toBe('arn:aws:s3:::real-bucket-on-swift');
    expect(pinned.attribute(machine, 'Name')).toBe('pinned');
    const plan = pinned
      .resourcesOfType('AWS::Lambda::Function')
      .map(([, fn]) => pinned.resolve(fn.Properties?.Environment) as { Variables: Record<string, string> })
      .find((environment) => environment.Variables.VDI_VAULT_LOCK_TABLE !== undefined);
    expect(plan?.Variables.VDI_VAULT_BUCKET).toBe('real-bucket-on-swift');
    expect(plan?.Variables.VDI_VAULT_LOCK_TABLE).toBe('vdi-vault-locks');
  });
});

describe('LocalStack intrinsics', () => {
  const template = {
    Parameters: { Stage: { Default: 'prod' } },
    Conditions: {
      IsProd: { 'Fn::Equals': [{ Ref: 'Stage' }, 'prod'] },
      NotProd: { 'Fn::Not': [{ Condition: 'IsProd' }] },
    },
    Resources: {
      Queue: { Type: 'AWS::SQS::Queue', Properties: { QueueName: 'jobs' } },
      Policy: { Type: 'AWS::IAM::ManagedPolicy', Properties: { PolicyDocument: { Statement: [] } } },
      Secret: { Type: 'AWS::SecretsManager::Secret', Properties: { Name: 'pool/lab' } },
    },
  } as unknown as Template;
  const stack = new LocalStack(template, {}, 'Demo');

  it('resolves Fn::Sub in both forms, Select/Split, If with Conditions, pseudo parameters', () => {
    expect(
      stack.resolve({
        'Fn::Sub': 'arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Queue.QueueName}/${!Literal}',
      }),
    ).toBe(`arn:aws:x:${region}:${acct}:jobs/\${Literal}`);
    expect(stack.resolve({ 'Fn::Sub': ['${A}-${AWS::StackName}', { A: { Ref: 'Stage' } }] })).toBe(
      'prod-Demo',
    );
    expect(stack.resolve({ 'Fn::Select': [1, { 'Fn::Split': [':', 'a:b:c'] }] })).toBe('b');
    expect(stack.resolve({ 'Fn::If': ['NotProd', 'x', { 'Fn::If': ['IsProd', 'y', 'z'] }] })).toBe('y');
    expect(stack.resolve({ keep: 1, drop: { 'Fn::If': ['NotProd', 2, { Ref: 'AWS::NoValue' }] } })).toEqual({
      keep: 1,
    });
  });

  it('gives SQS queues a URL Ref and an Arn attribute, managed policies an ARN Ref, secrets a suffixed ARN', () => {
    expect(stack.ref('Queue')).toBe(`https://sqs.${region}.amazonaws.com/${acct}/jobs`);
    expect(stack.attribute('Queue', 'Arn')).toBe(`arn:aws:sqs:${region}:${acct}:jobs`);
    expect(stack.ref('Policy')).toMatch(new RegExp(`^arn:aws:iam::${acct}:policy/Demo-Policy-[A-Z0-9]{6}$`));
    expect(stack.ref('Secret')).toMatch(
      new RegExp(`^arn:aws:secretsmanager:${region}:${acct}:secret:pool/lab-[A-Z0-9]{6}$`),
    );
  });

  it('names an unknown intrinsic, resource or attribute in its error', () => {
    expect(() => stack.resolve({ 'Fn::ImportValue': 'Shared' })).toThrow(
      /unsupported intrinsic function Fn::ImportValue/,
    );
    expect(() => stack.resolve({ Ref: 'Nope' })).toThrow(/Ref Nope/);
    expect(() => stack.resolve({ 'Fn::GetAtt': ['Queue', 'Colour'] })).toThrow(/Colour of AWS::SQS::Queue/);
  });
});
