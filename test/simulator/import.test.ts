import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VHD_BLOCK_SIZE, writeVhd } from '../../lambdas/vhd/index.ts';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { basicAuth, call, callError, collect, login, rawHttp } from './sim-client.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;
let session: string;

beforeAll(async () => {
  sim = await startXapiSimulator();
  session = await login(sim);
});
afterAll(() => sim.close());
afterEach(() => sim.clearFaults());

async function makeVhd(
  virtualSize: number,
  blocks: Map<number, Uint8Array>,
  diskType: 'dynamic' | 'differencing' = 'dynamic',
): Promise<Buffer> {
  const indexes = [...blocks.keys()].sort((a, b) => a - b);
  const { stream } = writeVhd(
    { virtualSize, blockIndexes: indexes, readBlock: (index) => blocks.get(index)! },
    { diskType },
  );
  return collect(stream);
}

/** Clears the bitmap bits of the given sectors of a block in a host-layout VHD (bitmaps carry no checksum). */
function clearBitmapBits(vhd: Buffer, blockIndex: number, sectors: number[]): void {
  const bitmapOffset = vhd.readUInt32BE(2048 + blockIndex * 4) * 512;
  for (const sector of sectors) vhd[bitmapOffset + (sector >> 3)]! &= ~(0x80 >> (sector & 7));
}

function filled(byte: number): Uint8Array {
  return new Uint8Array(VHD_BLOCK_SIZE).fill(byte);
}

function importPath(query: Record<string, string>): string {
  return `/import_raw_vdi?${new URLSearchParams({ session_id: session, ...query })}`;
}

async function newTask(): Promise<string> {
  return (await call(sim.url, 'task.create', [session, 'import', ''])) as string;
}

async function taskRecord(task: string): Promise<Record<string, unknown>> {
  return (await call(sim.url, 'task.get_record', [session, task])) as Record<string, unknown>;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('import', () => {
  it('takes a vhd with an exact Content-Length; the task result is the VDI ref', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB });
    const vhd = await makeVhd(
      8 * MiB,
      new Map([
        [1, filled(0x11)],
        [3, filled(0x33)],
      ]),
    );
    const task = await newTask();
    const response = await request(
      `${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task })}`,
      {
        method: 'PUT',
        body: vhd,
      },
    );
    expect(response.statusCode).toBe(200);
    expect(response.headers['task-id']).toBe(task);
    expect(response.headers.connection).toBe('close');
    await response.body.dump();
    expect(await taskRecord(task)).toMatchObject({
      status: 'success',
      progress: 1,
      result: `<value>${vdi.ref}</value>`,
    });
    expect(sim.allocatedBlocks(vdi.uuid)).toEqual([1, 3]);
    expect(Buffer.from(sim.readDisk(vdi.uuid, 2 * MiB, 2 * MiB)).equals(Buffer.from(filled(0x11)))).toBe(
      true,
    );
    expect(Buffer.from(sim.readDisk(vdi.uuid, 6 * MiB, 2 * MiB)).equals(Buffer.from(filled(0x33)))).toBe(
      true,
    );
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('sends the 200 before reading the body, and finishes the task before closing', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const vhd = await makeVhd(4 * MiB, new Map([[0, filled(7)]]));
    const task = await newTask();
    let statusAtEnd: unknown;
    const response = await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.ref, format: 'vhd', task_id: task }),
      headers: { 'Content-Length': vhd.length },
      onHead: (socket) => socket.write(vhd), // the body goes only once the head is here
      onEnd: () => {
        statusAtEnd = sim.openTasks().find((open) => open.ref === task)?.status;
      },
    });
    expect(response.head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(response.headers['task-id']).toBe(task);
    expect(statusAtEnd).toBe('success');
    expect(sim.allocatedBlocks(vdi.uuid)).toEqual([0]);
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('writes only the sectors whose bitmap bit is set; nothing else is zeroed', async () => {
    const vdi = sim.addVdi({ virtualSize: 6 * MiB, populate: 'generated' });
    const before = Buffer.from(sim.readDisk(vdi.uuid, 0, 6 * MiB));
    const vhd = await makeVhd(6 * MiB, new Map([[1, filled(0xab)]]));
    const untouched = [0, 1, 2, 9, 100, 4095];
    clearBitmapBits(vhd, 1, untouched);
    const response = await request(`${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd' })}`, {
      method: 'PUT',
      body: vhd,
    });
    await response.body.dump();
    await sleep(10);
    const after = Buffer.from(sim.readDisk(vdi.uuid, 0, 6 * MiB));
    for (let sector = 0; sector < (6 * MiB) / 512; sector++) {
      const inBlock1 = sector >= 4096 && sector < 8192;
      const expectOld = !inBlock1 || untouched.includes(sector - 4096);
      const got = after.subarray(sector * 512, sector * 512 + 512);
      const want = expectOld ? before.subarray(sector * 512, sector * 512 + 512) : Buffer.alloc(512, 0xab);
      if (!got.equals(want))
        throw new Error(`sector ${sector} is wrong (expected ${expectOld ? 'old data' : '0xab'})`);
    }
  });

  it('reads blocks in file order, not index order, and ignores disk type and parent fields', async () => {
    const vdi = sim.addVdi({ virtualSize: 6 * MiB });
    const vhd = await makeVhd(
      6 * MiB,
      new Map([
        [0, filled(0x10)],
        [2, filled(0x12)],
      ]),
    );
    // Swap the BAT entries: block 2 is now the first in the file, and owns the 0x10 data.
    const first = vhd.readUInt32BE(2048);
    vhd.writeUInt32BE(vhd.readUInt32BE(2056), 2048);
    vhd.writeUInt32BE(first, 2056);
    // Disk type 2 (fixed) in both footers and a parent that exists nowhere: the host looks at neither.
    const reseal = (at: number, length: number, field: number): void => {
      vhd.writeUInt32BE(0, at + field);
      const sum = vhd.subarray(at, at + length).reduce((total, byte) => total + byte, 0);
      vhd.writeUInt32BE(~sum >>> 0, at + field);
    };
    for (const at of [0, vhd.length - 512]) {
      vhd.writeUInt32BE(2, at + 60);
      reseal(at, 512, 64);
    }
    vhd.fill(0x5c, 512 + 40, 512 + 56);
    reseal(512, 1024, 36);
    const task = await newTask();
    const response = await request(
      `${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task })}`,
      { method: 'PUT', body: vhd },
    );
    await response.body.dump();
    expect((await taskRecord(task)).status).toBe('success');
    expect(sim.allocatedBlocks(vdi.uuid)).toEqual([0, 2]);
    expect(Buffer.from(sim.readDisk(vdi.uuid, 0, 2 * MiB)).equals(Buffer.from(filled(0x12)))).toBe(true);
    expect(Buffer.from(sim.readDisk(vdi.uuid, 4 * MiB, 2 * MiB)).equals(Buffer.from(filled(0x10)))).toBe(
      true,
    );
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('replaying a full then a delta into a fresh VDI gives the last snapshot', async () => {
    const source = sim.addVdi({ virtualSize: 12 * MiB, populate: 'scattered' });
    const first = (await call(sim.url, 'VDI.snapshot', [session, source.ref, {}])) as string;
    sim.writeDisk(source.uuid, 5 * MiB, Buffer.alloc(3 * MiB, 0x5a));
    sim.writeDisk(source.uuid, 0, Buffer.alloc(4096, 0));
    const second = (await call(sim.url, 'VDI.snapshot', [session, source.ref, {}])) as string;
    const full = await rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?session_id=${session}&vdi=${first}&format=vhd`,
    });
    const delta = await rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?session_id=${session}&vdi=${second}&base=${first}&format=vhd`,
    });
    const srRef = await call(sim.url, 'SR.get_by_uuid', [session, source.srUuid]);
    const restored = (await call(sim.url, 'VDI.create', [
      session,
      {
        SR: srRef,
        virtual_size: 12 * MiB,
        type: 'user',
        sharable: false,
        read_only: false,
        other_config: {},
        name_label: 'restore',
      },
    ])) as string;
    for (const body of [full.body, delta.body]) {
      const response = await request(`${sim.url}${importPath({ vdi: restored, format: 'vhd' })}`, {
        method: 'PUT',
        body,
      });
      await response.body.dump();
    }
    const restoredUuid = (await call(sim.url, 'VDI.get_uuid', [session, restored])) as string;
    const secondUuid = (await call(sim.url, 'VDI.get_uuid', [session, second])) as string;
    expect(sim.diskSha256(restoredUuid)).toBe(sim.diskSha256(secondUuid));
  });

  it('raw: writes exactly Content-Length bytes at offset 0 and leaves the rest', async () => {
    const vdi = sim.addVdi({ virtualSize: 6 * MiB, populate: 'generated' });
    const tail = Buffer.from(sim.readDisk(vdi.uuid, 3 * MiB + 100, 3 * MiB - 100));
    const body = Buffer.alloc(3 * MiB + 100, 0x42);
    const task = await newTask();
    const response = await request(
      `${sim.url}${importPath({ vdi: vdi.uuid, format: 'raw', task_id: task })}`,
      { method: 'PUT', body },
    );
    await response.body.dump();
    expect((await taskRecord(task)).status).toBe('success');
    expect(Buffer.from(sim.readDisk(vdi.uuid, 0, body.length)).equals(body)).toBe(true);
    expect(Buffer.from(sim.readDisk(vdi.uuid, body.length, tail.length)).equals(tail)).toBe(true);
    await call(sim.url, 'task.destroy', [session, task]);
  });
});

describe('import refusals and failures', () => {
  it('any Transfer-Encoding: 404 and the task failed, nothing written', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const vhd = await makeVhd(4 * MiB, new Map([[0, filled(1)]]));
    const task = await newTask();
    // undici streams a body of unknown length with chunked encoding.
    const response = await request(
      `${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task })}`,
      {
        method: 'PUT',
        body: Readable.from([vhd]),
      },
    );
    expect(response.statusCode).toBe(404);
    await response.body.dump();
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['INTERNAL_ERROR', 'Cannot handle encoding: chunked'],
    });
    expect(sim.allocatedBlocks(vdi.uuid)).toEqual([]);
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('no Content-Length: refused and the task failed', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
    });
    expect(response.status).toBe(400);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['INTERNAL_ERROR', 'Content-Length required'],
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('a VHD bigger than the VDI fails the task and writes nothing', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const vhd = await makeVhd(8 * MiB, new Map([[0, filled(9)]]));
    const task = await newTask();
    const response = await request(
      `${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task })}`,
      { method: 'PUT', body: vhd },
    ).catch((error: unknown) => error);
    if (!(response instanceof Error)) await (response as { body: { dump(): Promise<void> } }).body.dump();
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['VDI_TOO_LARGE', vdi.ref, String(4 * MiB)],
    });
    expect(sim.allocatedBlocks(vdi.uuid)).toEqual([]);
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('a malformed body fails the task with the parser error', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const vhd = await makeVhd(4 * MiB, new Map([[1, filled(3)]]));
    vhd[0] = 0x78; // footer cookie
    const task = await newTask();
    const response = await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
      headers: { 'Content-Length': vhd.length },
      body: vhd,
    });
    expect(response.status).toBe(200);
    expect(response.body.toString('latin1')).toMatch(/^HTTP\/1\.1 500 /);
    const record = await taskRecord(task);
    expect(record.status).toBe('failure');
    expect(record.error_info).toEqual([
      'VDI_IO_ERROR',
      'Device I/O errors',
      expect.stringMatching(/^VHD_FOOTER_COOKIE: /),
    ]);

    const truncated = (await makeVhd(4 * MiB, new Map([[1, filled(3)]]))).subarray(0, 5000);
    const task2 = await newTask();
    await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task2 }),
      headers: { 'Content-Length': truncated.length },
      body: truncated,
    });
    expect(((await taskRecord(task2)).error_info as string[])[2]).toMatch(/^VHD_TRUNCATED: /);
    await call(sim.url, 'task.destroy', [session, task]);
    await call(sim.url, 'task.destroy', [session, task2]);
  });

  it('a body shorter than its Content-Length (client gone) fails the task', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const vhd = await makeVhd(4 * MiB, new Map([[1, filled(3)]]));
    const task = await newTask();
    await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
      headers: { 'Content-Length': vhd.length },
      onHead: (socket) => socket.end(vhd.subarray(0, 100_000)),
    });
    await sleep(50);
    expect((await taskRecord(task)).status).toBe('failure');
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('401 without credentials, 403 for the read-only role, 302 to the member for its VDIs', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, onMember: true });
    const path = `/import_raw_vdi?vdi=${vdi.uuid}&format=raw`;
    expect((await rawHttp(sim.url, { method: 'PUT', path, headers: { 'Content-Length': 0 } })).status).toBe(
      401,
    );
    const readOnly = await rawHttp(sim.url, {
      method: 'PUT',
      path,
      headers: { 'Content-Length': 0, Authorization: basicAuth(sim.readOnlyUsername, sim.readOnlyPassword) },
    });
    expect(readOnly.status).toBe(403);
    const redirect = await rawHttp(sim.url, {
      method: 'PUT',
      path: `${path}&session_id=${session}`,
      headers: { 'Content-Length': 0 },
    });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe(`${sim.memberUrl}${path}&session_id=${session}`);
    const body = Buffer.alloc(MiB, 0x77);
    const served = await request(redirect.headers.location!, { method: 'PUT', body });
    expect(served.statusCode).toBe(200);
    await served.body.dump();
    expect(Buffer.from(sim.readDisk(vdi.uuid, 0, MiB)).equals(body)).toBe(true);
  });

  it('a thick-provisioned (not prezeroed) SR refuses vhd imports with VDI_IO_ERROR', async () => {
    const sr = sim.addSr({ type: 'lvm', prezeroed: false });
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, srUuid: sr.uuid });
    const vhd = await makeVhd(2 * MiB, new Map([[0, filled(1)]]));
    const task = await newTask();
    await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
      headers: { 'Content-Length': vhd.length },
      body: vhd,
    });
    expect(((await taskRecord(task)).error_info as string[])[0]).toBe('VDI_IO_ERROR');
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('VDI_IN_USE while an import runs; import faults (drop, fail after body) fail the task', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const vhd = await makeVhd(
      4 * MiB,
      new Map([
        [0, filled(1)],
        [1, filled(2)],
      ]),
    );
    sim.injectFault({ kind: 'stall', ms: 300, afterBytes: 10_000, on: 'import', times: 1 });
    const slow = request(`${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd' })}`, {
      method: 'PUT',
      body: vhd,
    });
    await sleep(100);
    expect((await callError(sim.url, 'VDI.destroy', [session, vdi.ref])).code).toBe('VDI_IN_USE');
    await (await slow).body.dump();

    sim.injectFault({ kind: 'drop-connection', afterBytes: 50_000, on: 'import', times: 1 });
    const task = await newTask();
    await rawHttp(sim.url, {
      method: 'PUT',
      path: importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task }),
      headers: { 'Content-Length': vhd.length },
      body: vhd,
    });
    expect((await taskRecord(task)).status).toBe('failure');

    sim.injectFault({ kind: 'fail-task-after-body', code: 'VDI_IO_ERROR', on: 'import', times: 1 });
    const task2 = await newTask();
    const response = await request(
      `${sim.url}${importPath({ vdi: vdi.uuid, format: 'vhd', task_id: task2 })}`,
      { method: 'PUT', body: vhd },
    );
    await response.body.dump();
    expect(await taskRecord(task2)).toMatchObject({ status: 'failure', error_info: ['VDI_IO_ERROR'] });
    await call(sim.url, 'task.destroy', [session, task]);
    await call(sim.url, 'task.destroy', [session, task2]);
    expect(sha256(sim.readDisk(vdi.uuid, 0, 2 * MiB))).toBe(sha256(filled(1)));
  });
});
