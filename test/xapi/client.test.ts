import { X509Certificate } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Log } from '../../lambdas/shared/log.ts';
import {
  openExport,
  XapiError,
  XapiHttpError,
  XapiNetworkError,
  XapiSession,
  type XapiTlsOptions,
} from '../../lambdas/xapi/index.ts';
import { startXapiSimulator, type XapiSimulator } from '../../world/xapi-simulator/index.ts';

function recordingLog(): Log & { lines: string[] } {
  const lines: string[] = [];
  const record = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
  return {
    lines,
    debug: record('debug'),
    info: record('info'),
    warn: record('warn'),
    error: record('error'),
  };
}

describe('XAPI client over TLS', () => {
  let sim: XapiSimulator;
  beforeAll(async () => {
    sim = await startXapiSimulator({ tls: true });
  });
  afterAll(async () => {
    await sim.close();
  });
  const login = (tls: XapiTlsOptions, log?: Log) =>
    XapiSession.login(
      { url: sim.url, tls, ...(log ? { log } : {}) },
      { username: sim.username, password: sim.password },
    );

  it('verifies the host against a configured CA', async () => {
    const session = await login({ caPem: sim.caPem! });
    await session.logout();
  });

  it('refuses a host it cannot verify, with a network error', async () => {
    await expect(login({})).rejects.toBeInstanceOf(XapiNetworkError);
  });

  it('accepts a pinned certificate fingerprint and refuses a different one', async () => {
    const fingerprint = new X509Certificate(sim.caPem!).fingerprint256;
    const session = await login({ pinnedSha256: fingerprint });
    await session.logout();
    await expect(login({ pinnedSha256: 'AA'.repeat(32) })).rejects.toThrow(/does not match tls.pinnedSha256/);
  });

  it('skips verification only when told, and warns', async () => {
    const log = recordingLog();
    const session = await login({ insecureSkipVerify: true }, log);
    await session.logout();
    expect(log.lines.some((line) => line.startsWith('warn TLS verification of the pool is disabled'))).toBe(
      true,
    );
  });
});

describe('XAPI client', () => {
  let sim: XapiSimulator;
  beforeAll(async () => {
    sim = await startXapiSimulator();
  });
  afterAll(async () => {
    await sim.close();
  });

  it('follows HOST_IS_SLAVE to the master', async () => {
    const session = await XapiSession.login(
      { url: sim.memberUrl },
      { username: sim.username, password: sim.password },
    );
    expect(session.masterUrl).toBe(sim.url);
    await session.logout();
    expect(sim.openSessions()).toEqual([]);
  });

  it('reports API failures as XapiError with code and params', async () => {
    const failure = await XapiSession.login(
      { url: sim.url },
      { username: sim.username, password: 'wrong' },
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(XapiError);
    expect((failure as XapiError).code).toBe('SESSION_AUTHENTICATION_FAILED');
    const session = await XapiSession.login(
      { url: sim.url },
      { username: sim.username, password: sim.password },
    );
    const missing = '00000000-0000-4000-8000-000000000000';
    await expect(session.getVdiByUuid(missing)).rejects.toMatchObject({
      code: 'UUID_INVALID',
      params: ['VDI', missing],
    });
    await session.logout();
    await expect(session.call('VDI.get_all_records')).rejects.toBeInstanceOf(XapiNetworkError);
  });

  it('retries VDI_IN_USE on destroy and treats a gone VDI as destroyed', async () => {
    const vdi = sim.addVdi({ virtualSize: 4 * 1024 * 1024 });
    sim.injectFault({ kind: 'rpc-error', method: 'VDI.destroy', code: 'VDI_IN_USE', times: 2 });
    const session = await XapiSession.login(
      { url: sim.url },
      { username: sim.username, password: sim.password },
    );
    try {
      const ref = await session.getVdiByUuid(vdi.uuid);
      await session.destroyVdi(ref, 4, 5);
      expect(sim.vdiRecord(vdi.uuid)).toBeUndefined();
      await session.destroyVdi(ref, 1, 5);
    } finally {
      await session.logout();
    }
  });

  it('names 401 on a transfer with a logged-out session, and never logs the session id or password', async () => {
    const log = recordingLog();
    const vdi = sim.addVdi({ virtualSize: 4 * 1024 * 1024, populate: 'scattered' });
    const session = await XapiSession.login(
      { url: sim.url, log },
      { username: sim.username, password: sim.password },
    );
    const sessionRef = session.sessionRef;
    const vdiRef = await session.getVdiByUuid(vdi.uuid);
    const taskRef = await session.createTask('t');
    const opened = await openExport(session, { vdiRef, taskRef, format: 'raw' });
    opened.body.resume();
    await new Promise((resolve) => opened.body.on('end', resolve));
    await session.destroyTask(taskRef);
    const resumed = XapiSession.resume({ url: sim.url, log }, session.handle);
    await session.logout();
    const failure = await openExport(resumed, { vdiRef, taskRef: 'OpaqueRef:NULL', format: 'raw' }).catch(
      (error: unknown) => error,
    );
    await resumed.close();
    expect(failure).toBeInstanceOf(XapiHttpError);
    expect((failure as XapiHttpError).status).toBe(401);
    expect((failure as Error).message).toMatch(/refused the session/);
    expect((failure as XapiHttpError).url).not.toContain(sessionRef);
    const logged = log.lines.join('\n');
    expect(logged).not.toContain(sessionRef);
    expect(logged).not.toContain(sim.password);
  });
});

describe('XAPI client timeouts', () => {
  let silent: Server;
  const sockets: Socket[] = [];
  let url: string;
  beforeAll(async () => {
    // Accepts connections and never answers: a host that stalls.
    silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it('gives up on a host that never answers, naming the timeout', async () => {
    const started = Date.now();
    const failure = await XapiSession.login({ url, timeoutMs: 300 }, { username: 'u', password: 'p' }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(XapiNetworkError);
    expect((failure as Error).message).toMatch(/timed out/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
