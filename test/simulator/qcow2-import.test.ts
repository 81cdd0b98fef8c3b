/**
 * `import_raw_vdi?format=qcow2` as qcow-stream-tool stream_decode behaves (docs/design.md § QCOW2 stream),
 * fed images qemu-img writes from known raw content.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, login, rawHttp } from './sim-client.ts';
import { CLUSTER, rawToQcow2, sha256, withTempDir } from './qcow2-tools.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;
let session: string;
let recordDir: string;

beforeAll(async () => {
  recordDir = await mkdtemp(join(tmpdir(), 'sim-qcow2-record-'));
  sim = await startXapiSimulator({ recordTransfersIn: recordDir });
  session = await login(sim);
});
afterAll(async () => {
  await sim.close();
  await rm(recordDir, { recursive: true, force: true });
});
afterEach(() => sim.clearFaults());

async function newTask(): Promise<string> {
  return (await call(sim.url, 'task.create', [session, 'import', ''])) as string;
}

async function taskRecord(task: string): Promise<Record<string, unknown>> {
  return (await call(sim.url, 'task.get_record', [session, task])) as Record<string, unknown>;
}

async function importQcow2(
  vdiUuid: string,
  body: Buffer,
  options: { length?: number; query?: string; closeAfterBody?: boolean } = {},
) {
  const task = await newTask();
  const response = await rawHttp(sim.url, {
    method: 'PUT',
    path: `/import_raw_vdi?session_id=${session}&vdi=${vdiUuid}&format=qcow2&task_id=${task}${options.query ?? ''}`,
    headers: { 'Content-Length': options.length ?? body.length },
    body,
    // The client gives up sending (half-close) once the host's 200 is in.
    ...(options.closeAfterBody === true ? { onHead: (socket) => socket.end() } : {}),
  });
  return { response, task: await taskRecord(task) };
}

/** Known raw content: clusters of distinct bytes, zero clusters, a partly written cluster. */
function knownRaw(size: number): Buffer {
  const raw = Buffer.alloc(size);
  for (let c = 0; c * CLUSTER < size; c++) {
    if (c % 5 === 2) continue; // holes
    raw.fill((c % 251) + 1, c * CLUSTER, Math.min(size, c * CLUSTER + (c % 3 === 0 ? 4096 : CLUSTER)));
  }
  return raw;
}

const TOOL = 'qcow-stream-tool: internal error, uncaught exception: ';

describe('imports of qemu-img images', () => {
  it('land bit-exact in qcow2-, VHD- and raw-backed VDIs; the transfer is recorded with its body', async () => {
    const raw = knownRaw(6 * MiB);
    await withTempDir(async (dir) => {
      const image = await rawToQcow2(dir, raw);
      for (const imageFormat of ['qcow2', 'vhd', 'raw'] as const) {
        const vdi = sim.addVdi({ virtualSize: 6 * MiB, imageFormat });
        const { response, task } = await importQcow2(vdi.uuid, image);
        expect(response.status).toBe(200);
        expect(task).toMatchObject({ status: 'success', result: `<value>${vdi.ref}</value>` });
        expect(sim.diskSha256(vdi.uuid)).toBe(sha256(raw));
        const record = sim.transfers().at(-1)!;
        expect(record).toMatchObject({
          direction: 'import',
          vdiUuid: vdi.uuid,
          format: 'qcow2',
          bytes: image.length,
          outcome: 'success',
        });
        expect((await readFile(record.bodyPath!)).equals(image)).toBe(true);
      }
    });
  });

  it('the simulator’s own export imports back, full then delta, onto a VDI that ends equal to the snapshot', async () => {
    const source = sim.addVdi({ virtualSize: 8 * MiB, populate: 'scattered', imageFormat: 'qcow2' });
    const base = sim.snapshotVdi(source.uuid);
    sim.writeDisk(source.uuid, MiB, Buffer.alloc(3 * CLUSTER, 7));
    sim.writeDisk(source.uuid, 6 * MiB, Buffer.alloc(CLUSTER)); // zeros over data
    const top = sim.snapshotVdi(source.uuid);
    const get = async (query: string) =>
      (
        await rawHttp(sim.url, {
          method: 'GET',
          path: `/export_raw_vdi?session_id=${session}&format=qcow2&${query}`,
        })
      ).body;
    const target = sim.addVdi({ virtualSize: 8 * MiB, imageFormat: 'vhd' });
    expect((await importQcow2(target.uuid, await get(`vdi=${base.uuid}`))).task.status).toBe('success');
    expect(sim.diskSha256(target.uuid)).toBe(sim.diskSha256(base.uuid));
    expect((await importQcow2(target.uuid, await get(`vdi=${top.uuid}&base=${base.uuid}`))).task.status).toBe(
      'success',
    );
    expect(sim.diskSha256(target.uuid)).toBe(sim.diskSha256(top.uuid));
  });

  it('only allocated clusters are written, each whole; nothing else is zeroed', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    const before = Buffer.from(sim.readDisk(vdi.uuid, 0, 4 * MiB));
    const raw = Buffer.alloc(4 * MiB);
    raw.fill(0xab, 3 * CLUSTER, 3 * CLUSTER + 10); // one cluster with 10 bytes of data: written whole
    await withTempDir(async (dir) => {
      expect((await importQcow2(vdi.uuid, await rawToQcow2(dir, raw))).task.status).toBe('success');
    });
    const after = Buffer.from(sim.readDisk(vdi.uuid, 0, 4 * MiB));
    const expected = Buffer.from(before);
    raw.copy(expected, 3 * CLUSTER, 3 * CLUSTER, 4 * CLUSTER);
    expect(after.equals(expected)).toBe(true);
  });

  it('accepts and ignores dirty and corrupt bits, a backing file name and internal snapshots', async () => {
    const raw = knownRaw(2 * MiB);
    await withTempDir(async (dir) => {
      const image = await rawToQcow2(dir, raw);
      const flagged = Buffer.from(image);
      flagged.writeBigUInt64BE(3n, 72); // dirty | corrupt
      const vdi = sim.addVdi({ virtualSize: 2 * MiB });
      expect((await importQcow2(vdi.uuid, flagged)).task.status).toBe('success');
      expect(sim.diskSha256(vdi.uuid)).toBe(sha256(raw));

      const backed = await rawToQcow2(dir, raw, [], ['-B', join(dir, 'source.raw'), '-F', 'raw']);
      expect(backed.readUInt32BE(16)).toBeGreaterThan(0); // a backing file name
      const onBacked = sim.addVdi({ virtualSize: 2 * MiB });
      expect((await importQcow2(onBacked.uuid, backed)).task.status).toBe('success');
      // What it carries (qemu-img may write clusters equal to the backing file) lands as in the raw.
      for (const cluster of sim.allocatedClusters(onBacked.uuid)) {
        const at = cluster * CLUSTER;
        expect(
          Buffer.from(sim.readDisk(onBacked.uuid, at, CLUSTER)).equals(raw.subarray(at, at + CLUSTER)),
        ).toBe(true);
      }

      const withSnapshot = Buffer.from(image);
      withSnapshot.writeUInt32BE(1, 60); // one internal snapshot, its table never read
      withSnapshot.writeBigUInt64BE(BigInt(image.length), 64);
      const onSnapshot = sim.addVdi({ virtualSize: 2 * MiB });
      expect((await importQcow2(onSnapshot.uuid, withSnapshot)).task.status).toBe('success');
      expect(sim.diskSha256(onSnapshot.uuid)).toBe(sha256(raw));
    });
  });
});

describe('what the importer refuses', () => {
  it('before the 200: Transfer-Encoding (404), the chunked query parameter (404), no vdi (400)', async () => {
    const vdi = sim.addVdi({ virtualSize: 2 * MiB });
    let task = await newTask();
    const encoded = await rawHttp(sim.url, {
      method: 'PUT',
      path: `/import_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=qcow2&task_id=${task}`,
      headers: { 'Transfer-Encoding': 'chunked' },
      body: Buffer.from('0\r\n\r\n'),
    });
    expect(encoded.status).toBe(404);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['INTERNAL_ERROR', 'Cannot handle encoding: chunked'],
    });
    task = await newTask();
    const chunked = await rawHttp(sim.url, {
      method: 'PUT',
      path: `/import_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=qcow2&chunked=true&task_id=${task}`,
      headers: { 'Content-Length': 0 },
    });
    expect(chunked.status).toBe(404);
    expect((await taskRecord(task)).status).toBe('failure');
    const noVdi = await rawHttp(sim.url, {
      method: 'PUT',
      path: `/import_raw_vdi?session_id=${session}&format=qcow2`,
      headers: { 'Content-Length': 0 },
    });
    expect(noVdi.status).toBe(400);
  });

  it('compressed clusters, an external data file, zstd, extended L2, autoclear bits, LUKS: VDI_IO_ERROR, then a 400 and a 500 page after the 200', async () => {
    const raw = knownRaw(2 * MiB);
    await withTempDir(async (dir) => {
      const plain = await rawToQcow2(dir, raw);
      const autoclear = Buffer.from(plain);
      autoclear.writeBigUInt64BE(1n, 88);
      const cases: [string, Buffer, RegExp][] = [
        ['compressed', await rawToQcow2(dir, raw, [], ['-c']), /Compressed_unsupported/],
        [
          'external data file',
          await rawToQcow2(dir, raw, [`data_file=${join(dir, 'data.raw')}`]),
          /External data/,
        ],
        ['zstd', await rawToQcow2(dir, raw, ['compression_type=zstd']), /zstd/],
        ['extended L2', await rawToQcow2(dir, raw, ['extended_l2=on']), /Extended L2/],
        ['autoclear', autoclear, /autoclear/],
        [
          'LUKS',
          await rawToQcow2(
            dir,
            raw,
            ['encrypt.format=luks', 'encrypt.key-secret=sec0'],
            ['--object', 'secret,id=sec0,data=secret'],
          ),
          /LUKS/,
        ],
      ];
      for (const [what, image, message] of cases) {
        const vdi = sim.addVdi({ virtualSize: 2 * MiB });
        const { response, task } = await importQcow2(vdi.uuid, image);
        expect(response.status, what).toBe(200);
        expect(response.body.toString('latin1'), what).toMatch(
          /^HTTP\/1\.1 400 [^]*HTTP\/1\.1 500 Internal Error\r\n/,
        );
        expect(task.status, what).toBe('failure');
        const [code, detail] = task.error_info as string[];
        expect(code, what).toBe('VDI_IO_ERROR');
        expect(detail!.startsWith(TOOL), what).toBe(true);
        expect(detail, what).toMatch(message);
        expect(sim.allocatedBlocks(vdi.uuid), what).toEqual([]);
      }
    });
  });

  it('data that does not follow the last L2 table is non-sequential', async () => {
    const raw = knownRaw(2 * MiB);
    await withTempDir(async (dir) => {
      const image = await rawToQcow2(dir, raw);
      // Move the data one cluster further: a zero cluster between the L2 table and the data, pointers shifted.
      const l2At = Number(image.readBigUInt64BE(Number(image.readBigUInt64BE(40))) & 0x00ff_ffff_ffff_fe00n);
      const gapped = Buffer.concat([
        image.subarray(0, l2At + CLUSTER),
        Buffer.alloc(CLUSTER),
        image.subarray(l2At + CLUSTER),
      ]);
      for (let i = 0; i < CLUSTER / 8; i++) {
        const entry = gapped.readBigUInt64BE(l2At + i * 8);
        if (entry !== 0n) gapped.writeBigUInt64BE(entry + BigInt(CLUSTER), l2At + i * 8);
      }
      const vdi = sim.addVdi({ virtualSize: 2 * MiB });
      const { task } = await importQcow2(vdi.uuid, gapped);
      expect(task.status).toBe('failure');
      expect((task.error_info as string[])[1]).toMatch(/can't read non-sequential clusters/);
    });
  });
});

describe('no size check, and truncation', () => {
  it('an image bigger than the VDI succeeds while its data fits; data past the end fails ENOSPC after all before it was written', async () => {
    const raw = Buffer.alloc(8 * MiB);
    raw.fill(1, 0, CLUSTER);
    await withTempDir(async (dir) => {
      const fits = sim.addVdi({ virtualSize: 4 * MiB });
      expect((await importQcow2(fits.uuid, await rawToQcow2(dir, raw))).task.status).toBe('success');
      expect(Buffer.from(sim.readDisk(fits.uuid, 0, CLUSTER)).equals(raw.subarray(0, CLUSTER))).toBe(true);

      raw.fill(2, 6 * MiB, 6 * MiB + CLUSTER);
      const past = sim.addVdi({ virtualSize: 4 * MiB });
      const { task } = await importQcow2(past.uuid, await rawToQcow2(dir, raw));
      expect(task.status).toBe('failure');
      expect((task.error_info as string[])[1]).toBe(`${TOOL}Unix.Unix_error(Unix.ENOSPC, "pwrite", "")`);
      expect(Buffer.from(sim.readDisk(past.uuid, 0, CLUSTER)).equals(raw.subarray(0, CLUSTER))).toBe(true);
    });
  });

  it('a body cut before the L2 tables succeeds with nothing written; cut among the data clusters: End_of_file', async () => {
    const raw = knownRaw(2 * MiB);
    await withTempDir(async (dir) => {
      const image = await rawToQcow2(dir, raw); // header, refcount table, refcount block, L1, L2 at cluster 4
      const early = sim.addVdi({ virtualSize: 2 * MiB });
      const cut = await importQcow2(early.uuid, image.subarray(0, 3 * CLUSTER + 100));
      expect(cut.task.status).toBe('success');
      expect(sim.allocatedBlocks(early.uuid)).toEqual([]);
      // The connection closed early (Content-Length says more): the same success.
      const closed = sim.addVdi({ virtualSize: 2 * MiB });
      expect(
        (
          await importQcow2(closed.uuid, image.subarray(0, 2 * CLUSTER), {
            length: image.length,
            closeAfterBody: true,
          })
        ).task.status,
      ).toBe('success');
      expect(sim.allocatedBlocks(closed.uuid)).toEqual([]);

      const late = sim.addVdi({ virtualSize: 2 * MiB });
      const inData = await importQcow2(late.uuid, image.subarray(0, 7 * CLUSTER));
      expect(inData.task).toMatchObject({
        status: 'failure',
        error_info: ['VDI_IO_ERROR', `${TOOL}End_of_file`],
      });
    });
  });
});
