/** Plain clients for the simulator tests: they speak the wire protocols by hand, never through our xapi code. */
import { connect as connectTcp } from 'node:net';
import type { Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { request } from 'undici';
import type { Dispatcher } from 'undici';
import { Agent } from 'undici';

export class XapiCallError extends Error {
  readonly code: string;
  readonly params: string[];
  constructor(code: string, params: string[]) {
    super(`${code} ${JSON.stringify(params)}`);
    this.code = code;
    this.params = params;
  }
}

export function tlsAgent(caPem: string | undefined): Dispatcher | undefined {
  return caPem === undefined ? undefined : new Agent({ connect: { ca: caPem } });
}

export async function postJson(
  baseUrl: string,
  payload: unknown,
  caPem?: string,
): Promise<{ status: number; contentType: string | undefined; json: Record<string, unknown> }> {
  const response = await request(`${baseUrl}/jsonrpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(payload),
    dispatcher: tlsAgent(caPem),
  });
  return {
    status: response.statusCode,
    contentType: response.headers['content-type'] as string | undefined,
    json: (await response.body.json()) as Record<string, unknown>,
  };
}

/** JSON-RPC call: the result, or an XapiCallError built from the error envelope. */
export async function call(
  baseUrl: string,
  method: string,
  params: unknown[],
  caPem?: string,
): Promise<unknown> {
  const { json } = await postJson(baseUrl, { jsonrpc: '2.0', method, params, id: 1 }, caPem);
  const error = json.error as { message: string; data: string[] } | undefined;
  if (error !== undefined) throw new XapiCallError(error.message, error.data);
  return json.result;
}

export async function callError(baseUrl: string, method: string, params: unknown[]): Promise<XapiCallError> {
  try {
    await call(baseUrl, method, params);
  } catch (error) {
    if (error instanceof XapiCallError) return error;
    throw error;
  }
  throw new Error(`${method} succeeded`);
}

export async function postXml(
  baseUrl: string,
  path: string,
  xml: string,
): Promise<{ status: number; contentType: string | undefined; text: string }> {
  const response = await request(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'text/xml' },
    body: xml,
  });
  return {
    status: response.statusCode,
    contentType: response.headers['content-type'] as string | undefined,
    text: await response.body.text(),
  };
}

/** An XML-RPC methodCall with untyped string parameters. */
export function xmlCall(method: string, params: string[]): string {
  const values = params.map((param) => `<param><value>${param}</value></param>`).join('');
  return `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>${values}</params></methodCall>`;
}

export async function login(sim: {
  url: string;
  username: string;
  password: string;
  caPem?: string | undefined;
}) {
  return (await call(
    sim.url,
    'session.login_with_password',
    [sim.username, sim.password, '1.0', 'sim-test'],
    sim.caPem,
  )) as string;
}

export interface RawResponse {
  readonly head: string;
  readonly status: number;
  /** Lower-cased header names; repeated headers joined with ", ". */
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  /** Set when the connection ended with an error (e.g. ECONNRESET) rather than a clean close. */
  readonly error: Error | undefined;
}

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string | number>;
  body?: Uint8Array;
  caPem?: string;
  /** Called synchronously when the server ends the connection, before anything else can run. */
  onEnd?: () => void;
  /** Called once the response head has arrived (the socket is passed for flow control). */
  onHead?: (socket: Socket) => void;
}

/** One HTTP/1.1 exchange on a fresh connection, read until the server closes it: bytes exactly as sent. */
export function rawHttp(baseUrl: string, spec: RawRequest): Promise<RawResponse> {
  const url = new URL(baseUrl);
  const port = Number(url.port);
  return new Promise((resolve) => {
    const socket: Socket =
      url.protocol === 'https:'
        ? connectTls({ host: '127.0.0.1', port, ca: spec.caPem, servername: 'localhost' })
        : connectTcp({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let error: Error | undefined;
    let headSeen = false;
    let settled = false;
    const lines = [`${spec.method} ${spec.path} HTTP/1.1`, `Host: ${url.host}`];
    for (const [name, value] of Object.entries(spec.headers ?? {})) lines.push(`${name}: ${value}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (spec.body !== undefined) socket.write(spec.body);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!headSeen && Buffer.concat(chunks).includes('\r\n\r\n')) {
        headSeen = true;
        spec.onHead?.(socket);
      }
    });
    socket.on('error', (cause) => {
      error = cause;
    });
    const finish = (): void => {
      if (settled) return;
      settled = true;
      spec.onEnd?.();
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head = split < 0 ? all.toString('latin1') : all.subarray(0, split).toString('latin1');
      const body = split < 0 ? Buffer.alloc(0) : all.subarray(split + 4);
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      resolve({ head, status: Number(statusLine.split(' ')[1]), headers, body, error });
    };
    socket.on('end', finish);
    socket.on('close', finish);
  });
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** Collects an async byte stream. */
export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}
