/**
 * The local world's door to AWS: one loopback listener per principal, so the caller is known without
 * re-signing. Each request is forwarded byte for byte (Host header and body untouched, so SigV4 stays valid)
 * to the real backend (Swift, dynalite, the local Secrets Manager), after being mapped to the IAM action,
 * resource and condition context the real service evaluates — including the KMS calls S3, DynamoDB and
 * Secrets Manager make on the caller's behalf — and authorized against the stack's policies. A denied call
 * gets the service's own AccessDenied answer, so the SDK fails as it would in AWS.
 */
import { randomUUID } from 'node:crypto';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LOCAL_ACCOUNT } from './account.ts';
import type { LocalStack } from './account.ts';
import { accessDeniedMessage, authorize, globalContext } from './authorize.ts';
import type { AwsRequest, Decision } from './authorize.ts';

export interface AwsCall {
  principal: string;
  service:
    's3' | 'dynamodb' | 'secretsmanager' | 'kms' | 'states' | 'lambda' | 'ecs' | 'iam' | 'events' | 'sns';
  action: string;
  resource: string;
  context: Record<string, string | string[]>;
  allowed: boolean;
  reason: string;
  status?: number;
  bytesIn?: number;
  bytesOut?: number;
  at: number;
}
export interface AwsGateway {
  endpointsFor(principalArn: string): Promise<{
    AWS_ENDPOINT_URL_S3: string;
    AWS_ENDPOINT_URL_DYNAMODB: string;
    AWS_ENDPOINT_URL_SECRETS_MANAGER: string;
  }>;
  /** Calls made outside HTTP (a state machine invoking a Lambda, ECS RunTask, PassRole, the KMS use of an encrypted state machine): authorized and recorded the same way. */
  record(request: AwsRequest & { service: AwsCall['service'] }): Promise<Decision>;
  readonly calls: readonly AwsCall[];
  denied(): AwsCall[];
  onCall(listener: (call: AwsCall) => void): () => void;
  close(): Promise<void>;
}

type Service = AwsCall['service'];
/** One IAM evaluation a request causes. */
type Check = AwsRequest & { service: Service; context: Record<string, string | string[]> };

const { accountId, region, partition } = LOCAL_ACCOUNT;

export async function startAwsGateway(options: {
  stack: LocalStack;
  backends: { s3: string; dynamodb?: string; secretsmanager?: string };
  /** Default true: a denied call gets the service's real AccessDenied answer. */
  enforce?: boolean;
}): Promise<AwsGateway> {
  const { stack, backends } = options;
  const enforce = options.enforce !== false;
  const calls: AwsCall[] = [];
  const listeners = new Set<(call: AwsCall) => void>();
  const servers = new Map<string, Promise<{ server: Server; url: string }>>();
  const agent = new Agent({ keepAlive: true });
  const resources = new ResourceIndex(stack);

  const publish = (call: AwsCall) => {
    calls.push(call);
    for (const listener of listeners) listener(call);
  };
  const check = async (request: Check): Promise<[Decision, AwsCall]> => {
    const context = { ...globalContext(request.principal), ...request.context };
    const decision = await authorize(stack, { ...request, context });
    const { principal, service, action, resource } = request;
    return [
      decision,
      {
        principal,
        service,
        action,
        resource,
        context,
        allowed: decision.allowed,
        reason: decision.reason,
        at: Date.now(),
      },
    ];
  };

  /** Evaluates checks in order, stopping at the first denial (AWS makes no further call then). */
  const evaluate = async (checks: Check[], into: AwsCall[]): Promise<Decision | undefined> => {
    for (const request of checks) {
      const [decision, call] = await check(request);
      into.push(call);
      if (!decision.allowed) return decision;
    }
    return undefined;
  };

  const handle = async (principal: string, req: IncomingMessage, res: ServerResponse) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const exchange: Exchange = { records: [], bytesIn: 0, bytesOut: 0, started: Date.now(), done: false };
    const finish = (status: number) => {
      if (exchange.done) return;
      exchange.done = true;
      const [primary, ...rest] = exchange.records;
      const { bytesIn, bytesOut, started } = exchange;
      if (primary) publish({ ...primary, status, bytesIn, bytesOut, at: started });
      for (const call of rest) publish({ ...call, at: started });
    };
    try {
      if (target.startsWith('DynamoDB_')) {
        const backend = backends.dynamodb ?? missingBackend('DynamoDB');
        const body = await readBody(req, exchange, 'bytesIn');
        const checks = resources.dynamodbChecks(principal, target.split('.')[1] ?? '', body);
        const denied = await evaluate(checks, exchange.records);
        if (denied && enforce)
          return finish(jsonDenied(res, 'com.amazonaws.dynamodb.v20120810', '1.0', denied));
        const upstream = await forward(agent, backend, req, exchange, body);
        relay(upstream, res, exchange, () => finish(upstream.statusCode ?? 0));
      } else if (target.startsWith('secretsmanager.')) {
        const backend = backends.secretsmanager ?? missingBackend('Secrets Manager');
        const body = await readBody(req, exchange, 'bytesIn');
        // The full ARN is known once the secret is found: ask first, answer after authorizing.
        const upstream = await forward(agent, backend, req, exchange, body);
        const answer = await readBody(upstream, exchange, 'bytesOut');
        const checks = resources.secretsChecks(principal, target.split('.')[1] ?? '', body, answer);
        const denied = await evaluate(checks, exchange.records);
        if (denied && enforce) return finish(jsonDenied(res, 'com.amazonaws.secretsmanager', '1.1', denied));
        res.writeHead(upstream.statusCode ?? 502, upstream.rawHeaders);
        res.end(answer);
        finish(upstream.statusCode ?? 0);
      } else {
        await handleS3(principal, req, res, exchange, finish);
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const code = (error as { code?: unknown }).code;
      // The backend's connection broke: the caller sees its connection break too, as with S3 itself.
      if (!(error instanceof UnmappedRequest) && typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
        res.socket?.resetAndDestroy();
      } else if (!res.headersSent) {
        res.writeHead(error instanceof UnmappedRequest ? 501 : 502, { 'content-type': 'text/plain' });
        res.end(`local AWS gateway: ${message}`);
      } else {
        res.destroy();
      }
      finish(res.statusCode);
    }
  };

  const handleS3 = async (
    principal: string,
    req: IncomingMessage,
    res: ServerResponse,
    exchange: Exchange,
    finish: (status: number) => void,
  ) => {
    const url = new URL(req.url ?? '/', 'http://local');
    const head = req.method === 'HEAD';
    const deleting = req.method === 'POST' && url.searchParams.has('delete');
    const body = deleting ? await readBody(req, exchange, 'bytesIn') : undefined;
    const plan = resources.s3Plan(principal, req.method ?? 'GET', url, req.headers, body);
    if (plan.setup) {
      // Bucket create/delete only come from test set-up: recorded for the principal, never refused.
      exchange.records.push({
        ...plan.checks[0]!,
        allowed: true,
        reason: 'test set-up: not evaluated',
        at: Date.now(),
      });
    } else {
      const denied = await evaluate(plan.checks, exchange.records);
      if (denied && enforce) {
        // Read the refused body first: answering mid-upload breaks the connection and the SDK retries.
        if (!body) await drain(req);
        return finish(s3Denied(res, head, accessDeniedMessage(denied)));
      }
    }
    const upstream = await forward(agent, backends.s3, req, exchange, body);
    const status = upstream.statusCode ?? 502;
    if (status >= 200 && status < 300 && plan.afterSuccess.length > 0) {
      const denied = await evaluate(plan.afterSuccess, exchange.records);
      if (denied && enforce) {
        upstream.resume();
        return finish(s3Denied(res, head, accessDeniedMessage(denied)));
      }
    }
    if (status === 404 && plan.missingKeyOf && enforce) {
      // S3 hides whether a key exists from callers who may not list the bucket (evaluated with no s3:prefix).
      const listing = await authorize(stack, {
        principal,
        action: 's3:ListBucket',
        resource: plan.missingKeyOf,
        context: { ...globalContext(principal), ...s3Context(req.headers, url) },
      });
      if (!listing.allowed) {
        upstream.resume();
        const primary = exchange.records[0];
        if (primary) primary.reason += '; missing key answered 403: no s3:ListBucket on the bucket';
        return finish(s3Denied(res, head, 'Access Denied'));
      }
    }
    relay(upstream, res, exchange, () => finish(status));
  };

  const listen = (principal: string) => {
    let started = servers.get(principal);
    if (!started) {
      started = new Promise((resolve, reject) => {
        const server = createServer((req, res) => void handle(principal, req, res));
        server.on('error', reject);
        server.listen(0, '127.0.0.1', () => {
          const { port } = server.address() as AddressInfo;
          resolve({ server, url: `http://127.0.0.1:${port}` });
        });
      });
      servers.set(principal, started);
    }
    return started;
  };

  return {
    async endpointsFor(principalArn) {
      const { url } = await listen(principalArn);
      return {
        AWS_ENDPOINT_URL_S3: url,
        AWS_ENDPOINT_URL_DYNAMODB: url,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: url,
      };
    },
    async record(request) {
      const [decision, call] = await check({ ...request, context: request.context ?? {} });
      publish(call);
      return decision;
    },
    calls,
    denied: () => calls.filter((call) => !call.allowed),
    onCall(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      for (const started of servers.values()) {
        const { server } = await started;
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      servers.clear();
      agent.destroy();
    },
  };
}

class UnmappedRequest extends Error {}

function missingBackend(name: string): never {
  throw new Error(`no ${name} backend configured`);
}

/** One HTTP exchange: the calls it caused, and the body bytes each way. */
interface Exchange {
  readonly records: AwsCall[];
  bytesIn: number;
  bytesOut: number;
  readonly started: number;
  done: boolean;
}

function readBody(
  stream: IncomingMessage,
  exchange: Exchange,
  counter: 'bytesIn' | 'bytesOut',
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      exchange[counter] += chunk.length;
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/** Sends the request as received (raw headers, Host included) to `backend`; streams the body unless buffered. */
function forward(
  agent: Agent,
  backend: string,
  req: IncomingMessage,
  exchange: Exchange,
  body?: Buffer,
): Promise<IncomingMessage> {
  const target = new URL(backend);
  return new Promise((resolve, reject) => {
    const upstream = httpRequest({
      agent,
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.rawHeaders,
      setHost: false,
    });
    upstream.on('response', resolve);
    upstream.on('error', reject);
    if (body) {
      upstream.end(body);
    } else {
      req.on('data', (chunk: Buffer) => (exchange.bytesIn += chunk.length));
      req.pipe(upstream);
    }
  });
}

function relay(upstream: IncomingMessage, res: ServerResponse, exchange: Exchange, done: () => void) {
  res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, upstream.rawHeaders);
  upstream.on('data', (chunk: Buffer) => (exchange.bytesOut += chunk.length));
  upstream.pipe(res);
  // A backend that dies mid-body resets the caller's connection rather than leaving it waiting.
  upstream.on('error', () => res.socket?.resetAndDestroy());
  upstream.on('aborted', () => res.socket?.resetAndDestroy());
  res.on('close', done);
}

function drain(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    req.on('end', resolve).on('error', () => resolve());
    req.resume();
  });
}

function s3Denied(res: ServerResponse, head: boolean, message: string): number {
  const requestId = randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase();
  const body = head
    ? ''
    : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>${xmlEscape(message)}</Message>` +
      `<RequestId>${requestId}</RequestId><HostId>${requestId}</HostId></Error>`;
  res.writeHead(403, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
    'x-amz-request-id': requestId,
  });
  res.end(body);
  return 403;
}

function jsonDenied(res: ServerResponse, namespace: string, version: string, decision: Decision): number {
  const body = JSON.stringify({
    __type: `${namespace}#AccessDeniedException`,
    message: accessDeniedMessage(decision),
  });
  res.writeHead(400, {
    'content-type': `application/x-amz-json-${version}`,
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(body);
  return 400;
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function header(headers: IncomingMessage['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The S3 condition keys every request carries (as far as the local world can tell). */
function s3Context(headers: IncomingMessage['headers'], url: URL): Record<string, string> {
  const context: Record<string, string> = {
    's3:authType': url.searchParams.has('X-Amz-Signature') ? 'REST-QUERY-STRING' : 'REST-HEADER',
    's3:signatureversion': 'AWS4-HMAC-SHA256',
    's3:ResourceAccount': accountId,
  };
  const sha = header(headers, 'x-amz-content-sha256');
  if (sha) context['s3:x-amz-content-sha256'] = sha;
  return context;
}

interface S3Plan {
  /** Evaluated before forwarding, in order. */
  readonly checks: Check[];
  /** Evaluated once the backend answered 2xx (GetObject decrypts only an object that exists). */
  readonly afterSuccess: Check[];
  /** GET/HEAD of an object: the bucket ARN whose s3:ListBucket decides 404 or 403 for a missing key. */
  readonly missingKeyOf?: string;
  readonly setup?: boolean;
}

interface BucketEncryption {
  readonly keyArn: string;
  readonly bucketKey: boolean;
}

/** S3 actions of bucket subresources: [GET, PUT, DELETE]. */
const BUCKET_SUBRESOURCES: Readonly<Record<string, readonly (string | undefined)[]>> = {
  versioning: ['GetBucketVersioning', 'PutBucketVersioning'],
  encryption: ['GetEncryptionConfiguration', 'PutEncryptionConfiguration', 'PutEncryptionConfiguration'],
  lifecycle: ['GetLifecycleConfiguration', 'PutLifecycleConfiguration', 'PutLifecycleConfiguration'],
  policy: ['GetBucketPolicy', 'PutBucketPolicy', 'DeleteBucketPolicy'],
  acl: ['GetBucketAcl', 'PutBucketAcl'],
  tagging: ['GetBucketTagging', 'PutBucketTagging', 'PutBucketTagging'],
  cors: ['GetBucketCORS', 'PutBucketCORS', 'PutBucketCORS'],
  location: ['GetBucketLocation'],
  logging: ['GetBucketLogging', 'PutBucketLogging'],
  notification: ['GetBucketNotification', 'PutBucketNotification'],
  'object-lock': ['GetBucketObjectLockConfiguration', 'PutBucketObjectLockConfiguration'],
  publicAccessBlock: [
    'GetBucketPublicAccessBlock',
    'PutBucketPublicAccessBlock',
    'PutBucketPublicAccessBlock',
  ],
  ownershipControls: [
    'GetBucketOwnershipControls',
    'PutBucketOwnershipControls',
    'PutBucketOwnershipControls',
  ],
};
/** S3 actions of object subresources: [GET, PUT, DELETE], and the versioned GET when a versionId is given. */
const OBJECT_SUBRESOURCES: Readonly<Record<string, readonly (string | undefined)[]>> = {
  tagging: ['GetObjectTagging', 'PutObjectTagging', 'DeleteObjectTagging', 'GetObjectVersionTagging'],
  acl: ['GetObjectAcl', 'PutObjectAcl', undefined, 'GetObjectVersionAcl'],
  retention: ['GetObjectRetention', 'PutObjectRetention'],
  'legal-hold': ['GetObjectLegalHold', 'PutObjectLegalHold'],
  attributes: ['GetObjectAttributes', undefined, undefined, 'GetObjectVersionAttributes'],
};

/** What the template says about the resources a request names: ARNs, encryption, key schemas. */
class ResourceIndex {
  readonly #stack: LocalStack;
  #buckets: Map<string, BucketEncryption | undefined> | undefined;
  #tables: Map<string, { keyArn?: string; hashKey?: string }> | undefined;
  #secrets: Map<string, string> | undefined;

  constructor(stack: LocalStack) {
    this.#stack = stack;
  }

  /** A key id, key ARN or alias as the template gives it → the key's ARN. */
  #keyArn(given: string): string {
    if (given.startsWith('arn:') && given.includes(':key/')) return given;
    if (/^[0-9a-f-]{36}$/.test(given)) return `arn:${partition}:kms:${region}:${accountId}:key/${given}`;
    const alias = given.replace(/^arn:[^:]+:kms:[^:]+:\d+:/, '');
    for (const [, resource] of this.#stack.resourcesOfType('AWS::KMS::Alias')) {
      if (this.#stack.resolve(resource.Properties?.AliasName) === alias) {
        return this.#keyArn(String(this.#stack.resolve(resource.Properties?.TargetKeyId)));
      }
    }
    return given;
  }

  encryptionOf(bucket: string): BucketEncryption | undefined {
    if (!this.#buckets) {
      this.#buckets = new Map();
      for (const [logicalId, resource] of this.#stack.resourcesOfType('AWS::S3::Bucket')) {
        const rules = this.#stack.resolve(
          (
            resource.Properties?.BucketEncryption as
              { ServerSideEncryptionConfiguration?: unknown } | undefined
          )?.ServerSideEncryptionConfiguration,
        ) as
          | {
              BucketKeyEnabled?: boolean;
              ServerSideEncryptionByDefault?: { SSEAlgorithm?: string; KMSMasterKeyID?: string };
            }[]
          | undefined;
        const rule = rules?.[0];
        const byDefault = rule?.ServerSideEncryptionByDefault;
        // Without KMSMasterKeyID it is the AWS managed aws/s3 key, whose policy lets the account use it via S3.
        const encryption =
          byDefault?.SSEAlgorithm?.startsWith('aws:kms') && byDefault.KMSMasterKeyID
            ? { keyArn: this.#keyArn(byDefault.KMSMasterKeyID), bucketKey: rule?.BucketKeyEnabled === true }
            : undefined;
        this.#buckets.set(this.#stack.ref(logicalId), encryption);
      }
    }
    return this.#buckets.get(bucket);
  }

  /** The KMS call S3 makes with the caller's credentials for an object in `bucket`. */
  #s3Kms(
    principal: string,
    action: string,
    bucket: string,
    key: string,
    headers?: IncomingMessage['headers'],
  ): Check[] {
    let encryption = this.encryptionOf(bucket);
    const requested = headers && header(headers, 'x-amz-server-side-encryption');
    if (requested?.startsWith('aws:kms')) {
      const keyId = header(headers!, 'x-amz-server-side-encryption-aws-kms-key-id');
      const bucketKey = header(headers!, 'x-amz-server-side-encryption-bucket-key-enabled');
      encryption = {
        keyArn: keyId ? this.#keyArn(keyId) : (encryption?.keyArn ?? ''),
        bucketKey: bucketKey === undefined ? (encryption?.bucketKey ?? false) : bucketKey === 'true',
      };
    } else if (requested) {
      encryption = undefined;
    }
    if (!encryption?.keyArn) return [];
    const bucketArn = `arn:${partition}:s3:::${bucket}`;
    return [
      {
        principal,
        service: 'kms',
        action,
        resource: encryption.keyArn,
        context: {
          'kms:ViaService': `s3.${region}.amazonaws.com`,
          'kms:CallerAccount': accountId,
          // With an S3 Bucket Key the encryption context is the bucket's ARN, else the object's.
          'kms:EncryptionContext:aws:s3:arn': encryption.bucketKey ? bucketArn : `${bucketArn}/${key}`,
          'kms:EncryptionContextKeys': ['aws:s3:arn'],
          'aws:ViaAWSService': 'true',
        },
      },
    ];
  }

  s3Plan(
    principal: string,
    method: string,
    url: URL,
    headers: IncomingMessage['headers'],
    body?: Buffer,
  ): S3Plan {
    const [bucket = '', ...rest] = url.pathname.slice(1).split('/');
    const key = decodeURIComponent(rest.join('/'));
    const query = url.searchParams;
    const base = s3Context(headers, url);
    const bucketArn = `arn:${partition}:s3:::${decodeURIComponent(bucket)}`;
    const objectArn = `${bucketArn}/${key}`;
    const s3 = (action: string, resource: string, context: Record<string, string> = {}): Check => ({
      principal,
      service: 's3',
      action: `s3:${action}`,
      resource,
      context: { ...base, ...context },
    });
    const unmapped = () => new UnmappedRequest(`unmapped S3 request ${method} ${url.pathname}${url.search}`);
    const verb = ({ GET: 0, HEAD: 0, PUT: 1, DELETE: 2 } as Record<string, number>)[method];

    if (!bucket) {
      if (method !== 'GET') throw unmapped();
      return { checks: [s3('ListAllMyBuckets', '*')], afterSuccess: [] };
    }
    if (rest.length === 0 || key === '') {
      const sub = Object.keys(BUCKET_SUBRESOURCES).find((name) => query.has(name));
      if (sub) {
        const action = verb === undefined ? undefined : BUCKET_SUBRESOURCES[sub]![verb];
        if (!action) throw unmapped();
        return { checks: [s3(action, bucketArn)], afterSuccess: [] };
      }
      if (method === 'PUT') return { checks: [s3('CreateBucket', bucketArn)], afterSuccess: [], setup: true };
      if (method === 'DELETE')
        return { checks: [s3('DeleteBucket', bucketArn)], afterSuccess: [], setup: true };
      if (method === 'HEAD') return { checks: [s3('ListBucket', bucketArn)], afterSuccess: [] };
      if (method === 'POST' && query.has('delete')) {
        // DeleteObjects: s3:DeleteObject on each key (simplification: one refused key refuses the request).
        const keys = [...(body ?? Buffer.alloc(0)).toString('utf8').matchAll(/<Key>([^<]*)<\/Key>/g)].map(
          (m) => xmlUnescape(m[1]!),
        );
        return { checks: keys.map((each) => s3('DeleteObject', `${bucketArn}/${each}`)), afterSuccess: [] };
      }
      if (method !== 'GET') throw unmapped();
      if (query.has('uploads'))
        return { checks: [s3('ListBucketMultipartUploads', bucketArn)], afterSuccess: [] };
      // ListObjects(V2) and ListObjectVersions: the listing keys exist only when the query sets them.
      const listing: Record<string, string> = {};
      for (const name of ['prefix', 'delimiter', 'max-keys']) {
        const value = query.get(name);
        if (value !== null) listing[`s3:${name}`] = value;
      }
      return {
        checks: [s3(query.has('versions') ? 'ListBucketVersions' : 'ListBucket', bucketArn, listing)],
        afterSuccess: [],
      };
    }

    const versionId = query.get('versionId');
    const sub = Object.keys(OBJECT_SUBRESOURCES).find((name) => query.has(name));
    if (sub) {
      const actions = OBJECT_SUBRESOURCES[sub]!;
      const action = verb === 0 && versionId ? actions[3] : verb === undefined ? undefined : actions[verb];
      if (!action) throw unmapped();
      return {
        checks: [s3(action, objectArn, versionId ? { 's3:versionid': versionId } : {})],
        afterSuccess: [],
      };
    }
    const uploadId = query.get('uploadId');
    const putContext = (): Record<string, string> => {
      const context: Record<string, string> = {};
      for (const name of [
        'x-amz-server-side-encryption',
        'x-amz-server-side-encryption-aws-kms-key-id',
        'x-amz-storage-class',
        'x-amz-acl',
      ]) {
        const value = header(headers, name);
        if (value) context[`s3:${name}`] = value;
      }
      return context;
    };
    switch (method) {
      case 'GET':
      case 'HEAD': {
        if (uploadId && method === 'GET')
          return { checks: [s3('ListMultipartUploadParts', objectArn)], afterSuccess: [] };
        const read = s3(
          versionId ? 'GetObjectVersion' : 'GetObject',
          objectArn,
          versionId ? { 's3:versionid': versionId } : {},
        );
        // HEAD reads metadata only: no kms:Decrypt (S3 API reference: HeadObject needs s3:GetObject).
        const decrypt = method === 'GET' ? this.#s3Kms(principal, 'kms:Decrypt', bucket, key) : [];
        return { checks: [read], afterSuccess: decrypt, missingKeyOf: bucketArn };
      }
      case 'PUT': {
        const source = header(headers, 'x-amz-copy-source');
        const partNumber = query.get('partNumber');
        const checks: Check[] = [];
        if (source) {
          const [path = '', sourceQuery = ''] = source.replace(/^\//, '').split('?');
          const [sourceBucket = '', ...sourceKey] = decodeURIComponent(path).split('/');
          const sourceVersion = new URLSearchParams(sourceQuery).get('versionId');
          checks.push(s3('PutObject', objectArn, { ...putContext(), 's3:x-amz-copy-source': source }));
          checks.push(
            s3(
              sourceVersion ? 'GetObjectVersion' : 'GetObject',
              `arn:${partition}:s3:::${sourceBucket}/${sourceKey.join('/')}`,
            ),
          );
          checks.push(...this.#s3Kms(principal, 'kms:Decrypt', sourceBucket, sourceKey.join('/')));
          // UploadPartCopy decrypts the upload's data key (re:Post "s3-large-file-encryption-kms-key"); CopyObject makes a new one.
          checks.push(
            ...this.#s3Kms(
              principal,
              partNumber && uploadId ? 'kms:Decrypt' : 'kms:GenerateDataKey',
              bucket,
              key,
              headers,
            ),
          );
          return { checks, afterSuccess: [] };
        }
        if (partNumber && uploadId) {
          // UploadPart: kms:Decrypt of the upload's data key, per the same article.
          return {
            checks: [s3('PutObject', objectArn), ...this.#s3Kms(principal, 'kms:Decrypt', bucket, key)],
            afterSuccess: [],
          };
        }
        return {
          checks: [
            s3('PutObject', objectArn, putContext()),
            ...this.#s3Kms(principal, 'kms:GenerateDataKey', bucket, key, headers),
          ],
          afterSuccess: [],
        };
      }
      case 'POST':
        if (query.has('uploads')) {
          return {
            checks: [
              s3('PutObject', objectArn, putContext()),
              ...this.#s3Kms(principal, 'kms:GenerateDataKey', bucket, key, headers),
            ],
            afterSuccess: [],
          };
        }
        // CompleteMultipartUpload: s3:PutObject (no KMS call documented for it).
        if (uploadId) return { checks: [s3('PutObject', objectArn)], afterSuccess: [] };
        if (query.has('restore')) return { checks: [s3('RestoreObject', objectArn)], afterSuccess: [] };
        throw unmapped();
      case 'DELETE':
        if (uploadId) return { checks: [s3('AbortMultipartUpload', objectArn)], afterSuccess: [] };
        return {
          checks: [
            s3(
              versionId ? 'DeleteObjectVersion' : 'DeleteObject',
              objectArn,
              versionId ? { 's3:versionid': versionId } : {},
            ),
          ],
          afterSuccess: [],
        };
      default:
        throw unmapped();
    }
  }

  #tableInfo(name: string): { keyArn?: string; hashKey?: string } {
    if (!this.#tables) {
      this.#tables = new Map();
      for (const [logicalId, resource] of this.#stack.resourcesOfType('AWS::DynamoDB::Table')) {
        const props = this.#stack.resolve(resource.Properties ?? {}) as {
          KeySchema?: { AttributeName: string; KeyType: string }[];
          SSESpecification?: { SSEEnabled?: boolean; KMSMasterKeyId?: string };
        };
        const kms = props.SSESpecification?.SSEEnabled ? props.SSESpecification.KMSMasterKeyId : undefined;
        this.#tables.set(this.#stack.ref(logicalId), {
          ...(kms ? { keyArn: this.#keyArn(kms) } : {}),
          ...(props.KeySchema
            ? { hashKey: props.KeySchema.find((k) => k.KeyType === 'HASH')?.AttributeName }
            : {}),
        });
      }
    }
    return this.#tables.get(name) ?? {};
  }

  dynamodbChecks(principal: string, operation: string, body: Buffer): Check[] {
    const input = JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown>;
    const tableArn = (name: string) => `arn:${partition}:dynamodb:${region}:${accountId}:table/${name}`;
    const perTable: [string, string, Record<string, unknown> | undefined][] = [];
    if (typeof input.TableName === 'string') {
      perTable.push([
        operation,
        input.TableName,
        (input.Key ?? input.Item) as Record<string, unknown> | undefined,
      ]);
    } else if (input.RequestItems && typeof input.RequestItems === 'object') {
      for (const name of Object.keys(input.RequestItems)) perTable.push([operation, name, undefined]);
    } else if (Array.isArray(input.TransactItems)) {
      const actions: Record<string, string> = {
        Get: 'GetItem',
        Put: 'PutItem',
        Update: 'UpdateItem',
        Delete: 'DeleteItem',
        ConditionCheck: 'ConditionCheckItem',
      };
      for (const item of input.TransactItems as Record<
        string,
        { TableName: string; Key?: Record<string, unknown>; Item?: Record<string, unknown> }
      >[]) {
        for (const [kind, detail] of Object.entries(item))
          perTable.push([actions[kind] ?? kind, detail.TableName, detail.Key ?? detail.Item]);
      }
    } else {
      return [
        { principal, service: 'dynamodb', action: `dynamodb:${operation}`, resource: '*', context: {} },
      ];
    }
    const checks: Check[] = [];
    for (const [action, name, key] of perTable) {
      const { keyArn, hashKey } = this.#tableInfo(name);
      const leading =
        hashKey && key ? Object.values((key[hashKey] ?? {}) as Record<string, unknown>)[0] : undefined;
      checks.push({
        principal,
        service: 'dynamodb',
        action: `dynamodb:${action}`,
        resource: tableArn(name),
        context: leading === undefined ? {} : { 'dynamodb:LeadingKeys': [String(leading)] },
      });
      // A table under a customer managed key: DynamoDB decrypts the table key with the caller's credentials.
      if (keyArn) {
        checks.push({
          principal,
          service: 'kms',
          action: 'kms:Decrypt',
          resource: keyArn,
          context: {
            'kms:ViaService': `dynamodb.${region}.amazonaws.com`,
            'kms:CallerAccount': accountId,
            'kms:EncryptionContext:aws:dynamodb:tableName': name,
            'kms:EncryptionContext:aws:dynamodb:subscriberId': accountId,
            'kms:EncryptionContextKeys': ['aws:dynamodb:tableName', 'aws:dynamodb:subscriberId'],
            'aws:ViaAWSService': 'true',
          },
        });
      }
    }
    return checks;
  }

  secretsChecks(principal: string, operation: string, body: Buffer, answer: Buffer): Check[] {
    const input = JSON.parse(body.toString('utf8') || '{}') as {
      SecretId?: string;
      VersionId?: string;
      VersionStage?: string;
    };
    let found: { ARN?: string; VersionId?: string } = {};
    try {
      found = JSON.parse(answer.toString('utf8')) as typeof found;
    } catch {
      // not JSON: an error page, so no ARN
    }
    const id = input.SecretId ?? '';
    const resource =
      found.ARN ??
      (id.startsWith('arn:') ? id : `arn:${partition}:secretsmanager:${region}:${accountId}:secret:${id}`);
    const context: Record<string, string> = { 'secretsmanager:SecretId': id };
    if (input.VersionId) context['secretsmanager:VersionId'] = input.VersionId;
    if (input.VersionStage) context['secretsmanager:VersionStage'] = input.VersionStage;
    const checks: Check[] = [
      { principal, service: 'secretsmanager', action: `secretsmanager:${operation}`, resource, context },
    ];
    const keyArn = this.#secretKey(resource);
    if (keyArn && found.ARN) {
      checks.push({
        principal,
        service: 'kms',
        action: 'kms:Decrypt',
        resource: keyArn,
        context: {
          'kms:ViaService': `secretsmanager.${region}.amazonaws.com`,
          'kms:CallerAccount': accountId,
          'kms:EncryptionContext:SecretARN': found.ARN,
          ...(found.VersionId ? { 'kms:EncryptionContext:SecretVersionId': found.VersionId } : {}),
          'kms:EncryptionContextKeys': ['SecretARN', 'SecretVersionId'],
          'aws:ViaAWSService': 'true',
        },
      });
    }
    return checks;
  }

  /** The customer managed key of a secret the template creates (others use aws/secretsmanager). */
  #secretKey(secretArn: string): string | undefined {
    if (!this.#secrets) {
      this.#secrets = new Map();
      for (const [logicalId, resource] of this.#stack.resourcesOfType('AWS::SecretsManager::Secret')) {
        const kms = this.#stack.resolve(resource.Properties?.KmsKeyId);
        if (typeof kms === 'string') this.#secrets.set(this.#stack.ref(logicalId), this.#keyArn(kms));
      }
    }
    return this.#secrets.get(secretArn);
  }
}

function xmlUnescape(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replace(/&amp;/g, '&');
}
