import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, callError, login, postJson, postXml, xmlCall } from './sim-client.ts';

let sim: XapiSimulator;
let session: string;
let vdi: { uuid: string; ref: string; srUuid: string };

beforeAll(async () => {
  sim = await startXapiSimulator();
  vdi = sim.addVdi({ virtualSize: 8 * 1024 * 1024, nameLabel: 'rpc disk', populate: 'scattered' });
  session = await login(sim);
});
afterAll(() => sim.close());

describe('JSON-RPC envelope', () => {
  it('answers success with result and the same id, Content-Type exactly application/json', async () => {
    const reply = await postJson(sim.url, {
      jsonrpc: '2.0',
      method: 'VDI.get_by_uuid',
      params: [session, vdi.uuid],
      id: 1,
    });
    expect(reply.status).toBe(200);
    expect(reply.contentType).toBe('application/json');
    expect(reply.json).toEqual({ jsonrpc: '2.0', result: vdi.ref, id: 1 });
  });

  it.each([0, 'abc', null, { nested: [1] }])('echoes id %j, 0 included', async (id) => {
    const reply = await postJson(sim.url, {
      jsonrpc: '2.0',
      method: 'VDI.get_uuid',
      params: [session, vdi.ref],
      id,
    });
    expect(reply.json).toEqual({ jsonrpc: '2.0', result: vdi.uuid, id });
  });

  it('returns API errors with HTTP 200 and {code:1, message:CODE, data:[params]}', async () => {
    const reply = await postJson(sim.url, {
      jsonrpc: '2.0',
      method: 'VDI.get_record',
      params: [session, 'OpaqueRef:nope'],
      id: 0,
    });
    expect(reply.status).toBe(200);
    expect(reply.contentType).toBe('application/json');
    expect(reply.json).toEqual({
      jsonrpc: '2.0',
      error: { code: 1, message: 'HANDLE_INVALID', data: ['VDI', 'OpaqueRef:nope'] },
      id: 0,
    });
  });
});

describe('XML-RPC envelope', () => {
  it.each(['/', '/RPC2'])(
    'POST %s answers {Status:Success,Value} with 64-bit ints as untyped strings',
    async (path) => {
      const reply = await postXml(sim.url, path, xmlCall('VDI.get_virtual_size', [session, vdi.ref]));
      expect(reply.status).toBe(200);
      expect(reply.contentType).toBe('text/xml');
      expect(reply.text).toContain('<member><name>Status</name><value>Success</value></member>');
      expect(reply.text).toContain(`<member><name>Value</name><value>${8 * 1024 * 1024}</value></member>`);
    },
  );

  it('answers failures as {Status:Failure,ErrorDescription:[CODE,params]}', async () => {
    const reply = await postXml(sim.url, '/', xmlCall('VDI.get_by_uuid', [session, 'no-such-uuid']));
    expect(reply.status).toBe(200);
    expect(reply.text).toContain('<member><name>Status</name><value>Failure</value></member>');
    expect(reply.text).toContain(
      '<member><name>ErrorDescription</name><value><array><data><value>UUID_INVALID</value><value>VDI</value><value>no-such-uuid</value></data></array></value></member>',
    );
  });

  it('types booleans, floats and datetimes; takes typed <string> parameters too', async () => {
    const snapshot = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
    const xml = `<?xml version="1.0"?><methodCall><methodName>VDI.get_record</methodName><params><param><value><string>${session}</string></value></param><param><value><string>${snapshot}</string></value></param></params></methodCall>`;
    const { text } = await postXml(sim.url, '/', xml);
    expect(text).toContain('<name>is_a_snapshot</name><value><boolean>1</boolean></value>');
    expect(text).toMatch(
      /<name>snapshot_time<\/name><value><dateTime.iso8601>\d{8}T\d\d:\d\d:\d\dZ<\/dateTime.iso8601><\/value>/,
    );
    const task = (await call(sim.url, 'task.create', [session, 't', 'd'])) as string;
    const progress = await postXml(sim.url, '/', xmlCall('task.get_progress', [session, task]));
    expect(progress.text).toContain('<name>Value</name><value><double>0</double></value>');
    await call(sim.url, 'task.destroy', [session, task]);
    await call(sim.url, 'VDI.destroy', [session, snapshot]);
  });

  it('accepts structs and arrays (VDI.create over XML-RPC)', async () => {
    const xml =
      `<?xml version="1.0"?><methodCall><methodName>VDI.create</methodName><params><param><value>${session}</value></param>` +
      `<param><value><struct><member><name>SR</name><value>${(await call(sim.url, 'SR.get_by_uuid', [session, vdi.srUuid])) as string}</value></member>` +
      '<member><name>virtual_size</name><value>4194304</value></member><member><name>type</name><value>user</value></member>' +
      '<member><name>sharable</name><value><boolean>0</boolean></value></member><member><name>read_only</name><value><boolean>0</boolean></value></member>' +
      '<member><name>other_config</name><value><struct><member><name>k</name><value>v &amp; w</value></member></struct></value></member>' +
      '<member><name>tags</name><value><array><data><value>t1</value></data></array></value></member>' +
      '<member><name>name_label</name><value>xml made</value></member></struct></value></param></params></methodCall>';
    const { text } = await postXml(sim.url, '/', xml);
    const ref = /<name>Value<\/name><value>(OpaqueRef:[^<]+)<\/value>/.exec(text)?.[1];
    expect(ref).toBeDefined();
    const record = (await call(sim.url, 'VDI.get_record', [session, ref])) as Record<string, unknown>;
    expect(record).toMatchObject({
      name_label: 'xml made',
      virtual_size: 4194304,
      other_config: { k: 'v & w' },
      tags: ['t1'],
    });
    await call(sim.url, 'VDI.destroy', [session, ref]);
  });
});

describe('sessions', () => {
  it('refuses bad credentials with SESSION_AUTHENTICATION_FAILED', async () => {
    const error = await callError(sim.url, 'session.login_with_password', [
      sim.username,
      'wrong',
      '1.0',
      'x',
    ]);
    expect(error.code).toBe('SESSION_AUTHENTICATION_FAILED');
  });

  it('accepts the two-argument login of old clients', async () => {
    const ref = (await call(sim.url, 'session.login_with_password', [sim.username, sim.password])) as string;
    expect(ref).toMatch(/^OpaqueRef:[0-9a-f-]{36}$/);
    await call(sim.url, 'session.logout', [ref]);
  });

  it('answers a login at the member with HOST_IS_SLAVE [master address]', async () => {
    const error = await callError(sim.memberUrl, 'session.login_with_password', [
      sim.username,
      sim.password,
      '1.0',
      'x',
    ]);
    expect(error.code).toBe('HOST_IS_SLAVE');
    expect(error.params).toEqual([sim.masterAddress]);
    expect(sim.url).toBe(`http://${sim.masterAddress}`);
  });

  it('serves a master session at the member too (sessions are pool-wide)', async () => {
    expect(await call(sim.memberUrl, 'VDI.get_uuid', [session, vdi.ref])).toBe(vdi.uuid);
  });

  it('gives SESSION_INVALID after logout, for unknown sessions and after expiry', async () => {
    const ref = await login(sim);
    expect(sim.openSessions().map((open) => open.ref)).toContain(ref);
    await call(sim.url, 'session.logout', [ref]);
    expect(sim.openSessions().map((open) => open.ref)).not.toContain(ref);
    const afterLogout = await callError(sim.url, 'VDI.get_record', [ref, vdi.ref]);
    expect([afterLogout.code, afterLogout.params]).toEqual(['SESSION_INVALID', [ref]]);
    expect((await callError(sim.url, 'VDI.get_all', ['OpaqueRef:NULL'])).code).toBe('SESSION_INVALID');

    const other = await login(sim);
    sim.expireSessions();
    expect((await callError(sim.url, 'VDI.get_all', [other])).code).toBe('SESSION_INVALID');
    session = await login(sim);
  });
});

describe('error codes', () => {
  it('MESSAGE_METHOD_UNKNOWN [method]', async () => {
    const error = await callError(sim.url, 'VDI.frobnicate', [session]);
    expect([error.code, error.params]).toEqual(['MESSAGE_METHOD_UNKNOWN', ['VDI.frobnicate']]);
  });

  it('MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received] not counting the session', async () => {
    const error = await callError(sim.url, 'VDI.get_record', [session]);
    expect([error.code, error.params]).toEqual([
      'MESSAGE_PARAMETER_COUNT_MISMATCH',
      ['VDI.get_record', '1', '0'],
    ]);
  });

  it('HANDLE_INVALID [class, ref] and UUID_INVALID [class, uuid]', async () => {
    expect((await callError(sim.url, 'SR.get_record', [session, 'OpaqueRef:NULL'])).params).toEqual([
      'SR',
      'OpaqueRef:NULL',
    ]);
    const error = await callError(sim.url, 'SR.get_by_uuid', [session, 'nope']);
    expect([error.code, error.params]).toEqual(['UUID_INVALID', ['SR', 'nope']]);
    expect((await callError(sim.url, 'task.get_status', [session, 'OpaqueRef:x'])).params).toEqual([
      'task',
      'OpaqueRef:x',
    ]);
  });

  it('refuses writes by a read-only session (RBAC_PERMISSION_DENIED) but lets it read', async () => {
    const readOnly = (await call(sim.url, 'session.login_with_password', [
      sim.readOnlyUsername,
      sim.readOnlyPassword,
      '1.0',
      'ro',
    ])) as string;
    expect(await call(sim.url, 'VDI.get_uuid', [readOnly, vdi.ref])).toBe(vdi.uuid);
    expect((await callError(sim.url, 'VDI.snapshot', [readOnly, vdi.ref, {}])).code).toBe(
      'RBAC_PERMISSION_DENIED',
    );
    await call(sim.url, 'session.logout', [readOnly]);
  });
});

describe('VDI methods', () => {
  it('returns records shaped like xapi: snake_case, int sizes, string maps, OpaqueRef:NULL, datetimes', async () => {
    const record = (await call(sim.url, 'VDI.get_record', [session, vdi.ref])) as Record<string, unknown>;
    const srRef = await call(sim.url, 'SR.get_by_uuid', [session, vdi.srUuid]);
    expect(record).toMatchObject({
      uuid: vdi.uuid,
      name_label: 'rpc disk',
      SR: srRef,
      virtual_size: 8 * 1024 * 1024,
      type: 'user',
      sharable: false,
      read_only: false,
      other_config: {},
      sm_config: {},
      is_a_snapshot: false,
      snapshot_of: 'OpaqueRef:NULL',
      snapshots: [],
      snapshot_time: '19700101T00:00:00Z',
      cbt_enabled: false,
    });
    expect(record.physical_utilisation).toBeGreaterThan(0);
    for (const field of [
      'uuid',
      'name_label',
      'SR',
      'virtual_size',
      'physical_utilisation',
      'other_config',
      'is_a_snapshot',
      'snapshot_of',
      'snapshots',
      'snapshot_time',
      'type',
    ]) {
      expect(await call(sim.url, `VDI.get_${field}`, [session, vdi.ref])).toEqual(record[field]);
    }
    const all = (await call(sim.url, 'VDI.get_all_records', [session])) as Record<string, unknown>;
    expect(all[vdi.ref]).toEqual(record);
    const sr = (await call(sim.url, 'SR.get_record', [session, srRef])) as Record<string, unknown>;
    expect(sr).toMatchObject({ uuid: vdi.srUuid, shared: true });
    expect(sr.VDIs).toContain(vdi.ref);
  });

  it('VDI.snapshot copies name, type, other_config and tags and links both ways', async () => {
    const source = sim.addVdi({
      virtualSize: 4 * 1024 * 1024,
      nameLabel: 'web',
      otherConfig: { backup: 'yes' },
      tags: ['prod'],
    });
    await call(sim.url, 'VDI.add_to_other_config', [session, source.ref, 'owner', 'ops']);
    const before = Date.now();
    const snapshot = (await call(sim.url, 'VDI.snapshot', [session, source.ref, {}])) as string;
    const record = (await call(sim.url, 'VDI.get_record', [session, snapshot])) as Record<string, unknown>;
    expect(record).toMatchObject({
      name_label: 'web',
      type: 'user',
      other_config: { backup: 'yes', owner: 'ops' },
      tags: ['prod'],
      is_a_snapshot: true,
      snapshot_of: source.ref,
      virtual_size: 4 * 1024 * 1024,
      SR: await call(sim.url, 'SR.get_by_uuid', [session, source.srUuid]),
    });
    const time = String(record.snapshot_time);
    expect(time).toMatch(/^\d{8}T\d\d:\d\d:\d\dZ$/);
    const parsed = Date.UTC(
      +time.slice(0, 4),
      +time.slice(4, 6) - 1,
      +time.slice(6, 8),
      +time.slice(9, 11),
      +time.slice(12, 14),
      +time.slice(15, 17),
    );
    expect(parsed).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(await call(sim.url, 'VDI.get_snapshots', [session, source.ref])).toEqual([snapshot]);
    expect(sim.snapshotsOf(source.uuid).map((snap) => snap.ref)).toEqual([snapshot]);

    await call(sim.url, 'VDI.destroy', [session, snapshot]);
    expect(await call(sim.url, 'VDI.get_snapshots', [session, source.ref])).toEqual([]);
    expect((await callError(sim.url, 'VDI.get_record', [session, snapshot])).code).toBe('HANDLE_INVALID');
  });

  it('other_config: add (MAP_DUPLICATE_KEY on a second add), remove (no error when absent)', async () => {
    await call(sim.url, 'VDI.add_to_other_config', [session, vdi.ref, 'k', 'v']);
    const duplicate = await callError(sim.url, 'VDI.add_to_other_config', [session, vdi.ref, 'k', 'w']);
    expect([duplicate.code, duplicate.params]).toEqual([
      'MAP_DUPLICATE_KEY',
      ['VDI', 'other_config', vdi.ref, 'k'],
    ]);
    await call(sim.url, 'VDI.remove_from_other_config', [session, vdi.ref, 'k']);
    await call(sim.url, 'VDI.remove_from_other_config', [session, vdi.ref, 'k']);
    expect(await call(sim.url, 'VDI.get_other_config', [session, vdi.ref])).toEqual({});
  });

  it('VDI.create needs SR, virtual_size, type, sharable, read_only, other_config; rounds the size to 2 MiB', async () => {
    const srRef = await call(sim.url, 'SR.get_by_uuid', [session, vdi.srUuid]);
    const record = {
      SR: srRef,
      virtual_size: 3 * 1024 * 1024 + 512,
      type: 'user',
      sharable: false,
      read_only: false,
      other_config: { a: 'b' },
      name_label: 'restore',
    };
    const { other_config: _omitted, ...missing } = record;
    expect(await callError(sim.url, 'VDI.create', [session, missing])).toMatchObject({
      code: 'FIELD_TYPE_ERROR',
      params: ['other_config'],
    });
    expect((await callError(sim.url, 'VDI.create', [session, { ...record, SR: 'OpaqueRef:bad' }])).code).toBe(
      'HANDLE_INVALID',
    );
    const ref = (await call(sim.url, 'VDI.create', [session, record])) as string;
    expect(await call(sim.url, 'VDI.get_record', [session, ref])).toMatchObject({
      name_label: 'restore',
      virtual_size: 4 * 1024 * 1024,
      other_config: { a: 'b' },
      is_a_snapshot: false,
    });
    const uuid = (await call(sim.url, 'VDI.get_uuid', [session, ref])) as string;
    expect(sim.allocatedBlocks(uuid)).toEqual([]);
    await call(sim.url, 'VDI.destroy', [session, ref]);
    expect(sim.vdiRecord(uuid)).toBeUndefined();
  });
});

describe('tasks', () => {
  it('create, read, cancel, destroy', async () => {
    const task = (await call(sim.url, 'task.create', [session, 'backup', 'vdi export'])) as string;
    expect(sim.openTasks().map((open) => open.ref)).toContain(task);
    expect(await call(sim.url, 'task.get_record', [session, task])).toMatchObject({
      name_label: 'backup',
      name_description: 'vdi export',
      status: 'pending',
      progress: 0,
      result: '',
      error_info: [],
    });
    expect(await call(sim.url, 'task.get_status', [session, task])).toBe('pending');
    await call(sim.url, 'task.cancel', [session, task]);
    expect(await call(sim.url, 'task.get_status', [session, task])).toBe('cancelled');
    expect(await call(sim.url, 'task.get_error_info', [session, task])).toEqual(['TASK_CANCELLED', task]);
    expect((await callError(sim.url, 'task.cancel', [session, task])).code).toBe('OPERATION_NOT_ALLOWED');
    await call(sim.url, 'task.destroy', [session, task]);
    expect(sim.openTasks().map((open) => open.ref)).not.toContain(task);
    expect((await callError(sim.url, 'task.get_status', [session, task])).code).toBe('HANDLE_INVALID');
  });
});

describe('what general clients call on connect', () => {
  it('system.listMethods, pool.get_all_records, host.get_all_records, host.get_record', async () => {
    const methods = (await call(sim.url, 'system.listMethods', [])) as string[];
    expect(methods).toEqual(
      expect.arrayContaining(['VDI.snapshot', 'task.create', 'session.login_with_password']),
    );
    const pools = (await call(sim.url, 'pool.get_all_records', [session])) as Record<
      string,
      Record<string, unknown>
    >;
    const [poolRecord] = Object.values(pools);
    const hosts = (await call(sim.url, 'host.get_all_records', [session])) as Record<
      string,
      Record<string, unknown>
    >;
    expect(Object.keys(hosts)).toHaveLength(2);
    const master = hosts[poolRecord!.master as string]!;
    expect(master).toMatchObject({ address: sim.masterAddress, API_version_major: 2, enabled: true });
    expect(await call(sim.url, 'host.get_record', [session, poolRecord!.master])).toEqual(master);
  });
});

describe('injected RPC faults', () => {
  it('fail a chosen method with a chosen code, a limited number of times', async () => {
    const fault = sim.injectFault({ kind: 'rpc-error', method: 'VDI.snapshot', code: 'SR_FULL', times: 1 });
    expect((await callError(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])).code).toBe('SR_FULL');
    expect(fault.fired).toBe(1);
    const snapshot = (await call(sim.url, 'VDI.snapshot', [session, vdi.ref, {}])) as string;
    sim.injectFault({
      kind: 'rpc-error',
      method: 'VDI.destroy',
      code: 'VDI_IN_USE',
      params: [snapshot, 'destroy'],
      times: 1,
    });
    expect(await callError(sim.url, 'VDI.destroy', [session, snapshot])).toMatchObject({
      code: 'VDI_IN_USE',
      params: [snapshot, 'destroy'],
    });
    await call(sim.url, 'VDI.destroy', [session, snapshot]);
  });

  it('fail logins until removed', async () => {
    const fault = sim.injectFault({
      kind: 'rpc-error',
      method: 'session.login_with_password',
      code: 'SESSION_AUTHENTICATION_FAILED',
    });
    expect((await callError(sim.url, 'session.login_with_password', [sim.username, sim.password])).code).toBe(
      'SESSION_AUTHENTICATION_FAILED',
    );
    expect((await callError(sim.url, 'session.login_with_password', [sim.username, sim.password])).code).toBe(
      'SESSION_AUTHENTICATION_FAILED',
    );
    fault.remove();
    const ref = await login(sim);
    await call(sim.url, 'session.logout', [ref]);
  });
});
