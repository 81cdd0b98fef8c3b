import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { randomBytes } from 'node:crypto';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  GetSecretValueCommand,
  ListSecretsCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '../../lambdas/s3/client.ts';
import { LOCAL_ACCOUNT } from '../../world/local/aws/account.ts';
import type { LocalStack } from '../../world/local/aws/account.ts';
import { startAwsGateway } from '../../world/local/aws/gateway.ts';
import type { AwsCall, AwsGateway } from '../../world/local/aws/gateway.ts';
import { startSecretsServer } from '../../world/local/aws/secrets-server.ts';
import type { SecretsServer } from '../../world/local/aws/secrets-server.ts';
import { createTestBucket, deleteTestBucket, s3World, sha256Hex, sha256OfObject } from '../world/s3.ts';
import { startLockTable } from '../../world/local/lock-table.ts';
import type { LockTableWorld } from '../../world/local/lock-table.ts';
import { functionRole, onlyOf, synthesizedStack, synthesizedTemplate, testRole } from './synth.ts';

const { accountId: acct, region } = LOCAL_ACCOUNT;
const world = s3World();

/** The SDK's error as the caller sees it. */
async function failure(
  promise: Promise<unknown>,
): Promise<{ name: string; status?: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    const { name, message, $metadata } = error as Error & { $metadata?: { httpStatusCode?: number } };
    return { name, message, status: $metadata?.httpStatusCode };
  }
  throw new Error('expected the call to fail');
}

describe('AWS gateway against Swift, dynalite and the local Secrets Manager', () => {
  let bucket: string;
  let stack: LocalStack;
  let gateway: AwsGateway;
  let locks: LockTableWorld;
  let secrets: SecretsServer;
  let roles: { plan: string; login: string; logout: string; lister: string; reader: string; none: string };
  let keyArn: string;
  let secretArn: string;
  const clients: { destroy(): void }[] = [];

  /** Calls recorded while `run` ran. */
  async function recorded(run: () => Promise<unknown>): Promise<AwsCall[]> {
    const seen: AwsCall[] = [];
    const stop = gateway.onCall((call) => seen.push(call));
    try {
      await run().catch(() => undefined);
      // The primary call of an exchange is published when its response has gone out.
      await new Promise((resolve) => setTimeout(resolve, 20));
      return seen;
    } finally {
      stop();
    }
  }
  async function s3As(role: string): Promise<S3Client> {
    const { AWS_ENDPOINT_URL_S3 } = await gateway.endpointsFor(role);
    const client = createS3Client({ endpoint: AWS_ENDPOINT_URL_S3, region, credentials: world.credentials });
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    bucket = await createTestBucket(world.client, 'iam-gateway');
    locks = await startLockTable();
    secrets = await startSecretsServer();
    secretArn = secrets.putSecret('vdi-vault/lab', JSON.stringify({ username: 'root', password: 'secret' }));

    const template = synthesizedTemplate();
    const bucketId = onlyOf(template, 'AWS::S3::Bucket', 'Backups');
    const keyId = onlyOf(template, 'AWS::KMS::Key');
    const arnOfBucket = { 'Fn::GetAtt': [bucketId, 'Arn'] };
    const objects = { 'Fn::Join': ['', [arnOfBucket, '/*']] };
    const key = { 'Fn::GetAtt': [keyId, 'Arn'] };
    // Roles of the test's own, so that 404-vs-403 and copy are shown whatever grants the constructs end up with.
    template.Resources.TestListerRole = testRole([
      { Effect: 'Allow', Action: ['s3:ListBucket', 's3:ListBucketMultipartUploads'], Resource: arnOfBucket },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
        Resource: objects,
      },
      { Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: key },
    ]);
    template.Resources.TestReaderRole = testRole([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objects },
      { Effect: 'Allow', Action: 'kms:Decrypt', Resource: key },
    ]);
    template.Resources.TestNoGrantRole = testRole([]);
    const endpoint = await locks.table.client.config.endpoint!();
    stack = synthesizedStack(
      {
        [bucketId]: { ref: bucket },
        [onlyOf(template, 'AWS::DynamoDB::Table')]: { ref: locks.table.tableName },
      },
      template,
    );
    keyArn = stack.arnOf(keyId);
    roles = {
      plan: functionRole(stack, 'backup.plan'),
      login: functionRole(stack, 'backup.login'),
      logout: functionRole(stack, 'backup.logout'),
      lister: stack.arnOf('TestListerRole'),
      reader: stack.arnOf('TestReaderRole'),
      none: stack.arnOf('TestNoGrantRole'),
    };
    gateway = await startAwsGateway({
      stack,
      backends: {
        s3: world.endpoint,
        dynamodb: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`,
        secretsmanager: secrets.url,
      },
    });
  });

  afterAll(async () => {
    for (const client of clients) client.destroy();
    await gateway?.close();
    await secrets?.close();
    await locks?.close();
    if (bucket) await deleteTestBucket(world.client, bucket);
  });

  it('gives each principal its own loopback endpoint, the same for S3, DynamoDB and Secrets Manager', async () => {
    const plan = await gateway.endpointsFor(roles.plan);
    const again = await gateway.endpointsFor(roles.plan);
    const other = await gateway.endpointsFor(roles.logout);
    expect(plan).toEqual(again);
    expect(plan.AWS_ENDPOINT_URL_S3).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(plan.AWS_ENDPOINT_URL_DYNAMODB).toBe(plan.AWS_ENDPOINT_URL_S3);
    expect(plan.AWS_ENDPOINT_URL_SECRETS_MANAGER).toBe(plan.AWS_ENDPOINT_URL_S3);
    expect(other.AWS_ENDPOINT_URL_S3).not.toBe(plan.AWS_ENDPOINT_URL_S3);
  });

  it('forwards an allowed PutObject byte for byte, recording s3:PutObject and S3’s kms:GenerateDataKey with the bucket-key context', async () => {
    const s3 = await s3As(roles.plan);
    const body = Buffer.from('{"manifest":1}');
    const calls = await recorded(() =>
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'backups/lab/a.json', Body: body })),
    );
    expect(calls.map((call) => [call.service, call.action, call.resource, call.allowed])).toEqual([
      ['s3', 's3:PutObject', `arn:aws:s3:::${bucket}/backups/lab/a.json`, true],
      ['kms', 'kms:GenerateDataKey', keyArn, true],
    ]);
    expect(calls[0]).toMatchObject({ principal: roles.plan, status: 200, bytesIn: body.length });
    expect(calls[0]!.context).toMatchObject({
      'aws:PrincipalArn': roles.plan,
      'aws:SecureTransport': 'true',
    });
    expect(calls[1]!.context).toMatchObject({
      'kms:ViaService': `s3.${region}.amazonaws.com`,
      'kms:CallerAccount': acct,
      'kms:EncryptionContext:aws:s3:arn': `arn:aws:s3:::${bucket}`,
      'kms:EncryptionContextKeys': ['aws:s3:arn'],
    });
    const stored = await world.client.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'backups/lab/a.json' }),
    );
    expect(Buffer.from(await stored.Body!.transformToByteArray())).toEqual(body);
  });

  it('records a GetObject with S3’s kms:Decrypt and counts the bytes out', async () => {
    const s3 = await s3As(roles.plan);
    const calls = await recorded(async () => {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'backups/lab/a.json' }));
      await got.Body!.transformToString();
    });
    expect(calls.map((call) => call.action)).toEqual(['s3:GetObject', 'kms:Decrypt']);
    expect(calls[0]).toMatchObject({ allowed: true, status: 200, bytesOut: 14 });
  });

  it('sets s3:prefix only when the listing has one; a listing the policy does not allow fails with AccessDenied', async () => {
    const s3 = await s3As(roles.plan);
    const calls = await recorded(() =>
      s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'backups/lab/' })),
    );
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      action: 's3:ListBucket',
      resource: `arn:aws:s3:::${bucket}`,
      allowed: true,
      status: 200,
    });
    expect(calls[0]!.context['s3:prefix']).toBe('backups/lab/');
    expect(calls[0]!.context).not.toHaveProperty('s3:delimiter');
    expect(calls[0]!.context).not.toHaveProperty('s3:max-keys');

    const reader = await s3As(roles.reader);
    const denied = await recorded(() =>
      reader.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: 'backups/', Delimiter: '/', MaxKeys: 5 }),
      ),
    );
    expect(denied[0]).toMatchObject({
      action: 's3:ListBucket',
      allowed: false,
      status: 403,
      reason: 'implicit deny: no statement allows',
    });
    expect(denied[0]!.context).toMatchObject({
      's3:prefix': 'backups/',
      's3:delimiter': '/',
      's3:max-keys': '5',
    });
    const error = await failure(
      reader.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'backups/' })),
    );
    expect(error).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(error.message).toContain('is not authorized to perform: s3:ListBucket');
  });

  it('refuses a PutObject by a role without the grant before it reaches Swift', async () => {
    const s3 = await s3As(roles.logout);
    const error = await failure(
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'backups/lab/forbidden', Body: 'x' })),
    );
    expect(error).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(
      gateway.denied().some((call) => call.principal === roles.logout && call.action === 's3:PutObject'),
    ).toBe(true);
    const missing = await failure(
      world.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'backups/lab/forbidden' })),
    );
    expect(missing.status).toBe(404);
  });

  it('answers a HEAD of a missing key 404 with s3:ListBucket on the bucket, 403 without', async () => {
    const lister = await s3As(roles.lister);
    const reader = await s3As(roles.reader);
    const head = (s3: S3Client) =>
      s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'backups/lab/none.json' }));
    expect(await failure(head(lister))).toMatchObject({ name: 'NotFound', status: 404 });
    expect(await failure(head(reader))).toMatchObject({ status: 403 });
    const calls = await recorded(() => head(reader));
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ action: 's3:GetObject', allowed: true, status: 403 });
    expect(calls[0]!.reason).toContain('no s3:ListBucket');
    expect(
      await failure(reader.send(new GetObjectCommand({ Bucket: bucket, Key: 'backups/lab/none.json' }))),
    ).toMatchObject({
      name: 'AccessDenied',
      status: 403,
    });
    // An existing key: HEAD reads no data, so S3 makes no KMS call.
    const existing = await recorded(() =>
      reader.send(new HeadObjectCommand({ Bucket: bucket, Key: 'backups/lab/a.json' })),
    );
    expect(existing.map((call) => [call.action, call.status])).toEqual([['s3:GetObject', 200]]);
  });

  it('maps a multipart upload: create and parts need s3:PutObject, with KMS GenerateDataKey then Decrypt; ?uploads has no s3:prefix', async () => {
    const s3 = await s3As(roles.lister);
    const Key = 'backups/lab/big.vhd';
    const calls = await recorded(async () => {
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
      const { ETag } = await s3.send(
        new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: Buffer.alloc(1024, 1) }),
      );
      await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'backups/' }));
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: [{ ETag, PartNumber: 1 }] },
        }),
      );
      const second = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
      await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId: second.UploadId }));
    });
    expect(calls.map((call) => [call.action, call.allowed])).toEqual([
      ['s3:PutObject', true],
      ['kms:GenerateDataKey', true],
      ['s3:PutObject', true],
      ['kms:Decrypt', true],
      ['s3:ListBucketMultipartUploads', true],
      ['s3:PutObject', true],
      ['s3:PutObject', true],
      ['kms:GenerateDataKey', true],
      ['s3:AbortMultipartUpload', true],
    ]);
    expect(calls[4]!.context).not.toHaveProperty('s3:prefix');
    expect(calls[2]).toMatchObject({ status: 200, bytesIn: 1024 });
  });

  it('streams a large multipart upload through untouched (lib-storage, 3 parts of 8 MiB)', async () => {
    const s3 = await s3As(roles.lister);
    const data = randomBytes(24 * 1024 * 1024);
    const Key = 'backups/lab/stream.vhd';
    const started = performance.now();
    const calls = await recorded(() =>
      new Upload({
        client: s3,
        params: { Bucket: bucket, Key, Body: data },
        partSize: 8 * 1024 * 1024,
        queueSize: 2,
      }).done(),
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(`gateway: ${(data.length / 1e6 / seconds).toFixed(0)} MB/s for a 24 MiB upload`);
    expect(await sha256OfObject(world.client, bucket, Key)).toBe(sha256Hex(data));
    const parts = calls.filter((call) => call.action === 's3:PutObject' && call.bytesIn === 8 * 1024 * 1024);
    expect(parts).toHaveLength(3);
    expect(calls.every((call) => call.allowed)).toBe(true);
  });

  it('maps CopyObject to s3:PutObject on the target and s3:GetObject on the source, with both KMS uses', async () => {
    const s3 = await s3As(roles.lister);
    const calls = await recorded(() =>
      s3.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: 'backups/lab/copy.json',
          CopySource: `${bucket}/backups/lab/a.json`,
        }),
      ),
    );
    expect(calls.map((call) => [call.action, call.resource])).toEqual([
      ['s3:PutObject', `arn:aws:s3:::${bucket}/backups/lab/copy.json`],
      ['s3:GetObject', `arn:aws:s3:::${bucket}/backups/lab/a.json`],
      ['kms:Decrypt', keyArn],
      ['kms:GenerateDataKey', keyArn],
    ]);
    expect(calls.every((call) => call.allowed)).toBe(true);
    const reader = await s3As(roles.reader);
    const error = await failure(
      reader.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: 'backups/lab/copy2.json',
          CopySource: `${bucket}/backups/lab/a.json`,
        }),
      ),
    );
    expect(error).toMatchObject({ name: 'AccessDenied', status: 403 });
  });

  it('authorizes DynamoDB calls on the table ARN with the table key’s kms:Decrypt, and refuses with AccessDeniedException', async () => {
    const dynamodbAs = async (role: string) => {
      const { AWS_ENDPOINT_URL_DYNAMODB } = await gateway.endpointsFor(role);
      const client = new DynamoDBClient({
        endpoint: AWS_ENDPOINT_URL_DYNAMODB,
        region,
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      });
      clients.push(client);
      return client;
    };
    const table = locks.table.tableName;
    const plan = await dynamodbAs(roles.plan);
    const calls = await recorded(async () => {
      await plan.send(new PutItemCommand({ TableName: table, Item: { series: { S: 'lab/vdi-1' } } }));
      const { Item } = await plan.send(
        new GetItemCommand({ TableName: table, Key: { series: { S: 'lab/vdi-1' } } }),
      );
      expect(Item?.series?.S).toBe('lab/vdi-1');
    });
    expect(calls.map((call) => [call.action, call.resource, call.allowed])).toEqual([
      ['dynamodb:PutItem', `arn:aws:dynamodb:${region}:${acct}:table/${table}`, true],
      ['kms:Decrypt', keyArn, true],
      ['dynamodb:GetItem', `arn:aws:dynamodb:${region}:${acct}:table/${table}`, true],
      ['kms:Decrypt', keyArn, true],
    ]);
    expect(calls[0]!.context['dynamodb:LeadingKeys']).toEqual(['lab/vdi-1']);
    expect(calls[1]!.context).toMatchObject({
      'kms:ViaService': `dynamodb.${region}.amazonaws.com`,
      'kms:EncryptionContext:aws:dynamodb:tableName': table,
      'kms:EncryptionContext:aws:dynamodb:subscriberId': acct,
    });
    const none = await dynamodbAs(roles.none);
    const error = await failure(
      none.send(new GetItemCommand({ TableName: table, Key: { series: { S: 'lab/vdi-1' } } })),
    );
    expect(error).toMatchObject({ name: 'AccessDeniedException', status: 400 });
    expect(error.message).toMatch(
      /is not authorized to perform: dynamodb:GetItem on resource: arn:aws:dynamodb:.*because no identity-based policy allows/,
    );
  });

  it('authorizes GetSecretValue on the secret’s full ARN, given the partial ARN the functions are configured with', async () => {
    const secretsAs = async (role: string) => {
      const { AWS_ENDPOINT_URL_SECRETS_MANAGER } = await gateway.endpointsFor(role);
      const client = new SecretsManagerClient({
        endpoint: AWS_ENDPOINT_URL_SECRETS_MANAGER,
        region,
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      });
      clients.push(client);
      return client;
    };
    const partial = `arn:aws:secretsmanager:${region}:${acct}:secret:vdi-vault/lab`;
    const login = await secretsAs(roles.login);
    const calls = await recorded(async () => {
      const { SecretString, ARN } = await login.send(new GetSecretValueCommand({ SecretId: partial }));
      expect(JSON.parse(SecretString!)).toEqual({ username: 'root', password: 'secret' });
      expect(ARN).toBe(secretArn);
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      service: 'secretsmanager',
      action: 'secretsmanager:GetSecretValue',
      resource: secretArn,
      allowed: true,
      status: 200,
    });
    expect(calls[0]!.context['secretsmanager:SecretId']).toBe(partial);

    const none = await secretsAs(roles.none);
    const error = await failure(none.send(new GetSecretValueCommand({ SecretId: partial })));
    expect(error).toMatchObject({ name: 'AccessDeniedException', status: 400 });
    expect(error.message).toContain(`secretsmanager:GetSecretValue on resource: ${secretArn}`);
  });

  it('records calls made outside HTTP the same way', async () => {
    const machine = stack.ref(onlyOf(stack.template, 'AWS::StepFunctions::StateMachine', 'Backup'));
    const scheduler = String(
      stack.resolve(
        (stack.resourcesOfType('AWS::Scheduler::Schedule')[0]![1].Properties?.Target as { RoleArn: unknown })
          .RoleArn,
      ),
    );
    const decision = await gateway.record({
      principal: scheduler,
      service: 'states',
      action: 'states:StartExecution',
      resource: machine,
    });
    expect(decision.allowed, decision.reason).toBe(true);
    expect(gateway.calls.at(-1)).toMatchObject({
      principal: scheduler,
      service: 'states',
      action: 'states:StartExecution',
      allowed: true,
    });
  });
});

describe('local Secrets Manager', () => {
  it('finds a secret by full ARN, partial ARN or name; answers ResourceNotFoundException and UnknownOperation', async () => {
    const server = await startSecretsServer();
    const client = new SecretsManagerClient({
      endpoint: server.url,
      region,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
    try {
      const arn = server.putSecret('pool/a', 'value-a');
      expect(arn).toMatch(
        new RegExp(`^arn:aws:secretsmanager:${region}:${acct}:secret:pool/a-[A-Za-z0-9]{6}$`),
      );
      for (const SecretId of [arn, arn.slice(0, -7), 'pool/a']) {
        expect((await client.send(new GetSecretValueCommand({ SecretId }))).SecretString).toBe('value-a');
      }
      expect(await failure(client.send(new GetSecretValueCommand({ SecretId: 'pool/b' })))).toMatchObject({
        name: 'ResourceNotFoundException',
        status: 400,
      });
      const unknown = await failure(client.send(new ListSecretsCommand({})));
      expect(unknown).toMatchObject({ name: 'UnknownOperationException', status: 400 });
      expect(unknown.message).toContain('GetSecretValue only');
    } finally {
      client.destroy();
      await server.close();
    }
  });
});
