/**
 * A tiny Secrets Manager on loopback: the JSON protocol, GetSecretValue only. Enough for code that reads its
 * pool credentials the way it does in AWS (SDK, endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LOCAL_ACCOUNT } from './account.ts';

export interface SecretsServer {
  readonly url: string;
  /** Stores (or replaces) a secret; returns its full ARN, `…:secret:<name>-XXXXXX` like Secrets Manager's. */
  putSecret(name: string, value: string): string;
  close(): Promise<void>;
}

interface Secret {
  readonly arn: string;
  readonly name: string;
  readonly value: string;
  readonly versionId: string;
  readonly created: number;
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export async function startSecretsServer(): Promise<SecretsServer> {
  const { partition, region, accountId } = LOCAL_ACCOUNT;
  const secrets = new Map<string, Secret>();
  // A SecretId may be the full ARN, the ARN without its random suffix, or the name.
  const find = (id: string): Secret | undefined =>
    [...secrets.values()].find(
      (secret) =>
        id === secret.arn || id === secret.name || id === secret.arn.replace(/-[A-Za-z0-9]{6}$/, ''),
    );

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-requestid': randomUUID(),
        });
        res.end(JSON.stringify(body));
      };
      const target = String(req.headers['x-amz-target'] ?? '');
      if (target !== 'secretsmanager.GetSecretValue') {
        return reply(400, {
          __type: 'UnknownOperationException',
          message: `operation ${target || '(no X-Amz-Target)'} is not supported by the local Secrets Manager: GetSecretValue only`,
        });
      }
      let input: { SecretId?: unknown };
      try {
        input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { SecretId?: unknown };
      } catch {
        return reply(400, { __type: 'SerializationException', message: 'request body is not JSON' });
      }
      const secret = typeof input.SecretId === 'string' ? find(input.SecretId) : undefined;
      if (!secret) {
        return reply(400, {
          __type: 'ResourceNotFoundException',
          message: "Secrets Manager can't find the specified secret.",
        });
      }
      reply(200, {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: secret.versionId,
        SecretString: secret.value,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: secret.created,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    putSecret(name, value) {
      const existing = secrets.get(name);
      const random = [...randomBytes(6)].map((byte) => ALPHANUMERIC[byte % ALPHANUMERIC.length]).join('');
      const arn =
        existing?.arn ?? `arn:${partition}:secretsmanager:${region}:${accountId}:secret:${name}-${random}`;
      secrets.set(name, { arn, name, value, versionId: randomUUID(), created: Date.now() / 1000 });
      return arn;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
