/**
 * `export_raw_vdi?format=qcow2` as xapi ≥ 25.27 serves it (docs/design.md § QCOW2 stream): every export
 * is read by qemu-img (check, convert to raw) and compared with the simulator's own disk.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_XAPI_VERSION, startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, login, rawHttp } from './sim-client.ts';
import {
  CLUSTER,
  expectedClusters,
  qcow2ToRaw,
  qemuCheck,
  qemuDataExtents,
  sha256,
  tableEntry,
  withTempDir,
} from './qcow2-tools.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
let sim: XapiSimulator;
let session: string;

beforeAll(async () => {
  sim = await startXapiSimulator();
  session = await login(sim);
});
afterAll(() => sim.close());
afterEach(() => {
  sim.clearFaults();
  sim.setXapiVersion(DEFAULT_XAPI_VERSION);
});

function exportPath(query: Record<string, string>): string {
  return `/export_raw_vdi?${new URLSearchParams({ session_id: session, ...query })}`;
}

async function exportBody(query: Record<string, string>) {
  return rawHttp(sim.url, { method: 'GET', path: exportPath(query) });
}

async function newTask(): Promise<string> {
  return (await call(sim.url, 'task.create', [session, 'export', ''])) as string;
}

async function taskRecord(task: string): Promise<Record<string, unknown>> {
  return (await call(sim.url, 'task.get_record', [session, task])) as Record<string, unknown>;
}

async function snapshot(uuid: string): Promise<string> {
  const ref = (await call(sim.url, 'VDI.snapshot', [session, sim.vdiRecord(uuid)!.ref, {}])) as string;
  return (await call(sim.url, 'VDI.get_uuid', [session, ref])) as string;
}

/** The guest clusters an image maps, in L1/L2 order, with each one's file offset. */
function mappedClusters(image: Buffer): { guest: number; at: number }[] {
  const l1Size = image.readUInt32BE(36);
  const l1At = Number(image.readBigUInt64BE(40));
  const out: { guest: number; at: number }[] = [];
  for (let e = 0; e < l1Size; e++) {
    const l2 = tableEntry(image, l1At + e * 8);
    if (l2.raw === 0n) continue;
    for (let i = 0; i < CLUSTER / 8; i++) {
      const data = tableEntry(image, l2.offset + i * 8);
      if (data.raw !== 0n) out.push({ guest: e * 8192 + i, at: data.offset });
    }
  }
  return out;
}

describe('VDIs with an image format', () => {
  it('sm_config shows it; VDI.create takes it from sm_config, the SR preference, or qcow2 over 2040 GiB; snapshots inherit it', async () => {
    const vhd = sim.addVdi({ virtualSize: 4 * MiB });
    const qcow2 = sim.addVdi({ virtualSize: 4 * MiB, imageFormat: 'qcow2' });
    const big = sim.addVdi({ virtualSize: 2041 * GiB });
    expect(sim.vdiRecord(vhd.uuid)!.sm_config).toMatchObject({ 'image-format': 'vhd' });
    expect(sim.vdiRecord(qcow2.uuid)!.sm_config).toMatchObject({ 'image-format': 'qcow2' });
    expect(sim.vdiRecord(big.uuid)!.sm_config).toMatchObject({ 'image-format': 'qcow2' });
    expect(sim.vdiRecord(await snapshot(qcow2.uuid))!.sm_config).toMatchObject({ 'image-format': 'qcow2' });
    expect(() => sim.addVdi({ virtualSize: 2041 * GiB, imageFormat: 'vhd' })).toThrow(RangeError);

    const preferring = sim.addSr({ shared: true, preferredImageFormats: ['qcow2'] });
    expect(
      sim.vdiRecord(sim.addVdi({ virtualSize: 2 * MiB, srUuid: preferring.uuid }).uuid)!.sm_config,
    ).toMatchObject({ 'image-format': 'qcow2' });
    const create = async (sr: string, size: number, smConfig?: Record<string, string>) => {
      const ref = (await call(sim.url, 'VDI.create', [
        session,
        {
          SR: sr,
          virtual_size: size,
          type: 'user',
          sharable: false,
          read_only: false,
          other_config: {},
          ...(smConfig ? { sm_config: smConfig } : {}),
        },
      ])) as string;
      return ((await call(sim.url, 'VDI.get_sm_config', [session, ref])) as Record<string, string>)[
        'image-format'
      ];
    };
    expect(await create(sim.srs.shared.ref, 4 * MiB)).toBe('vhd');
    expect(await create(sim.srs.shared.ref, 4 * MiB, { 'image-format': 'qcow2' })).toBe('qcow2');
    expect(await create(preferring.ref, 4 * MiB)).toBe('qcow2');
    expect(await create(sim.srs.shared.ref, 3 * TiB)).toBe('qcow2');
    await expect(create(sim.srs.shared.ref, 3 * TiB, { 'image-format': 'vhd' })).rejects.toMatchObject({
      code: 'SR_BACKEND_FAILURE_79',
    });
    await expect(create(sim.srs.shared.ref, 16_382 * GiB)).rejects.toMatchObject({
      code: 'SR_BACKEND_FAILURE_79',
    });
  });

  it('host.software_version carries the xapi version; before 25.27.0 format=qcow2 is an unknown format (HTTP/1.0 404)', async () => {
    const hosts = (await call(sim.url, 'host.get_all', [session])) as string[];
    const version = async () =>
      ((await call(sim.url, 'host.get_software_version', [session, hosts[0]])) as Record<string, string>)
        .xapi;
    expect(await version()).toBe('26.1.3');
    sim.setXapiVersion('25.21.0');
    expect(await version()).toBe('25.21.0');
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, imageFormat: 'qcow2' });
    for (const [method, path] of [
      ['GET', 'export_raw_vdi'],
      ['PUT', 'import_raw_vdi'],
    ] as const) {
      const task = await newTask();
      const response = await rawHttp(sim.url, {
        method,
        path: `/${path}?session_id=${session}&vdi=${vdi.uuid}&format=qcow2&task_id=${task}`,
        headers: method === 'PUT' ? { 'Content-Length': 0 } : {},
      });
      expect(response.head.split('\r\n')[0]).toBe('HTTP/1.0 404 Not Found');
      expect(await taskRecord(task)).toMatchObject({
        status: 'failure',
        error_info: ['INTERNAL_ERROR', 'Unknown format qcow2'],
      });
    }
  });
});

describe('the exporter’s stream', () => {
  it('200 with task-id and content-type application/x-qemu-disk, no length, no chunking; progress stays 0', async () => {
    const vdi = sim.addVdi({ virtualSize: 16 * MiB, populate: 'generated', imageFormat: 'qcow2' });
    sim.injectFault({ kind: 'throttle', bytesPerSecond: 32 * MiB, vdiUuid: vdi.uuid, times: 1 });
    const task = await newTask();
    const transfer = rawHttp(sim.url, {
      method: 'GET',
      path: exportPath({ vdi: vdi.uuid, format: 'qcow2', task_id: task }),
    });
    const seen: unknown[] = [];
    for (let i = 0; i < 10; i++) {
      await sleep(30);
      const record = await taskRecord(task);
      if (record.status !== 'pending') break;
      seen.push(record.progress);
    }
    const response = await transfer;
    expect(response.head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(response.headers).toMatchObject({
      'task-id': task,
      connection: 'close',
      'content-type': 'application/x-qemu-disk',
    });
    expect(response.headers['content-length']).toBeUndefined();
    expect(response.headers['transfer-encoding']).toBeUndefined();
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen)).toEqual(new Set([0]));
    expect((await taskRecord(task)).status).toBe('success');
    await withTempDir(async (dir) => {
      expect(sha256(await qcow2ToRaw(dir, response.body))).toBe(sim.diskSha256(vdi.uuid));
    });
    await call(sim.url, 'task.destroy', [session, task]);
  });

  it('the layout, field by field: header and feature table, refcounts from the fixed-point loop, L1, L2 in L1 order, data contiguous in guest order', async () => {
    const size = 1100 * MiB + 3 * 512; // three L2 tables' worth of guest space, a partial last cluster
    const vdi = sim.addVdi({ virtualSize: size, imageFormat: 'vhd' });
    const writes = [5 * MiB + 7, 600 * MiB, 601 * MiB - 10, size - 100];
    for (const [i, at] of writes.entries()) sim.writeDisk(vdi.uuid, at, Buffer.alloc(20, i + 1));
    const { body: image } = await exportBody({ vdi: vdi.uuid, format: 'qcow2' });
    expect(image.toString('latin1', 0, 4)).toBe('QFI\xfb');
    const u32 = (at: number) => image.readUInt32BE(at);
    const u64 = (at: number) => Number(image.readBigUInt64BE(at));
    expect([u32(4), u64(8), u32(16), u32(20), u64(24), u32(32)]).toEqual([3, 0, 0, 16, size, 0]);
    const guestClusters = Math.ceil(size / CLUSTER);
    expect(u32(36)).toBe(Math.ceil(guestClusters / 8192));
    expect([u64(48), u32(60), u64(64), u64(72), u64(80), u64(88), u32(96), u32(100)]).toEqual([
      CLUSTER,
      0,
      0,
      0,
      0,
      0,
      4,
      112,
    ]);
    expect(image.subarray(104, 112).every((byte) => byte === 0)).toBe(true);
    expect([u32(112), u32(116)]).toEqual([0x6803f857, 384]);
    const names = Array.from({ length: 8 }, (_, i) => {
      const at = 120 + i * 48;
      return [image[at], image[at + 1], image.toString('ascii', at + 2, at + 48).replace(/\0+$/, '')];
    });
    expect(names).toEqual([
      [0, 0, 'dirty bit'],
      [0, 1, 'corrupt bit'],
      [0, 2, 'external data file'],
      [0, 3, 'compression type'],
      [0, 4, 'extended L2 entries'],
      [1, 0, 'lazy refcounts'],
      [2, 0, 'bitmaps'],
      [2, 1, 'raw external data'],
    ]);
    expect(image.subarray(504, CLUSTER).every((byte) => byte === 0)).toBe(true);

    // Data clusters: the 4 writes touch 5 clusters (one write crosses a cluster boundary); L2 tables: 3.
    const data = [
      Math.floor((5 * MiB + 7) / CLUSTER),
      600 * 16,
      601 * 16 - 1,
      601 * 16,
      Math.floor((size - 100) / CLUSTER),
    ];
    const total = expectedClusters(size, 3, data.length);
    expect(image.length).toBe(total * CLUSTER);
    const rt = u32(56);
    expect(rt).toBe(1);
    const rbAt = 1 + rt;
    expect(tableEntry(image, CLUSTER).offset).toBe(rbAt * CLUSTER);
    expect(image.readBigUInt64BE(CLUSTER + 8)).toBe(0n);
    const rb = 1;
    const counts = Array.from({ length: 32768 }, (_, i) => image.readUInt16BE(rbAt * CLUSTER + i * 2));
    expect(counts.every((count, i) => count === (i < total ? 1 : 0))).toBe(true);
    const l1At = rbAt + rb;
    expect(u64(40)).toBe(l1At * CLUSTER);
    const l1 = [0, 1, 2].map((e) => tableEntry(image, l1At * CLUSTER + e * 8));
    expect(l1.map((entry) => [entry.offset / CLUSTER, entry.copied])).toEqual([
      [l1At + 1, true],
      [l1At + 2, true],
      [l1At + 3, true],
    ]);
    const mapped = mappedClusters(image);
    expect(mapped.map((entry) => entry.guest)).toEqual(data);
    expect(mapped.map((entry) => entry.at / CLUSTER)).toEqual(data.map((_, k) => l1At + 4 + k));
    for (const entry of mapped) {
      const length = Math.min(CLUSTER, size - entry.guest * CLUSTER);
      expect(
        image
          .subarray(entry.at, entry.at + length)
          .equals(sim.readDisk(vdi.uuid, entry.guest * CLUSTER, length)),
      ).toBe(true);
    }
    await withTempDir(async (dir) => {
      expect(sha256(await qcow2ToRaw(dir, image))).toBe(sim.diskSha256(vdi.uuid));
    });
  });

  it('"map" for a qcow2-backed VDI sends allocated clusters that hold zeros; "scan" (VHD-backed, raw, or a host before 26.0) skips them', async () => {
    const sizes = { virtualSize: 8 * MiB, populate: 'scattered' as const, seed: 7 };
    const vdis = {
      qcow2: sim.addVdi({ ...sizes, imageFormat: 'qcow2' }),
      vhd: sim.addVdi({ ...sizes, imageFormat: 'vhd' }),
      raw: sim.addVdi({ ...sizes, imageFormat: 'raw' }),
    };
    for (const vdi of Object.values(vdis)) sim.writeDisk(vdi.uuid, 3 * MiB, Buffer.alloc(2 * CLUSTER)); // zeros
    const clusters = async (uuid: string) =>
      mappedClusters((await exportBody({ vdi: uuid, format: 'qcow2' })).body).map((c) => c.guest);
    const zeros = [48, 49];
    expect(await clusters(vdis.qcow2.uuid)).toEqual(expect.arrayContaining(zeros));
    expect(await clusters(vdis.qcow2.uuid)).toEqual(sim.allocatedClusters(vdis.qcow2.uuid));
    expect(await clusters(vdis.vhd.uuid)).not.toEqual(expect.arrayContaining([48]));
    expect(await clusters(vdis.raw.uuid)).not.toEqual(expect.arrayContaining([48]));
    sim.setXapiVersion('25.27.0');
    expect(await clusters(vdis.qcow2.uuid)).toEqual(await clusters(vdis.vhd.uuid));
    for (const vdi of Object.values(vdis)) {
      await withTempDir(async (dir) => {
        expect(
          sha256(await qcow2ToRaw(dir, (await exportBody({ vdi: vdi.uuid, format: 'qcow2' })).body)),
        ).toBe(sim.diskSha256(vdi.uuid));
      });
    }
  });

  it('a delta (base=) is a standalone qcow2 of the changed clusters; over the base’s raw it gives the snapshot; a cluster that became zero travels as zeros', async () => {
    for (const imageFormat of ['vhd', 'qcow2'] as const) {
      const vdi = sim.addVdi({ virtualSize: 12 * MiB, populate: 'generated', imageFormat });
      const base = await snapshot(vdi.uuid);
      sim.writeDisk(vdi.uuid, 2 * MiB + 10, Buffer.alloc(100, 9)); // changed bytes
      sim.writeDisk(vdi.uuid, 5 * MiB, Buffer.alloc(CLUSTER)); // became zero
      sim.writeDisk(vdi.uuid, 7 * MiB, sim.readDisk(vdi.uuid, 7 * MiB, 100)); // same bytes written again
      const top = await snapshot(vdi.uuid);
      const { body: delta } = await exportBody({ vdi: top, base, format: 'qcow2' });
      expect(delta.subarray(8, 20).every((byte) => byte === 0)).toBe(true); // no backing file
      const sent = mappedClusters(delta).map((c) => c.guest);
      // scan: the bytes that differ; map: every cluster written since the base, identical ones included
      expect(sent).toEqual(imageFormat === 'vhd' ? [32, 80] : [32, 80, 112]);
      const zeroCluster = mappedClusters(delta).find((c) => c.guest === 80)!;
      expect(delta.subarray(zeroCluster.at, zeroCluster.at + CLUSTER).every((byte) => byte === 0)).toBe(true);
      await withTempDir(async (dir) => {
        const deltaRaw = await qcow2ToRaw(dir, delta, 'delta');
        const baseRaw = await qcow2ToRaw(
          dir,
          (await exportBody({ vdi: base, format: 'qcow2' })).body,
          'base',
        );
        const overlaid = Buffer.from(baseRaw);
        for (const guest of sent)
          deltaRaw.copy(overlaid, guest * CLUSTER, guest * CLUSTER, (guest + 1) * CLUSTER);
        expect(sha256(overlaid)).toBe(sim.diskSha256(top));
      });
    }
  });
});

describe('the vhd rules for VDIs that are not VHD-backed', () => {
  it('vhd of a VDI over 2040 GiB: VDI_TOO_LARGE after the 200', async () => {
    const vdi = sim.addVdi({ virtualSize: 2041 * GiB });
    const task = await newTask();
    const response = await exportBody({ vdi: vdi.uuid, format: 'vhd', task_id: task });
    expect(response.status).toBe(200);
    expect(response.body.toString('latin1')).toMatch(/^HTTP\/1\.1 500 /);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['VDI_TOO_LARGE', vdi.ref, String(2040 * GiB)],
    });
  });

  it('vhd&base= of a qcow2-backed VDI fails "Cannot compute differences on non-VHD images"; a vhd full reads the device as raw, every block present', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB, imageFormat: 'qcow2' });
    sim.writeDisk(vdi.uuid, 3 * MiB, Buffer.alloc(10, 1));
    const base = await snapshot(vdi.uuid);
    const task = await newTask();
    const delta = await exportBody({ vdi: vdi.uuid, base, format: 'vhd', task_id: task });
    expect(delta.status).toBe(200);
    expect(delta.body.toString('latin1')).toMatch(/^HTTP\/1\.1 500 /);
    expect(await taskRecord(task)).toMatchObject({
      status: 'failure',
      error_info: ['INTERNAL_ERROR', 'Failure("Cannot compute differences on non-VHD images")'],
    });
    const full = await exportBody({ vdi: vdi.uuid, format: 'vhd' });
    expect(full.body.length).toBe(2560 + 512 + 4 * (512 + 2 * MiB)); // every one of the 4 blocks
  });
});

describe('byte faults on qcow2 exports', () => {
  const vdiFor = () => sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated', imageFormat: 'qcow2' });

  it('corrupt-byte, drop-connection, http-500-in-body (the exporter’s "Internal Error" page), fail-task-after-body', async () => {
    const vdi = vdiFor();
    const clean = (await exportBody({ vdi: vdi.uuid, format: 'qcow2' })).body;

    sim.injectFault({ kind: 'corrupt-byte', offset: 40, times: 1 });
    const corrupt = (await exportBody({ vdi: vdi.uuid, format: 'qcow2' })).body;
    expect(corrupt[40]).toBe(clean[40]! ^ 0xff);
    expect(corrupt.subarray(41).equals(clean.subarray(41))).toBe(true);

    sim.injectFault({ kind: 'drop-connection', afterBytes: 100_000, mode: 'close', times: 1 });
    let task = await newTask();
    const dropped = await exportBody({ vdi: vdi.uuid, format: 'qcow2', task_id: task });
    expect(dropped.body.equals(clean.subarray(0, 100_000))).toBe(true);
    expect((await taskRecord(task)).status).toBe('failure');

    sim.injectFault({ kind: 'http-500-in-body', afterBytes: 3 * CLUSTER, code: 'VDI_IO_ERROR', times: 1 });
    task = await newTask();
    const page = await exportBody({ vdi: vdi.uuid, format: 'qcow2', task_id: task });
    expect(page.body.subarray(0, 3 * CLUSTER).equals(clean.subarray(0, 3 * CLUSTER))).toBe(true);
    expect(page.body.subarray(3 * CLUSTER).toString('latin1')).toMatch(/^HTTP\/1\.1 500 Internal Error\r\n/);
    expect(((await taskRecord(task)).error_info as string[])[0]).toBe('VDI_IO_ERROR');

    sim.injectFault({ kind: 'fail-task-after-body', code: 'VDI_IO_ERROR', params: ['late'], times: 1 });
    task = await newTask();
    expect((await exportBody({ vdi: vdi.uuid, format: 'qcow2', task_id: task })).body.equals(clean)).toBe(
      true,
    );
    expect(await taskRecord(task)).toMatchObject({ status: 'failure', error_info: ['VDI_IO_ERROR', 'late'] });
  });

  it('stall, throttle and expire-sessions act on the qcow2 byte stream', async () => {
    const vdi = vdiFor();
    sim.injectFault({ kind: 'stall', ms: 300, afterBytes: CLUSTER, times: 1 });
    let started = performance.now();
    await exportBody({ vdi: vdi.uuid, format: 'qcow2' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    sim.injectFault({ kind: 'throttle', bytesPerSecond: 16 * MiB, times: 1 });
    started = performance.now();
    const throttled = await exportBody({ vdi: vdi.uuid, format: 'qcow2' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(
      (throttled.body.length / (16 * MiB)) * 1000 * 0.8,
    );
    const other = await login(sim);
    sim.injectFault({ kind: 'expire-sessions', afterBytes: 2 * CLUSTER, times: 1 });
    const expired = await exportBody({ vdi: vdi.uuid, format: 'qcow2' });
    expect(expired.body.length).toBe(throttled.body.length);
    expect(sim.expiredSessions().map((s) => s.ref)).toContain(other);
    session = await login(sim);
  });
});

describe('a 3 TiB sparse qcow2 VDI', () => {
  it('exports with flat memory; the stream hashes to the same bytes qemu-img accepts and maps', async () => {
    const size = 3 * TiB;
    const vdi = sim.addVdi({ virtualSize: size, nameLabel: 'big' });
    expect(sim.vdiRecord(vdi.uuid)!.sm_config).toMatchObject({ 'image-format': 'qcow2' });
    const writes = Array.from({ length: 192 }, (_, i) => i * 16 * GiB + (i % 7) * MiB);
    for (const [i, at] of writes.entries()) sim.writeDisk(vdi.uuid, at, Buffer.alloc(100, (i % 250) + 1));
    // Streamed into a hash, never held: memory must not grow with the disk.
    const before = process.memoryUsage().rss;
    let peak = before;
    const streamed = await request(`${sim.url}${exportPath({ vdi: vdi.uuid, format: 'qcow2' })}`);
    const hash = createHash('sha256');
    let length = 0;
    for await (const chunk of streamed.body) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    // 192 L2 tables (one per 16 GiB), one data cluster each, an L1 of 6144 entries in one cluster.
    expect(length).toBe(expectedClusters(size, 192, 192) * CLUSTER);
    expect(peak - before).toBeLessThan(256 * MiB); // a loose sanity bound; the bench measures the real one
    const response = await exportBody({ vdi: vdi.uuid, format: 'qcow2' });
    expect(sha256(response.body)).toBe(hash.digest('hex'));
    expect(response.body.readUInt32BE(36)).toBe(6144);
    await withTempDir(async (dir) => {
      const path = join(dir, 'big.qcow2');
      await writeFile(path, response.body);
      await qemuCheck(path);
      const extents = await qemuDataExtents(path);
      expect(extents.map((extent) => extent.start)).toEqual(
        writes.map((at) => Math.floor(at / CLUSTER) * CLUSTER),
      );
      for (const [k, at] of writes.entries()) {
        const cluster = Math.floor(at / CLUSTER) * CLUSTER;
        const fileAt = (expectedClusters(size, 192, 192) - 192 + k) * CLUSTER;
        expect(
          response.body.subarray(fileAt, fileAt + CLUSTER).equals(sim.readDisk(vdi.uuid, cluster, CLUSTER)),
        ).toBe(true);
      }
    });
  });
});
