import { createHash } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator } from '../../world/xapi-simulator/index.ts';
import type { XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { call, login, rawHttp, tlsAgent } from './sim-client.ts';

const MiB = 1024 * 1024;
let sim: XapiSimulator;

beforeAll(async () => {
  sim = await startXapiSimulator({ tls: true });
});
afterAll(() => sim.close());

describe('HTTPS', () => {
  it('serves RPC and transfers over TLS, verified against sim.caPem for 127.0.0.1 and localhost', async () => {
    expect(sim.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(sim.caPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const session = await login(sim);
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'scattered' });
    expect(await call(sim.url, 'VDI.get_by_uuid', [session, vdi.uuid], sim.caPem)).toBe(vdi.ref);
    const byName = sim.url.replace('127.0.0.1', 'localhost');
    expect(await call(byName, 'VDI.get_uuid', [session, vdi.ref], sim.caPem)).toBe(vdi.uuid);

    const response = await request(
      `${sim.url}/export_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=raw`,
      {
        dispatcher: tlsAgent(sim.caPem),
      },
    );
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-length']).toBeUndefined();
    const body = Buffer.from(await response.body.arrayBuffer());
    expect(createHash('sha256').update(body).digest('hex')).toBe(sim.diskSha256(vdi.uuid));
  });

  it('is refused by a client that does not trust the certificate', async () => {
    await expect(request(`${sim.url}/jsonrpc`, { method: 'POST', body: '{}' })).rejects.toThrow(
      /self[- ]signed|certificate/i,
    );
  });

  it('redirects to the member with an https Location', async () => {
    const session = await login(sim);
    const vdi = sim.addVdi({ virtualSize: 2 * MiB, onMember: true });
    const path = `/export_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=raw`;
    const redirect = await rawHttp(sim.url, { method: 'GET', path, caPem: sim.caPem });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe(`${sim.memberUrl}${path}`);
    expect(sim.memberUrl).toMatch(/^https:/);
    const served = await rawHttp(sim.memberUrl, { method: 'GET', path, caPem: sim.caPem });
    expect(served.body.length).toBe(2 * MiB);
  });
});

describe('HTTPS faults', () => {
  it('drop-connection cuts a TLS export too', async () => {
    const session = await login(sim);
    const vdi = sim.addVdi({ virtualSize: 4 * MiB, populate: 'generated' });
    const fault = sim.injectFault({ kind: 'drop-connection', afterBytes: 100_000, times: 1 });
    const response = await rawHttp(sim.url, {
      method: 'GET',
      path: `/export_raw_vdi?session_id=${session}&vdi=${vdi.uuid}&format=raw`,
      caPem: sim.caPem,
    });
    expect(fault.fired).toBe(1);
    expect(response.body.length).toBeLessThanOrEqual(100_000);
  });
});
