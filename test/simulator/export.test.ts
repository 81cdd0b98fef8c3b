import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseVhd, vhdByteLength, VHD_BLOCK_SIZE } from '../../lambdas/vhd/index.ts';
import { qemuConvert, qemuVirtualSize } from '../world/qemu-img.ts';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { basicAuth, call, callError, login, rawHttp } from './sim-client.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;
let session: string;

beforeAll(async () => {
  sim = await startXapiSimulator();
  session = await login(sim);
});
afterAll(() => sim.close());
afterEach(() => sim.clearFaults());

function exportPath(query: Record<string, string>): string {
  return `/export_raw_vdi?${new URLSearchParams({ session_id: session, ...query })}`;
}

async function newTask(): Promise<string> {
  return (await call(sim.url, 'task.create', [session, 'export', ''])) as string;
}

async function taskRecord(task: string): Promise<Record<string, unknown>> {
  return (await call(sim.url, 'task.get_record', [session, task])) as Record<string, unknown>;
}

async function blocksOf(body: Uint8Array) {
  const blocks: { index: number; data: Uint8Array; bitmap: Uint8Array }[] = [];
  const parser = parseVhd(
    (async function* () {
      yield body;
    })(),
  );
  let next = await parser.next();
  while (next.done !== true) {
    blocks.push(next.value);
    next = await parser.next();
  }
  return { blocks, summary: next.value };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('export head', () => {
  it('sends 200 with task-id and Connection: close, no Content-Length, no chunking; body ends at close', async () => {
    const vdi = sim.addVdi({ virtualSize: 6 * MiB, populate: 'scattered' });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
    });
    expect(response.head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(response.headers['task-id']).toBe(task);
    expect(response.headers.connection).toBe('close');
    expect(response.headers['content-length']).toBeUndefined();
    expect(response.headers['transfer-encoding']).toBeUndefined();
    expect(response.body.length).toBe(vhdByteLength(6 * MiB, sim.allocatedBlocks(vdi.uuid).length));
    expect(await taskRecord(task)).toMatchObject({ status: 'success', progress: 1, error_info: [] });
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('accepts the VDI by ref, the path with a trailing slash, and works without a task_id', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, populate: 'generated' });
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi/?session_id=${session}&vdi=${vdi.ref}&format=raw`,
    });
    expect(response.status).toBe(200);
    expect(response.headers['task-id']).toMatch(/^OpaqueRef:/);
    expect(sha256(response.body)).toBe(sim.diskSha256(vdi.uuid));
  });
});

describe('export bodies', () => {
  it('vhd: parses with our codec (dynamic, type 3) and every block equals the disk', async () => {
    const vdi = sim.addVdi({ virtualSize: 12 * MiB + 512 * 3, populate: 'scattered' });
    sim.writeDisk(vdi.uuid, 5 * MiB + 7, Buffer.from('written by a test'));
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'vhd' }),
    });
    const { blocks, summary } = await blocksOf(response.body);
    expect(summary).toMatchObject({ diskType: 'dynamic', virtualSize: 12 * MiB + 1536 });
    expect(blocks.map((block) => block.index)).toEqual(sim.allocatedBlocks(vdi.uuid));
    for (const block of blocks) {
      expect(block.bitmap.every((byte) => byte === 0xff)).toBe(true);
      const start = block.index * VHD_BLOCK_SIZE;
      const length = Math.min(VHD_BLOCK_SIZE, 12 * MiB + 1536 - start);
      expect(Buffer.from(block.data.subarray(0, length)).equals(sim.readDisk(vdi.uuid, start, length))).toBe(
        true,
      );
    }
  });

  it('raw: exactly virtual_size bytes, holes as zeros', async () => {
    const vdi = sim.addVdi({ virtualSize: 10 * MiB + 512, populate: 'scattered' });
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw' }),
    });
    expect(response.body.length).toBe(10 * MiB + 512);
    expect(sha256(response.body)).toBe(sim.diskSha256(vdi.uuid));
    const hole = [0, 1, 2, 3, 4, 5].find((index) => !sim.allocatedBlocks(vdi.uuid).includes(index));
    expect(hole).toBeDefined();
    expect(
      response.body
        .subarray(hole! * VHD_BLOCK_SIZE, (hole! + 1) * VHD_BLOCK_SIZE)
        .every((byte) => byte === 0),
    ).toBe(true);
  });

  it('delta (base=): exactly the blocks written since the base snapshot, as a differencing VHD', async () => {
    const vdi = sim.addVdi({ virtualSize: 16 * MiB, populate: 'scattered' });
    const base = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
    sim.writeDisk(vdi.uuid, 3 * MiB, Buffer.alloc(10, 1)); // block 1
    sim.writeDisk(vdi.uuid, 2 * MiB - 5, Buffer.alloc(10, 2)); // blocks 0 and 1
    sim.writeDisk(vdi.uuid, 15 * MiB, Buffer.alloc(512, 0)); // block 7: zeros, still a write
    const top = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
    sim.writeDisk(vdi.uuid, 9 * MiB, Buffer.alloc(10, 3)); // after the top snapshot: not in its delta

    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: top, base, format: 'vhd' }),
    });
    const { blocks, summary } = await blocksOf(response.body);
    expect(summary.diskType).toBe('differencing');
    expect(blocks.map((block) => block.index)).toEqual([0, 1, 7]);
    const topUuid = (await call(sim.url, 'VDI.get_uuid', [session, top])) as string;
    for (const block of blocks) {
      expect(
        Buffer.from(block.data).equals(sim.readDisk(topUuid, block.index * VHD_BLOCK_SIZE, VHD_BLOCK_SIZE)),
      ).toBe(true);
    }
    // The base given by uuid works too, and a delta against itself is empty.
    const baseUuid = (await call(sim.url, 'VDI.get_uuid', [session, base])) as string;
    const same = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: baseUuid, base: baseUuid, format: 'vhd' }),
    });
    expect((await blocksOf(same.body)).blocks).toEqual([]);
  });

  it('refuses vhd exports of disks over 2040 GiB with VDI_TOO_LARGE after the 200', async () => {
    const vdi = sim.addVdi({ virtualSize: 2041 * 1024 * MiB });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
    });
    expect(response.status).toBe(200);
    expect(response.body.subarray(0, 12).toString()).toBe('HTTP/1.1 500');
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['VDI_TOO_LARGE', vdi.ref, String(2040 * 1024 ** 3)],
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });
  it('an unknown base fails the task after the 200 with a 500 in the body', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, populate: 'generated' });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, base: 'OpaqueRef:gone', format: 'vhd', task_id: task }),
    });
    expect(response.status).toBe(200);
    expect(response.body.toString('latin1')).toMatch(/^HTTP\/1\.1 500 /);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['HANDLE_INVALID', 'VDI', 'OpaqueRef:gone'],
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });
});

/** One's complement of the byte sum with the 4 checksum bytes taken as zero (VHD specification). */
function vhdChecksum(bytes: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) if (i < at || i >= at + 4) sum += bytes[i]!;
  return ~sum >>> 0;
}

async function exportBody(query: Record<string, string>): Promise<Buffer> {
  return (await rawHttp(sim.url, { method: 'GET', path: exportPath(query) })).body;
}

describe('the host export layout, field by field', () => {
  it('a full: footer copy, header at 512 (cxsparse, BAT at 2048, 2 MiB), a zero sector, BAT, full bitmaps, footer', async () => {
    const size = 12 * MiB + 1536;
    const vdi = sim.addVdi({ virtualSize: size, populate: 'scattered' });
    const body = await exportBody({ vdi: vdi.uuid, format: 'vhd' });
    const present = sim.allocatedBlocks(vdi.uuid);
    const footer = body.subarray(0, 512);
    expect(footer.toString('latin1', 0, 8)).toBe('conectix');
    expect(footer.readUInt32BE(64)).toBe(vhdChecksum(footer, 64));
    expect(footer.readUInt32BE(60)).toBe(3);
    expect(footer.toString('latin1', 28, 32)).toBe('tap\0');
    expect(Number(footer.readBigUInt64BE(16))).toBe(512);
    expect(Number(footer.readBigUInt64BE(48))).toBe(size);
    expect(body.subarray(body.length - 512).equals(footer)).toBe(true);
    const header = body.subarray(512, 1536);
    expect(header.toString('latin1', 0, 8)).toBe('cxsparse');
    expect(header.readUInt32BE(36)).toBe(vhdChecksum(header, 36));
    expect(Number(header.readBigUInt64BE(16))).toBe(2048);
    expect(header.readUInt32BE(28)).toBe(7);
    expect(header.readUInt32BE(32)).toBe(2 * MiB);
    // A full has no parent: unique id, name and locators all zero.
    expect(header.subarray(40, 1024).every((byte) => byte === 0)).toBe(true);
    expect(body.subarray(1536, 2048).every((byte) => byte === 0)).toBe(true);
    const bat = body.subarray(2048, 2560);
    let expectedSector = 2560 / 512;
    for (let index = 0; index < 128; index++) {
      const entry = bat.readUInt32BE(index * 4);
      if (!present.includes(index)) {
        expect(entry).toBe(0xffffffff);
        continue;
      }
      expect(entry).toBe(expectedSector);
      const at = entry * 512;
      expect(body.subarray(at, at + 512).every((byte) => byte === 0xff)).toBe(true);
      expectedSector += (512 + 2 * MiB) / 512;
    }
    expect(body.length).toBe(2560 + present.length * (512 + 2 * MiB) + 512);
  });

  it('a delta names the base’s host file as parent (non-zero parent uuid, MacX locator), and every export has a fresh random unique id', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB, populate: 'scattered' });
    const base = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
    sim.writeDisk(vdi.uuid, 3 * MiB, Buffer.alloc(10, 1));
    const top = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
    const baseUuid = (await call(sim.url, 'VDI.get_uuid', [session, base])) as string;
    const first = await exportBody({ vdi: top, base, format: 'vhd' });
    const second = await exportBody({ vdi: top, base, format: 'vhd' });
    const full = await exportBody({ vdi: top, format: 'vhd' });
    for (const body of [first, second]) {
      expect(body.readUInt32BE(60)).toBe(4);
      const header = body.subarray(512, 1536);
      expect(header.readUInt32BE(36)).toBe(vhdChecksum(header, 36));
      const parentId = header.subarray(40, 56);
      expect(parentId.every((byte) => byte === 0)).toBe(false);
      const path = `/var/run/sr-mount/${vdi.srUuid}/${baseUuid}.vhd`;
      const name = Buffer.from(header.subarray(64, 64 + path.length * 2))
        .swap16()
        .toString('utf16le');
      expect(name).toBe(path);
      expect(header.toString('latin1', 576, 580)).toBe('MacX');
      expect([header.readUInt32BE(580), header.readUInt32BE(584)]).toEqual([1, `file://${path}`.length]);
      expect(Number(header.readBigUInt64BE(592))).toBe(1536);
      expect(header.subarray(600, 1024).every((byte) => byte === 0)).toBe(true); // locators 1..7, reserved
      expect(body.subarray(1536, 2048).every((byte) => byte === 0)).toBe(true); // the stream leaves it empty
    }
    // The same base file each time; the export's own id is new each time and is never the parent's.
    expect(first.subarray(552, 568).equals(second.subarray(552, 568))).toBe(true);
    const ids = [first, second, full].map((body) => body.subarray(68, 84).toString('hex'));
    expect(new Set(ids).size).toBe(3);
    expect(ids).not.toContain(first.subarray(552, 568).toString('hex'));
  });
});

describe('qemu-img reads the simulator’s exports', () => {
  it('a full converts to exactly the raw export, and a delta to its blocks with holes elsewhere', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-export-'));
    try {
      const size = 12 * MiB + 1536;
      const vdi = sim.addVdi({ virtualSize: size, populate: 'scattered' });
      const base = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
      sim.writeDisk(vdi.uuid, 3 * MiB, Buffer.alloc(10, 1));
      sim.writeDisk(vdi.uuid, 9 * MiB, Buffer.alloc(MiB, 2));
      const top = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
      const files = {
        full: join(dir, 'full.vhd'),
        fullRaw: join(dir, 'full.raw'),
        delta: join(dir, 'delta.vhd'),
        deltaRaw: join(dir, 'delta.raw'),
      };
      await writeFile(files.full, await exportBody({ vdi: base, format: 'vhd' }));
      await writeFile(files.delta, await exportBody({ vdi: top, base, format: 'vhd' }));
      const baseRaw = await exportBody({ vdi: base, format: 'raw' });
      const topRaw = await exportBody({ vdi: top, format: 'raw' });

      expect(await qemuVirtualSize(files.full, 'vpc')).toBe(size);
      await qemuConvert('vpc', 'raw', files.full, files.fullRaw);
      expect((await readFile(files.fullRaw)).equals(baseRaw)).toBe(true);

      expect(await qemuVirtualSize(files.delta, 'vpc')).toBe(size);
      await qemuConvert('vpc', 'raw', files.delta, files.deltaRaw);
      const deltaRaw = await readFile(files.deltaRaw);
      expect(deltaRaw.length).toBe(size);
      const block = 2 * MiB;
      for (let index = 0; index < 7; index++) {
        const range = [index * block, Math.min(size, (index + 1) * block)] as const;
        const expected = [1, 4].includes(index)
          ? topRaw.subarray(...range)
          : Buffer.alloc(range[1] - range[0]);
        if (!deltaRaw.subarray(...range).equals(expected)) throw new Error(`block ${index} differs`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('refusals before the 200', () => {
  it('401 without credentials or with a bad session; Basic auth works; 403 for the read-only role', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB });
    const path = `/export_raw_vdi?vdi=${vdi.uuid}&format=raw`;
    const none = await rawHttp(sim.url, { method: 'GET', path });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Basic/);
    expect(
      (await rawHttp(sim.url, { method: 'GET', path: `${path}&session_id=OpaqueRef:bogus` })).status,
    ).toBe(401);
    expect(
      (
        await rawHttp(sim.url, {
          method: 'GET',
          path,
          headers: { Authorization: basicAuth(sim.username, 'wrong') },
        })
      ).status,
    ).toBe(401);
    const basic = await rawHttp(sim.url, {
      method: 'GET',
      path,
      headers: { Authorization: basicAuth(sim.username, sim.password) },
    });
    expect([basic.status, basic.body.length]).toEqual([200, 2 * MiB]);
    const cookie = await rawHttp(sim.url, {
      method: 'GET',
      path,
      headers: { Cookie: `session_id=${session}` },
    });
    expect(cookie.status).toBe(200);
    const readOnly = await rawHttp(sim.url, {
      method: 'GET',
      path,
      headers: { Authorization: basicAuth(sim.readOnlyUsername, sim.readOnlyPassword) },
    });
    expect(readOnly.status).toBe(403);
    const roSession = (await call(sim.url, 'session.login_with_password', [
      sim.readOnlyUsername,
      sim.readOnlyPassword,
    ])) as string;
    expect((await rawHttp(sim.url, { method: 'GET', path: `${path}&session_id=${roSession}` })).status).toBe(
      403,
    );
  });

  it('unknown or missing vdi: plain 500 that leaves the caller task untouched; unknown path: 404', async () => {
    const task = await newTask();
    const unknown = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: 'no-such-vdi', format: 'vhd', task_id: task }),
    });
    expect(unknown.status).toBe(500);
    expect(unknown.headers['task-id']).toBeUndefined();
    expect((await rawHttp(sim.url, { method: 'GET', path: exportPath({ format: 'vhd' }) })).status).toBe(500);
    expect(await taskRecord(task)).toMatchObject({ status: 'pending', progress: 0 });
    expect(
      (await rawHttp(sim.url, { method: 'GET', path: `/export_vdi_please?session_id=${session}` })).status,
    ).toBe(404);
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('unknown format: 404 and the task failed', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'qcow9', task_id: task }),
    });
    expect(response.status).toBe(404);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['INTERNAL_ERROR', 'Unknown format qcow9'],
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('a VDI on the member: the master answers 302 to the member with the same path and query', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'scattered', onMember: true });
    const task = await newTask();
    const path = exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task });
    const redirect = await rawHttp(sim.url, { method: 'GET', path });
    expect(redirect.status).toBe(302);
    expect(redirect.head.split('\r\n')[0]).toBe('HTTP/1.1 302 Found');
    expect(redirect.headers.location).toBe(`${sim.memberUrl}${path}`);
    expect(await taskRecord(task)).toMatchObject({ status: 'pending' });
    const served = await rawHttp(sim.memberUrl, { method: 'GET', path });
    expect(served.status).toBe(200);
    expect(sha256(served.body)).toBe(sim.diskSha256(vdi.uuid));
    expect(await taskRecord(task)).toMatchObject({ status: 'success' });
    // A VDI on the master's local SR goes the other way.
    const local = sim.addVdi({ virtualSize: 2 * MiB, srUuid: sim.srs.masterLocal.uuid });
    const back = await rawHttp(sim.memberUrl, {
      method: 'GET',
      path: exportPath({ vdi: local.uuid, format: 'raw' }),
    });
    expect(back.headers.location).toBe(`${sim.url}${exportPath({ vdi: local.uuid, format: 'raw' })}`);
  });
});

describe('task and VDI during and after an export', () => {
  it('the task is finished before the connection closes', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB, populate: 'generated' });
    const task = await newTask();
    let statusAtEnd: unknown;
    await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
      onEnd: () => {
        statusAtEnd = sim.openTasks().find((open) => open.ref === task)?.status;
      },
    });
    expect(statusAtEnd).toBe('success');
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('progress moves during the transfer and VDI.destroy says VDI_IN_USE until it ends', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'throttle', bytesPerSecond: 16 * MiB, vdiUuid: vdi.uuid });
    const task = await newTask();
    const transfer = rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task }),
    });
    const seen: number[] = [];
    let inUse: unknown;
    for (let i = 0; i < 40; i++) {
      await sleep(25);
      const record = await taskRecord(task);
      if (record.status !== 'pending') break;
      seen.push(record.progress as number);
      if (inUse === undefined) inUse = await callError(sim.url, 'VDI.destroy', [session, vdi.ref]);
    }
    const response = await transfer;
    expect(response.body.length).toBe(8 * MiB);
    expect(inUse).toMatchObject({ code: 'VDI_IN_USE', params: [vdi.ref, 'destroy'] });
    const moving = seen.filter((progress) => progress > 0 && progress < 1);
    expect(new Set(moving).size).toBeGreaterThan(1);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(await taskRecord(task)).toMatchObject({ status: 'success', progress: 1 });
    await call(sim.url, 'VDI.destroy', [session, vdi.ref]);
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('task.cancel during an export fails it as cancelled and ends the body with a 500', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'stall', ms: 5000, afterBytes: MiB, vdiUuid: vdi.uuid });
    const task = await newTask();
    const transfer = rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task }),
    });
    await sleep(200);
    await call(sim.url, 'task.cancel', [session, task]);
    const response = await transfer;
    expect(response.body.subarray(MiB).toString('latin1')).toMatch(/^HTTP\/1\.1 500 /);
    expect(await taskRecord(task)).toMatchObject({
      status: 'cancelled',
      error_info: ['TASK_CANCELLED', task],
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });
});

describe('injected export faults', () => {
  it('http-500-in-body at 0: the body begins with HTTP/ and the task fails', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'http-500-in-body', afterBytes: 0, code: 'VDI_IO_ERROR', times: 1 });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
    });
    expect(response.status).toBe(200);
    expect(response.body.toString('latin1')).toMatch(/^HTTP\/1\.1 500 Internal Server Error\r\n[^]*\r\n\r\n/);
    expect((await taskRecord(task)).status).toBe('failure');
    expect(((await taskRecord(task)).error_info as string[])[0]).toBe('VDI_IO_ERROR');
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('http-500-in-body after N bytes: exactly N body bytes, then the error response', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'http-500-in-body', afterBytes: 70_000, times: 1 });
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw' }),
    });
    expect(response.body.subarray(0, 70_000).equals(sim.readDisk(vdi.uuid, 0, 70_000))).toBe(true);
    expect(response.body.subarray(70_000, 70_012).toString()).toBe('HTTP/1.1 500');
  });

  it('drop-connection after N bytes: the client sees a reset after exactly N bytes, the task fails', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'drop-connection', afterBytes: 1_000_000, times: 1 });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task }),
    });
    expect(response.body.length).toBeLessThanOrEqual(1_000_000);
    expect((await taskRecord(task)).status).toBe('failure');
    // times: 1 → the next export is whole.
    const again = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw' }),
    });
    expect(again.body.length).toBe(4 * MiB);
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('drop-connection in close mode: a clean but short body; only the task tells', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    sim.injectFault({
      kind: 'drop-connection',
      afterBytes: 123_456,
      mode: 'close',
      code: 'VDI_IO_ERROR',
      times: 1,
    });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task }),
    });
    expect(response.error).toBeUndefined();
    expect(response.body.length).toBe(123_456);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['VDI_IO_ERROR', 'Device I/O errors'],
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('fail-task-after-body: complete body, failed task', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    sim.injectFault({
      kind: 'fail-task-after-body',
      code: 'VDI_IO_ERROR',
      params: ['late'],
      on: 'export',
      times: 1,
    });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task }),
    });
    expect(sha256(response.body)).toBe(sim.diskSha256(vdi.uuid));
    expect(await taskRecord(task)).toMatchObject({ status: 'failure', error_info: ['VDI_IO_ERROR', 'late'] });
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('corrupt-byte flips exactly the byte at the offset', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'corrupt-byte', offset: 3 * MiB + 5, times: 1 });
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw' }),
    });
    const expected = Buffer.from(sim.readDisk(vdi.uuid, 0, 4 * MiB));
    expect(response.body[3 * MiB + 5]).toBe(expected[3 * MiB + 5]! ^ 0xff);
    response.body[3 * MiB + 5] = expected[3 * MiB + 5]!;
    expect(response.body.equals(expected)).toBe(true);
  });

  it('stall holds the body for T ms after N bytes; scoped faults leave other VDIs and imports alone', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, populate: 'generated' });
    const other = sim.addVdi({ virtualSize: 2 * MiB, populate: 'generated' });
    sim.injectFault({ kind: 'stall', ms: 400, afterBytes: 1000, vdiUuid: vdi.uuid, on: 'export' });
    let started = performance.now();
    await rawHttp(sim.url, { method: 'GET', path: exportPath({ vdi: other.uuid, format: 'raw' }) });
    expect(performance.now() - started).toBeLessThan(300);
    started = performance.now();
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw' }),
    });
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
    expect(response.body.length).toBe(2 * MiB);
  });

  it('a reader that stops reading for too long kills the export with VDI_IO_ERROR', async () => {
    sim.setReaderStallTimeout(300);
    try {
      const vdi = sim.addVdi({ virtualSize: 64 * MiB, populate: 'generated' });
      const task = await newTask();
      const response = await rawHttp(sim.url, {
        method: 'GET',
        path: exportPath({ vdi: vdi.uuid, format: 'raw', task_id: task }),
        onHead: (socket) => {
          socket.pause();
          setTimeout(() => socket.resume(), 1500);
        },
      });
      expect(response.body.length).toBeLessThan(64 * MiB);
      expect(await taskRecord(task)).toMatchObject({
        status: 'failure',
        error_info: ['VDI_IO_ERROR', 'Device I/O errors'],
      });
      await call(sim.url, 'task.destroy', [session, task]);
    } finally {
      sim.setReaderStallTimeout(10_000);
    }
  });

  it('refuse-transfer answers a plain error before the 200', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB });
    sim.injectFault({ kind: 'refuse-transfer', status: 503, times: 1 });
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'raw' }),
    });
    expect(response.status).toBe(503);
  });
});
