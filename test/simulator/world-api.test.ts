import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, callError, login, rawHttp } from './sim-client.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;

beforeAll(async () => {
  sim = await startXapiSimulator({
    username: 'admin',
    password: 'secret',
    seedVdis: [{ virtualSize: 4 * MiB, nameLabel: 'seeded', populate: 'scattered' }],
  });
});
afterAll(() => sim.close());

describe('test API', () => {
  it('takes credentials and seed VDIs', async () => {
    expect([sim.username, sim.password]).toEqual(['admin', 'secret']);
    const session = await login(sim);
    const refs = (await call(sim.url, 'VDI.get_by_name_label', [session, 'seeded'])) as string[];
    expect(refs).toHaveLength(1);
    const uuid = (await call(sim.url, 'VDI.get_uuid', [session, refs[0]])) as string;
    expect(sim.allocatedBlocks(uuid)).toContain(0);
    expect(sim.allocatedBlocks(uuid)).toContain(1); // first and last block are always populated
  });

  it('scattered content is deterministic for a seed', () => {
    const a = sim.addVdi({ virtualSize: 32 * MiB, populate: 'scattered', seed: 9 });
    const b = sim.addVdi({ virtualSize: 32 * MiB, populate: 'scattered', seed: 9 });
    const c = sim.addVdi({ virtualSize: 32 * MiB, populate: 'scattered', seed: 10 });
    expect(sim.diskSha256(a.uuid)).toBe(sim.diskSha256(b.uuid));
    expect(sim.diskSha256(a.uuid)).not.toBe(sim.diskSha256(c.uuid));
    const blocks = sim.allocatedBlocks(a.uuid);
    expect(blocks.length).toBeGreaterThan(2);
    expect(blocks.length).toBeLessThan(16);
  });

  it('snapshotVdi and deleteVdi act behind the client’s back; deleteVdi respects VDI_IN_USE', async () => {
    const session = await login(sim);
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    const snapshot = sim.snapshotVdi(vdi.uuid);
    expect(await call(sim.url, 'VDI.get_snapshots', [session, vdi.ref])).toEqual([snapshot.ref]);
    expect(sim.vdiRecord(snapshot.uuid)).toMatchObject({
      ref: snapshot.ref,
      is_a_snapshot: true,
      snapshot_of: vdi.ref,
    });
    sim.deleteVdi(snapshot.uuid);
    expect(sim.snapshotsOf(vdi.uuid)).toEqual([]);
    expect((await callError(sim.url, 'VDI.get_record', [session, snapshot.ref])).code).toBe('HANDLE_INVALID');

    sim.injectFault({ kind: 'stall', ms: 300, afterBytes: 0, vdiUuid: vdi.uuid, times: 1 });
    const transfer = rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=raw`,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(() => sim.deleteVdi(vdi.uuid)).toThrow(/VDI_IN_USE/);
    await transfer;
    sim.deleteVdi(vdi.uuid);
    expect(sim.vdiRecord(vdi.uuid)).toBeUndefined();
  });

  it('openTasks lists client tasks only; openSessions lists logins and not Basic-auth transfers', async () => {
    const session = await login(sim);
    const task = (await call(sim.url, 'task.create', [session, 'mine', ''])) as string;
    const vdi = sim.addVdi({ virtualSize: 2 * MiB });
    await rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=raw`,
    });
    await rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?vdi=${vdi.uuid}&format=raw`,
      headers: { Authorization: `Basic ${Buffer.from('admin:secret').toString('base64')}` },
    });
    expect(sim.openTasks().map((open) => open.ref)).toEqual([task]);
    expect(sim.openTasks()[0]).toMatchObject({ name_label: 'mine', status: 'pending' });
    expect(sim.openSessions().map((open) => open.ref)).toContain(session);
    expect(sim.openSessions().every((open) => open.originator !== 'basic-auth')).toBe(true);
    await call(sim.url, 'task.destroy', [session, task]);
    expect(sim.openTasks()).toEqual([]);
  });

  it('injectFault validates its input', () => {
    expect(() => sim.injectFault({ kind: 'throttle', bytesPerSecond: 0 })).toThrow(RangeError);
    expect(() => sim.injectFault({ kind: 'drop-connection', afterBytes: -1 })).toThrow(RangeError);
    expect(() => sim.injectFault(JSON.parse('{"kind":"meteor-strike"}') as never)).toThrow(
      /unknown fault kind/,
    );
  });
});
