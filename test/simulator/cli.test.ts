import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCliArgs, parseSize } from '../../world/xapi-simulator/cli-args.ts';
import { call, rawHttp } from './sim-client.ts';
import { qemuDataExtents } from './qcow2-tools.ts';
import { qemuCheck, qemuConvert, qemuVirtualSize } from '../world/qemu-img.ts';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;
const BLOCK = 2 * MiB;

interface Ready {
  url: string;
  memberUrl: string;
  username: string;
  password: string;
  vdis: { uuid: string; srUuid: string; virtualSize: number; imageFormat: string }[];
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

/** Runs the CLI for options it must refuse: its exit code, stdout and stderr once it has exited. */
function runCliToExit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('node_modules/.bin/node', ['world/xapi-simulator/main.ts', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000); // a CLI that starts instead of refusing
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** GET /export_raw_vdi of the VDI in a format, with a session of its own: the body as sent. */
async function exportVdi(ready: Ready, vdiUuid: string, format: string): Promise<Buffer> {
  const session = (await call(ready.url, 'session.login_with_password', [
    ready.username,
    ready.password,
    '1.0',
    'cli-test',
  ])) as string;
  try {
    const response = await rawHttp(ready.url, {
      method: 'GET',
      path: `/export_raw_vdi?session_id=${session}&vdi=${vdiUuid}&format=${format}`,
    });
    expect(response.status).toBe(200);
    return response.body;
  } finally {
    await call(ready.url, 'session.logout', [session]);
  }
}

const digest = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

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
    expect(vdi!.imageFormat).toBe('vhd');

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

    // The seeded VM: the VDI as its boot disk, a second disk, an empty CD drive, VIFs on two networks.
    const { vms } = ready as Ready & { vms: { uuid: string; disks: string[] }[] };
    expect(vms).toHaveLength(1);
    expect(vms[0]!.disks[0]).toBe(vdi!.uuid);
    const vmRef = (await call(ready.url, 'VM.get_by_uuid', [session, vms[0]!.uuid])) as string;
    const vm = (await call(ready.url, 'VM.get_record', [session, vmRef])) as {
      VBDs: string[];
      VIFs: string[];
    };
    const vbds = await Promise.all(
      vm.VBDs.map(
        (ref) => call(ready.url, 'VBD.get_record', [session, ref]) as Promise<Record<string, unknown>>,
      ),
    );
    expect(vbds.map((vbd) => [vbd.userdevice, vbd.type, vbd.empty]).sort()).toEqual([
      ['0', 'Disk', false],
      ['1', 'Disk', false],
      ['3', 'CD', true],
    ]);
    const vifs = await Promise.all(
      vm.VIFs.map((ref) => call(ready.url, 'VIF.get_record', [session, ref]) as Promise<{ network: string }>),
    );
    expect(new Set(vifs.map((vif) => vif.network)).size).toBe(2);

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
    expect(parseSize('3TiB')).toBe(3 * TiB);
  });

  it('parses --image-format and --vdi-image: --vdi-image makes --populate none, and refuses another mode', () => {
    const plain = parseCliArgs([]);
    expect(plain).toMatchObject({ imageFormat: undefined, vdiImage: undefined, vdiSize: undefined });
    expect(plain.populate).toBe('scattered');
    expect(parseCliArgs(['--image-format', 'qcow2']).imageFormat).toBe('qcow2');
    expect(parseCliArgs(['--image-format', 'vhd']).imageFormat).toBe('vhd');
    for (const bad of ['raw', 'QCOW2', 'vmdk', '']) {
      expect(() => parseCliArgs(['--image-format', bad])).toThrow(/--image-format.*vhd or qcow2/);
    }
    expect(() => parseCliArgs(['--image-format'])).toThrow(/--image-format needs a value/);

    const image = parseCliArgs(['--vdi-image', 'disk.raw', '--vdi-size', '3TiB']);
    expect(image).toMatchObject({ vdiImage: 'disk.raw', populate: 'none', vdiSize: 3 * TiB });
    expect(parseCliArgs(['--populate', 'none', '--vdi-image', 'disk.raw']).populate).toBe('none');
    for (const mode of ['generated', 'scattered']) {
      expect(() => parseCliArgs(['--vdi-image', 'disk.raw', '--populate', mode])).toThrow(
        new RegExp(`--populate ${mode}.*--vdi-image`),
      );
      expect(() => parseCliArgs(['--populate', mode, '--vdi-image', 'disk.raw'])).toThrow(/--vdi-image/);
    }
  });

  it('seeds the VDI from a --vdi-image raw file as qcow2: qemu-img reads the same bytes back, the zero gap unallocated', async () => {
    // 40 MiB and 3 sectors (the last block is partial), random regions around an all-zero aligned gap.
    const size = 40 * MiB + 3 * 512;
    const image = Buffer.alloc(size);
    const region = (from: number, length: number) => randomBytes(length).copy(image, from);
    region(0, 100 * 1024); // block 0: its head only
    region(3 * BLOCK + 12_345, 3 * BLOCK); // blocks 3..6, unaligned ends
    // blocks 7..11 stay all zeros: the gap
    region(12 * BLOCK - 512, 1024); // straddles blocks 11 and 12 by one sector each way
    region(16 * BLOCK, BLOCK); // block 16, exactly
    region(size - 2048, 2048); // the tail of the partial last block
    const gap = { start: 7 * BLOCK, end: 11 * BLOCK }; // blocks 7..10: 11 holds the straddling sector
    expect(image.subarray(gap.start, gap.end).every((byte) => byte === 0)).toBe(true);
    const file = join(dir, 'seed.raw');
    await writeFile(file, image);

    const cli = startCli(['--port', '0', '--vdi-image', file, '--image-format', 'qcow2']);
    const ready = await cli.ready;
    try {
      const [vdi] = ready.vdis;
      expect(vdi).toMatchObject({ virtualSize: size, imageFormat: 'qcow2' });
      const qcow2 = await exportVdi(ready, vdi!.uuid, 'qcow2');
      const exported = join(dir, 'seed-export.qcow2');
      await writeFile(exported, qcow2);
      await qemuCheck(exported, 'qcow2');
      expect(await qemuVirtualSize(exported, 'qcow2')).toBe(size);
      await qemuConvert('qcow2', 'raw', exported, join(dir, 'seed-export.raw'));
      const converted = await readFile(join(dir, 'seed-export.raw'));
      expect(converted.length).toBe(size);
      expect(digest(converted)).toBe(digest(image));

      // Only the blocks with data were written (blocks 0, 3..6, 11, 12, 16, 19 and the partial 20): qemu-img's
      // map has nothing in the gap, and the data it maps is exactly those blocks, written whole.
      const blocks = Array.from({ length: Math.ceil(size / BLOCK) }, (_, index) => index);
      const dataBlocks = blocks.filter((index) =>
        image.subarray(index * BLOCK, (index + 1) * BLOCK).some((byte) => byte !== 0),
      );
      expect(dataBlocks).toEqual([0, 3, 4, 5, 6, 11, 12, 16, 19, 20]);
      const extents = await qemuDataExtents(exported);
      for (const { start, length } of extents) {
        expect(start + length <= gap.start || start >= gap.end, `data at ${start}+${length}`).toBe(true);
      }
      const dataBytes = extents.reduce((sum, { length }) => sum + length, 0);
      expect(dataBytes).toBe(
        dataBlocks.reduce((sum, index) => sum + Math.min(BLOCK, size - index * BLOCK), 0),
      );
      expect(qcow2.length).toBeLessThan(size - 10 * BLOCK); // 11 of 21 blocks are holes
    } finally {
      cli.child.kill('SIGTERM');
      expect(await cli.exited).toBe(0);
    }
    expect(cli.stdoutLines).toHaveLength(1);
  });

  it('takes a --vdi-size above the --vdi-image size: the rest reads as zeros, the format the default vhd', async () => {
    const image = randomBytes(3 * MiB);
    const file = join(dir, 'small.raw');
    await writeFile(file, image);
    const cli = startCli(['--port', '0', '--vdi-image', file, '--vdi-size', '8MiB', '--populate', 'none']);
    const ready = await cli.ready;
    try {
      const [vdi] = ready.vdis;
      expect(vdi).toMatchObject({ virtualSize: 8 * MiB, imageFormat: 'vhd' });
      const raw = await exportVdi(ready, vdi!.uuid, 'raw');
      expect(raw.length).toBe(8 * MiB);
      expect(digest(raw)).toBe(digest(Buffer.concat([image, Buffer.alloc(5 * MiB)])));
    } finally {
      cli.child.kill('SIGTERM');
      expect(await cli.exited).toBe(0);
    }
  });

  it.each([
    ['3TiB', 3 * TiB],
    ['16381GiB', 16_381 * 1024 * MiB], // XCP-ng's largest qcow2 VDI
  ])(
    'starts a sparse %s qcow2 VDI at once: the ready line and qemu-img agree on its size',
    async (text, bytes) => {
      const started = Date.now();
      const cli = startCli([
        '--port',
        '0',
        '--vdi-size',
        text,
        '--image-format',
        'qcow2',
        '--populate',
        'none',
      ]);
      const ready = await cli.ready;
      try {
        expect(Date.now() - started).toBeLessThan(10_000); // node's own start; nothing per block of the disk
        const [vdi] = ready.vdis;
        expect(vdi).toMatchObject({ virtualSize: bytes, imageFormat: 'qcow2' });
        const qcow2 = await exportVdi(ready, vdi!.uuid, 'qcow2');
        expect(qcow2.length).toBeLessThan(16 * MiB); // metadata only
        const exported = join(dir, `huge-${text}.qcow2`);
        await writeFile(exported, qcow2);
        expect(await qemuVirtualSize(exported, 'qcow2')).toBe(bytes);
        expect(await qemuDataExtents(exported)).toEqual([]);
      } finally {
        cli.child.kill('SIGTERM');
        expect(await cli.exited).toBe(0);
      }
    },
  );

  it('refuses bad --image-format, --vdi-image and --vdi-size combinations: exit 2, the flag named', async () => {
    const image = join(dir, 'four.raw');
    await writeFile(image, Buffer.alloc(4 * MiB, 1));
    const odd = join(dir, 'odd.raw');
    await writeFile(odd, Buffer.alloc(1000, 1));
    const empty = join(dir, 'empty.raw');
    await writeFile(empty, Buffer.alloc(0));
    const missing = join(dir, 'no-such.raw');
    expect((await stat(image)).size).toBe(4 * MiB);
    const cases: [string[], RegExp][] = [
      [['--image-format', 'raw'], /--image-format must be vhd or qcow2, got raw/],
      [['--vdi-image', missing], new RegExp(`--vdi-image ${missing}: cannot open it .*ENOENT`)],
      [
        ['--vdi-image', odd],
        new RegExp(`--vdi-image ${odd}: its size, 1000 bytes, is not a positive multiple of 512`),
      ],
      [['--vdi-image', empty], new RegExp(`--vdi-image ${empty}: its size, 0 bytes`)],
      [['--vdi-image', dir], /--vdi-image .*not a regular file/],
      [
        ['--vdi-image', image, '--vdi-size', '2MiB'],
        new RegExp(`--vdi-size 2097152 is smaller than the --vdi-image ${image} \\(4194304 bytes\\)`),
      ],
      [
        ['--vdi-image', image, '--populate', 'generated'],
        /--populate generated cannot be used with --vdi-image/,
      ],
      [['--vdi-size', '3TiB', '--image-format', 'vhd'], /--image-format vhd holds at most/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCliToExit(args)));
    results.forEach((result, i) => {
      const [args, message] = cases[i]!;
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stdout, args.join(' ')).toBe('');
      expect(result.stderr, args.join(' ')).toMatch(/^xapi simulator: /);
      expect(result.stderr, args.join(' ')).toMatch(message);
    });
  });
});
