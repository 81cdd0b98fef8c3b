import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Measured } from './export-limits.ts';
import { REPO, SCRATCH } from './paths.ts';
import { mkdirSync } from 'node:fs';

const run = promisify(execFile);
/** Debian's awscli; an `aws` earlier on PATH (pyenv, pip) is a different program and version. */
const AWS = '/usr/bin/aws';

export interface Peer {
  readonly awsVersion: string;
  /** What installing the tools printed. */
  readonly note: string;
  /** One run of the pipeline into `key`, timed from spawn to exit; the bytes are what S3 then holds. */
  run(key: string): Promise<Measured & { readonly stderr: string }>;
  close(): Promise<void>;
}

export type PeerSetup =
  { readonly ok: true; readonly peer: Peer } | { readonly ok: false; readonly reason: string };

/** Installs the peer's tools when we may (Debian, root); otherwise explains why the peer can't run. */
export async function ensurePeerTools(): Promise<{ ok: boolean; note: string }> {
  try {
    const { stdout } = await run('bash', [join(REPO, 'scripts', 'ensure-bench-deps.sh')], { cwd: REPO });
    return { ok: true, note: stdout.trim() };
  } catch (error) {
    const failure = error as { stderr?: string; message: string };
    return { ok: false, note: (failure.stderr ?? failure.message).trim() };
  }
}

/**
 * What an operator would script: `curl -u user:pass 'http://host/export_raw_vdi?vdi=…&format=vhd' | aws
 * s3 cp - s3://bucket/key`, with the CLI's default transfer settings and path-style addressing, against
 * the same endpoint. Set up once (tools, configuration); each run is timed from spawn to exit.
 */
export async function preparePeer(
  xapi: { readonly url: string; readonly username: string; readonly password: string },
  vdiUuid: string,
  s3: { readonly client: S3Client; readonly endpoint: string; readonly region: string },
  credentials: { readonly accessKeyId: string; readonly secretAccessKey: string },
  bucket: string,
): Promise<PeerSetup> {
  const tools = await ensurePeerTools();
  if (!tools.ok) return { ok: false, reason: tools.note };
  mkdirSync(SCRATCH, { recursive: true });
  const dir = await mkdtemp(join(SCRATCH, 'peer-'));
  const configFile = join(dir, 'aws-config');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    AWS_CONFIG_FILE: configFile,
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'aws-credentials'),
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    AWS_DEFAULT_REGION: s3.region,
    AWS_PAGER: '',
  };
  try {
    await run(AWS, ['configure', 'set', 'default.s3.addressing_style', 'path'], { env });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const awsVersion = (await run(AWS, ['--version'], { env })).stdout.trim();
  // Credentials and the URL go in a curl config file, not on a command line others can read.
  const curlConfig = join(dir, 'curl.conf');
  const url = new URL('/export_raw_vdi', xapi.url);
  url.searchParams.set('vdi', vdiUuid);
  url.searchParams.set('format', 'vhd');
  await writeFile(curlConfig, `user = "${xapi.username}:${xapi.password}"\nurl = "${url.href}"\n`, {
    mode: 0o600,
  });
  const script =
    'set -o pipefail; curl -sS --fail -K "$1" | "$2" s3 cp - "s3://$3/$4" --endpoint-url "$5" --only-show-errors';
  return {
    ok: true,
    peer: {
      awsVersion,
      note: tools.note,
      async run(key) {
        const started = performance.now();
        const stderr = await new Promise<string>((resolve, reject) => {
          const child = spawn('bash', ['-c', script, 'peer', curlConfig, AWS, bucket, key, s3.endpoint], {
            env,
            stdio: ['ignore', 'ignore', 'pipe'],
          });
          let text = '';
          child.stderr.on('data', (data: Buffer) => (text += data.toString()));
          child.once('error', reject);
          child.once('close', (code) =>
            code === 0 ? resolve(text) : reject(new Error(`peer pipeline exited ${code}: ${text.trim()}`)),
          );
        });
        const seconds = (performance.now() - started) / 1000;
        const head = await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { bytes: head.ContentLength ?? 0, seconds, stderr: stderr.trim() };
      },
      close: () => rm(dir, { recursive: true, force: true }),
    },
  };
}
