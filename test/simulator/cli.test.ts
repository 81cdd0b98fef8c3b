import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSize } from '../../world/xapi-simulator/cli-args.ts';
import { call, rawHttp } from './sim-client.ts';
import { qemuConvert, qemuVirtualSize } from '../world/qemu-img.ts';

const MiB = 1024 * 1024;

interface Ready {
  url: string;
  memberUrl: string;
  username: string;
  password: string;
  vdis: { uuid: string; srUuid: string; virtualSize: number }[];
}

function startCli(args: string[]) {
  const child = spawn('node_modules/.bin/node', ['world/xapi-simulator/main.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdoutLines: string[] = [];
  const ready = new Promise<Ready>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      stdoutLines.push(line);
      if (stdoutLines.length === 1) resolve(JSON.parse(line) as Ready);
    });
    child.once('exit', (code) => reject(new Error(`simulator exited early with ${code}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready, exited, stdoutLines };
}

describe('standalone simulator (npm run sim)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sim-cli-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('prints one JSON line, serves the default 256 MiB VDI as vhd and raw that qemu-img agrees on, exits 0 on SIGTERM', async () => {
    const cli = startCli(['--port', '0']);
    const ready = await cli.ready;
    expect(Object.keys(ready)).toEqual(expect.arrayContaining(['url', 'username', 'password', 'vdis']));
    expect(ready.vdis).toHaveLength(1);
    const [vdi] = ready.vdis;
    expect(vdi!.virtualSize).toBe(256 * MiB);

    const session = (await call(ready.url, 'session.login_with_password', [
      ready.username,
      ready.password,
      '1.0',
      'cli-test',
    ])) as string;
    const path = (format: string) =>
      `/export_raw_vdi?session_id=${session}&vdi=${vdi!.uuid}&format=${format}`;
    const vhd = await rawHttp(ready.url, { method: 'GET', path: path('vhd') });
    const raw = await rawHttp(ready.url, { method: 'GET', path: path('raw') });
    expect(raw.body.length).toBe(256 * MiB);
    expect(vhd.body.length).toBeLessThan(raw.body.length); // sparse: scattered blocks only
    await writeFile(join(dir, 'disk.vhd'), vhd.body);
    await qemuConvert('vpc', 'raw', join(dir, 'disk.vhd'), join(dir, 'disk.raw'));
    const size = await qemuVirtualSize(join(dir, 'disk.vhd'), 'vpc');
    expect(size).toBeGreaterThan(250 * MiB);
    expect(size).toBeLessThanOrEqual(256 * MiB);
    const converted = await readFile(join(dir, 'disk.raw'));
    const digest = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
    expect(digest(converted.subarray(0, size))).toBe(digest(raw.body.subarray(0, size)));

    await call(ready.url, 'session.logout', [session]);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    expect(cli.stdoutLines).toHaveLength(1);
  });

  it('takes --vdi-size, --member and fault flags', async () => {
    const cli = startCli(['--port', '0', '--vdi-size', '8MiB', '--member', '--fail-login', 'HOST_OFFLINE']);
    const ready = await cli.ready;
    try {
      expect(ready.vdis[0]!.virtualSize).toBe(8 * MiB);
      await expect(
        call(ready.url, 'session.login_with_password', [ready.username, ready.password]),
      ).rejects.toMatchObject({
        code: 'HOST_OFFLINE',
      });
    } finally {
      cli.child.kill('SIGINT');
      expect(await cli.exited).toBe(0);
    }
  });

  it('parses sizes in bytes and binary units', () => {
    expect(parseSize('256MiB')).toBe(256 * MiB);
    expect(parseSize('1GiB')).toBe(1024 * MiB);
    expect(parseSize('2G')).toBe(2048 * MiB);
    expect(parseSize('1048576')).toBe(MiB);
    expect(() => parseSize('12 parsecs')).toThrow();
    expect(() => parseSize('1000')).toThrow(/multiple of 512/);
  });
});
