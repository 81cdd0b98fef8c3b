import { describe, expect, it } from 'vitest';
import { LOCAL_ACCOUNT, LocalStack } from '../../world/local/aws/account.ts';
import type { Template } from '../../world/local/aws/account.ts';
import { accessDeniedMessage, authorize } from '../../world/local/aws/authorize.ts';
import { stackPolicies } from '../../world/local/aws/policies.ts';
import { grantedActions, unusedGrants } from '../../world/local/aws/usage.ts';
import type { AwsCall } from '../../world/local/aws/gateway.ts';
import { functionRole, onlyOf, synthesizedTemplate, testRole } from './synth.ts';

const { accountId: acct, region } = LOCAL_ACCOUNT;

describe('authorize on the synthesized stack', () => {
  const template = synthesizedTemplate();
  const bucketId = onlyOf(template, 'AWS::S3::Bucket', 'Backups');
  const keyId = onlyOf(template, 'AWS::KMS::Key');
  const bucketArn = { 'Fn::GetAtt': [bucketId, 'Arn'] };
  // A grant shaped like the constructs' listing grants, on a role of its own so the assertion does not
  // depend on how the constructs end up granting s3:ListBucket.
  template.Resources.TestPrefixListerRole = testRole([
    {
      Effect: 'Allow',
      Action: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
      Resource: bucketArn,
      Condition: { StringLike: { 's3:prefix': ['backups/*'] } },
    },
  ]);
  template.Resources.TestNoGrantRole = testRole([]);
  const stack = new LocalStack(template);
  const bucket = stack.arnOf(bucketId);
  const key = stack.arnOf(keyId);
  const plan = functionRole(stack, 'backup.plan');
  const logout = functionRole(stack, 'backup.logout');
  const prefixLister = stack.arnOf('TestPrefixListerRole');

  it('lets the Plan function role s3:ListBucket with s3:prefix under the catalog', async () => {
    const decision = await authorize(stack, {
      principal: plan,
      action: 's3:ListBucket',
      resource: bucket,
      context: { 's3:prefix': 'backups/lab/' },
    });
    expect(decision.allowed, decision.reason).toBe(true);
    expect(decision.reason).toMatch(/^allowed by BackupPlanFunctionServiceRoleDefaultPolicy/);
  });

  it('does not let an s3:prefix-conditioned grant list without a prefix, nor list uploads (no s3:prefix key there)', async () => {
    const listing = { principal: prefixLister, action: 's3:ListBucket', resource: bucket };
    expect((await authorize(stack, { ...listing, context: { 's3:prefix': 'backups/lab/' } })).allowed).toBe(
      true,
    );
    const without = await authorize(stack, listing);
    expect(without).toMatchObject({ allowed: false, reason: 'implicit deny: no statement allows' });
    const uploads = await authorize(stack, {
      principal: prefixLister,
      action: 's3:ListBucketMultipartUploads',
      resource: bucket,
      context: { 's3:prefix': 'backups/lab/' },
    });
    expect(uploads.allowed).toBe(false);
  });

  it('denies a role with no grant, with a reason, and words it as AWS does', async () => {
    for (const principal of [stack.arnOf('TestNoGrantRole'), logout]) {
      const decision = await authorize(stack, {
        principal,
        action: 's3:PutObject',
        resource: `${bucket}/backups/lab/x.vhd`,
      });
      expect(decision).toMatchObject({ allowed: false, reason: 'implicit deny: no statement allows' });
      expect(accessDeniedMessage(decision)).toMatch(
        new RegExp(
          `^User: arn:aws:sts::${acct}:assumed-role/.+/vdi-vault-local is not authorized to perform: s3:PutObject on resource: ${bucket}/backups/lab/x.vhd because no identity-based policy allows the s3:PutObject action$`,
        ),
      );
    }
    const unknown = await authorize(stack, {
      principal: `arn:aws:iam::${acct}:role/Elsewhere`,
      action: 's3:GetObject',
      resource: `${bucket}/x`,
    });
    expect(unknown.allowed).toBe(false);
  });

  it('applies the bucket policy’s TLS-only deny over an identity allow', async () => {
    const request = { principal: plan, action: 's3:GetObject', resource: `${bucket}/backups/lab/x.json` };
    expect((await authorize(stack, request)).allowed).toBe(true);
    const plain = await authorize(stack, { ...request, context: { 'aws:SecureTransport': 'false' } });
    expect(plain.allowed).toBe(false);
    expect(plain.reason).toMatch(/^explicit deny in a resource-based policy: BackupsPolicy/);
    expect(accessDeniedMessage(plain)).toMatch(/with an explicit deny in a resource-based policy$/);
  });

  it('lets roles use the key through the account root of the key policy, only via the service their grant names', async () => {
    const viaS3 = { 'kms:ViaService': `s3.${region}.amazonaws.com`, 'kms:CallerAccount': acct };
    expect(
      (
        await authorize(stack, {
          principal: plan,
          action: 'kms:GenerateDataKey',
          resource: key,
          context: viaS3,
        })
      ).allowed,
    ).toBe(true);
    expect(
      (await authorize(stack, { principal: plan, action: 'kms:GenerateDataKey', resource: key })).allowed,
    ).toBe(false);
    expect(
      (await authorize(stack, { principal: logout, action: 'kms:Decrypt', resource: key, context: viaS3 }))
        .allowed,
    ).toBe(false);
  });

  it('includes the AWS managed policies CDK attaches', async () => {
    const logs = await authorize(stack, {
      principal: plan,
      action: 'logs:PutLogEvents',
      resource: `arn:aws:logs:${region}:${acct}:log-group:x:log-stream:y`,
    });
    expect(logs.allowed, logs.reason).toBe(true);
    expect(logs.reason).toMatch(/aws-managed:service-role\/AWSLambdaBasicExecutionRole/);
  });

  it('caches decisions: measured per-call cost', async () => {
    const request = (i: number) => ({
      principal: plan,
      action: 's3:ListBucket',
      resource: bucket,
      context: { 's3:prefix': `backups/lab/${i}/` },
    });
    let started = performance.now();
    for (let i = 0; i < 300; i += 1) await authorize(stack, request(i));
    const uncached = (performance.now() - started) / 300;
    started = performance.now();
    for (let i = 0; i < 3000; i += 1) await authorize(stack, request(0));
    const cached = (performance.now() - started) / 3000;
    console.log(
      `authorize: ${uncached.toFixed(3)} ms per new request, ${cached.toFixed(4)} ms per repeated request`,
    );
    expect(uncached).toBeLessThan(10);
    expect(cached).toBeLessThan(uncached);
  });

  it('lists granted actions and the ones no call used', async () => {
    const granted = await grantedActions(stack, plan);
    expect(granted).toEqual(expect.arrayContaining(['s3:ListBucket', 's3:GetObject', 'logs:PutLogEvents']));
    const call = (action: string): AwsCall => ({
      principal: plan,
      service: 's3',
      action,
      resource: bucket,
      context: {},
      allowed: true,
      reason: '',
      at: 0,
    });
    const unused = await unusedGrants(stack, [call('s3:ListBucket'), call('s3:GetObject')], [plan]);
    expect(unused[plan]).not.toContain('s3:ListBucket');
    expect(unused[plan]).not.toContain('s3:GetObject');
    expect(unused[plan]).toContain('logs:PutLogEvents');
  });

  it('extracts identity, trust and resource policies', () => {
    const policies = stackPolicies(stack);
    expect(policies.identity.get(plan)?.map((policy) => policy.name)).toEqual(
      expect.arrayContaining(['aws-managed:service-role/AWSLambdaBasicExecutionRole']),
    );
    expect(policies.trust.get(plan)?.document.Statement[0]?.Principal).toEqual({
      Service: 'lambda.amazonaws.com',
    });
    expect(policies.resource.get(bucket)?.name).toMatch(/^BackupsPolicy/);
    expect(policies.resource.get(key)?.name).toMatch(/key policy$/);
    expect(policies.resource.get(stack.ref(onlyOf(template, 'AWS::SNS::Topic')))).toBeDefined();
  });
});

describe('authorize semantics on a small template', () => {
  const template = {
    Resources: {
      OpenKey: { Type: 'AWS::KMS::Key', Properties: {} },
      ClosedKey: {
        Type: 'AWS::KMS::Key',
        Properties: {
          KeyPolicy: {
            Statement: [
              {
                Effect: 'Allow',
                Principal: { Service: 'logs.amazonaws.com' },
                Action: 'kms:*',
                Resource: '*',
              },
            ],
          },
        },
      },
      User: testRole([{ Effect: 'Allow', Action: ['kms:Decrypt', 's3:GetObject*'], Resource: '*' }]),
      Machine: testRole([
        {
          Effect: 'Allow',
          Action: 'kms:GenerateDataKey',
          Resource: '*',
          Condition: {
            StringEquals: {
              'kms:EncryptionContext:aws:states:stateMachineArn':
                'arn:aws:states:us-east-1:123456789012:stateMachine:m',
            },
          },
        },
      ]),
    },
  } as unknown as Template;
  const stack = new LocalStack(template, {}, 'Small');
  const user = stack.arnOf('User');

  it('a key policy without the account root ignores IAM: the identity allow is not enough', async () => {
    expect(
      (await authorize(stack, { principal: user, action: 'kms:Decrypt', resource: stack.arnOf('OpenKey') }))
        .allowed,
    ).toBe(true);
    const closed = await authorize(stack, {
      principal: user,
      action: 'kms:Decrypt',
      resource: stack.arnOf('ClosedKey'),
    });
    expect(closed.allowed).toBe(false);
    expect(closed.reason).toMatch(/no resource-based policy allows it \(ClosedKey key policy/);
    expect(accessDeniedMessage(closed)).toMatch(
      /because no resource-based policy allows the kms:Decrypt action$/,
    );
  });

  it('a service principal is decided by the resource policy alone', async () => {
    expect(
      (
        await authorize(stack, {
          principal: 'logs.amazonaws.com',
          action: 'kms:Encrypt',
          resource: stack.arnOf('ClosedKey'),
        })
      ).allowed,
    ).toBe(true);
    expect(
      (
        await authorize(stack, {
          principal: 'events.amazonaws.com',
          action: 'kms:Encrypt',
          resource: stack.arnOf('ClosedKey'),
        })
      ).allowed,
    ).toBe(false);
  });

  it('evaluates conditions on kms:EncryptionContext:<key>', async () => {
    const request = (arn: string) => ({
      principal: stack.arnOf('Machine'),
      action: 'kms:GenerateDataKey',
      resource: stack.arnOf('OpenKey'),
      context: {
        'kms:EncryptionContext:aws:states:stateMachineArn': arn,
        'kms:EncryptionContextKeys': ['aws:states:stateMachineArn'],
      },
    });
    expect((await authorize(stack, request(`arn:aws:states:${region}:${acct}:stateMachine:m`))).allowed).toBe(
      true,
    );
    expect((await authorize(stack, request(`arn:aws:states:${region}:${acct}:stateMachine:`))).allowed).toBe(
      false,
    );
  });

  it('expands wildcard grants against iam-data', async () => {
    const granted = await grantedActions(stack, user);
    expect(granted).toEqual(
      expect.arrayContaining(['kms:Decrypt', 's3:GetObject', 's3:GetObjectVersion', 's3:GetObjectTagging']),
    );
    expect(granted).not.toContain('s3:GetObject*');
  });
});
