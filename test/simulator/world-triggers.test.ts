/**
 * The world-side triggers the fault matrix uses instead of callbacks inside the code under test: the
 * simulator's `expire-sessions` fault, counted on the transfer body, and the TCP proxy's byte-counted stop.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy } from '../world/tcp-proxy.ts';
import { startXapiSimulator, type XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, callError, login, rawHttp } from './sim-client.ts';

const MiB = 1024 * 1024;

describe('simulator fault expire-sessions', () => {
  let sim: XapiSimulator;
  beforeAll(async () => {
    sim = await startXapiSimulator();
  });
  afterAll(() => sim.close());
  afterEach(() => sim.clearFaults());

  const exportRaw = (session: string, vdi: string) =>
    rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?${new URLSearchParams({ session_id: session, vdi, format: 'raw' })}`,
    });

  it('fires once that many body bytes of an export have passed, never before; the export goes on', async () => {
    const vdi = sim.addVdi({ virtualSize: 8 * MiB, populate: 'generated' });
    const session = await login(sim);
    const counts = sim.sessionCounts();
    // One byte more than the body: it never fires and stays armed.
    const late = sim.injectFault({ kind: 'expire-sessions', on: 'export', afterBytes: 8 * MiB + 1 });
    expect((await exportRaw(session, vdi.uuid)).body.length).toBe(8 * MiB);
    expect(late.fired).toBe(0);
    expect(await call(sim.url, 'VDI.get_uuid', [session, vdi.ref])).toBe(vdi.uuid);
    late.remove();

    // Exactly the body's length: it fires when the last byte has passed.
    const exact = sim.injectFault({ kind: 'expire-sessions', on: 'export', afterBytes: 8 * MiB, times: 1 });
    const response = await exportRaw(session, vdi.uuid);
    expect(response.body.equals(Buffer.from(sim.readDisk(vdi.uuid, 0, 8 * MiB)))).toBe(true);
    expect(exact.fired).toBe(1);
    expect((await callError(sim.url, 'VDI.get_uuid', [session, vdi.ref])).code).toBe('SESSION_INVALID');
    // Recorded, not forgotten: a test can tell which sessions an expiry hit.
    expect(sim.expiredSessions().map((expired) => expired.ref)).toContain(session);
    expect(sim.openSessions()).toEqual([]);
    expect(sim.sessionCounts()).toEqual({
      logins: counts.logins,
      logouts: counts.logouts,
      expired: counts.expired + 1,
    });

    // Used up: the next export with a new session is left alone.
    const again = await login(sim);
    expect((await exportRaw(again, vdi.uuid)).body.length).toBe(8 * MiB);
    expect(await call(sim.url, 'VDI.get_uuid', [again, vdi.ref])).toBe(vdi.uuid);
    await call(sim.url, 'session.logout', [again]);
    expect(sim.sessionCounts()).toMatchObject({ logins: counts.logins + 1, logouts: counts.logouts + 1 });
  });

  it('counts import body bytes received; the import still succeeds; other directions and VDIs are left alone', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * MiB });
    const other = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    const session = await login(sim);
    const fault = sim.injectFault({
      kind: 'expire-sessions',
      on: 'import',
      vdiUuid: vdi.uuid,
      afterBytes: MiB,
      times: 1,
    });
    expect((await exportRaw(session, vdi.uuid)).body.length).toBe(4 * MiB);
    expect((await exportRaw(session, other.uuid)).body.length).toBe(4 * MiB);
    expect(fault.fired).toBe(0);
    const task = (await call(sim.url, 'task.create', [session, 'import', ''])) as string;
    const body = Buffer.alloc(2 * MiB, 0x5a);
    const response = await rawHttp(sim.url, {
      method: 'PUT',
      path: `/import_raw_vdi?${new URLSearchParams({ session_id: session, vdi: vdi.uuid, format: 'raw', task_id: task })}`,
      headers: { 'Content-Length': body.length },
      body,
    });
    expect(response.status).toBe(200);
    expect(fault.fired).toBe(1);
    expect((await callError(sim.url, 'task.get_status', [session, task])).code).toBe('SESSION_INVALID');
    const fresh = await login(sim);
    expect(await call(sim.url, 'task.get_status', [fresh, task])).toBe('success');
    expect(Buffer.from(sim.readDisk(vdi.uuid, 0, 2 * MiB)).equals(body)).toBe(true);
    await call(sim.url, 'task.destroy', [fresh, task]);
    await call(sim.url, 'session.logout', [fresh]);
  });

  it('needs afterBytes', () => {
    expect(() => sim.injectFault({ kind: 'expire-sessions' } as never)).toThrow(/needs afterBytes/);
  });
});

describe('TCP proxy stopAfterBytes', () => {
  let sink: Server;
  let received = 0;
  let port = 0;
  beforeAll(async () => {
    sink = createServer((socket) => {
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        socket.write(chunk);
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    port = (sink.address() as AddressInfo).port;
  });
  afterAll(() => new Promise((resolve) => sink.close(resolve)));

  const open = (url: string) =>
    new Promise<{ socket: Socket; closed: Promise<Error | undefined> }>((resolve) => {
      const { port: proxyPort } = new URL(url);
      const socket = connect({ host: '127.0.0.1', port: Number(proxyPort) });
      let error: Error | undefined;
      socket.on('error', (cause) => (error = cause));
      const closed = new Promise<Error | undefined>((done) => socket.on('close', () => done(error)));
      // Connected, or (a stopped proxy) reset before that.
      socket.once('connect', () => resolve({ socket, closed }));
      socket.once('close', () => resolve({ socket, closed }));
    });

  it('passes exactly that many bytes towards the server, then resets every connection, and restarts', async () => {
    const proxy = await startTcpProxy(`tcp://127.0.0.1:${port}`);
    try {
      received = 0;
      const first = await open(proxy.url);
      first.socket.write(Buffer.alloc(1000, 1));
      await sleep(50);
      expect(proxy.bytes).toEqual({ toServer: 1000, toClient: 1000 });

      const trigger = proxy.stopAfterBytes(600, { restartAfterMs: 300 });
      first.socket.write(Buffer.alloc(1000, 2));
      await trigger.stopped;
      expect(await first.closed).toMatchObject({ code: 'ECONNRESET' });
      expect(trigger).toMatchObject({ fired: true, stoppedAtBytes: 1600 });
      expect(proxy.stops).toBe(1);
      await sleep(50);
      expect(received).toBe(1600);

      // Stopped: new connections are reset until the restart.
      const refused = await open(proxy.url);
      expect(await refused.closed).toMatchObject({ code: 'ECONNRESET' });
      await sleep(400);
      const later = await open(proxy.url);
      later.socket.write('after');
      await sleep(50);
      expect(received).toBe(1605);
      later.socket.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('can count the other way: bytes coming back from the server', async () => {
    const proxy = await startTcpProxy(`tcp://127.0.0.1:${port}`);
    try {
      const connection = await open(proxy.url);
      const trigger = proxy.stopAfterBytes(100, { direction: 'toClient' });
      connection.socket.write(Buffer.alloc(50));
      await sleep(50);
      expect(trigger.fired).toBe(false);
      connection.socket.write(Buffer.alloc(80));
      await trigger.stopped;
      expect(proxy.bytes.toClient).toBe(100);
      expect(await connection.closed).toMatchObject({ code: 'ECONNRESET' });
    } finally {
      await proxy.close();
    }
  });
});
