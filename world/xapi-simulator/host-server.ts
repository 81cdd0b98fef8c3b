import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { methodTable } from './methods.ts';
import type { HostState, PoolState } from './pool.ts';
import { handleJsonRpc } from './rpc-jsonrpc.ts';
import { handleXmlRpc } from './rpc-xmlrpc.ts';
import { sendPlain } from './transfer-common.ts';
import { handleExport } from './transfer-export.ts';
import { handleImport } from './transfer-import.ts';

export interface TlsMaterial {
  readonly key: string;
  readonly cert: string;
}

/** One host's HTTP(S) server: RPC and the two disk transfers; everything else is 404. */
export async function startHostServer(
  pool: PoolState,
  host: HostState,
  options: { port: number; tls: TlsMaterial | undefined; log: (line: string) => void },
): Promise<{ server: Server; port: number }> {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    route(pool, host, req, res).catch((error: unknown) => {
      options.log(`xapi-sim ${host.role}: ${req.method} ${req.url} failed: ${String(error)}`);
      if (!res.headersSent && !req.socket.destroyed) sendPlain(res, 500, 'Internal Server Error');
      else req.socket.destroy();
    });
  };
  // requestTimeout 0: an import may take hours; the host's own limit is 24 h.
  const serverOptions = { requestTimeout: 0, keepAliveTimeout: 5000 };
  const server: Server =
    options.tls === undefined
      ? createHttpServer(serverOptions, handler)
      : (createHttpsServer(
          { ...serverOptions, key: options.tls.key, cert: options.tls.cert },
          handler,
        ) as Server);
  // A host that is down takes no connection: each is reset as it arrives.
  server.on('connection', (socket) => {
    if (host.down) socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}

async function route(
  pool: PoolState,
  host: HostState,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://host').pathname;
  if (req.method === 'POST' && path === '/jsonrpc') {
    const reply = handleJsonRpc(methodTable, { pool, host }, await readText(req));
    return send(res, reply.status, 'application/json', reply.body);
  }
  if (req.method === 'POST' && (path === '/' || path === '/RPC2')) {
    return send(res, 200, 'text/xml', handleXmlRpc(methodTable, { pool, host }, await readText(req)));
  }
  if (req.method === 'GET' && (path === '/export_raw_vdi' || path === '/export_raw_vdi/')) {
    return handleExport(pool, host, req, res);
  }
  if (req.method === 'PUT' && (path === '/import_raw_vdi' || path === '/import_raw_vdi/')) {
    return handleImport(pool, host, req, res);
  }
  req.resume();
  sendPlain(res, 404, 'Not Found');
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  // Exactly `application/json` (no charset): clients compare it to decide JSON-RPC vs XML-RPC.
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': bytes.length });
  res.end(bytes);
}
