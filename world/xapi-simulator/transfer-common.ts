import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ByteFaultPlan } from './byte-faults.ts';
import type { HostState, PoolState, SessionState, TaskState, TransferFormat, VdiState } from './pool.ts';
import { failTask, xapiAtLeast } from './pool.ts';
import { XapiError } from './xapi-error.ts';

/** What a transfer handler has once it has decided to answer 200 (everything before that is done here). */
export interface TransferStart {
  readonly vdi: VdiState;
  readonly task: TaskState;
  readonly format: TransferFormat;
  readonly query: URLSearchParams;
  readonly socket: Socket;
  readonly faults: ByteFaultPlan;
  readonly session: SessionState;
  /** Undo what the start did: drop the task the host made itself and the session Basic auth made. */
  readonly cleanup: () => void;
}

/**
 * The shared front half of both transfers, in xapi's order: credentials (401/403), the vdi parameter (a
 * plain 500 that leaves the caller's task alone), the SR's host (302 to the host that sees it), the task,
 * then the format (unknown: task failed and `HTTP/1.0 404`; qcow2 only from xapi 25.27.0). Returns
 * undefined when a response has been sent.
 */
export function startTransfer(
  pool: PoolState,
  host: HostState,
  direction: 'export' | 'import',
  req: IncomingMessage,
  res: ServerResponse,
): TransferStart | undefined {
  const url = new URL(req.url ?? '/', 'http://host');
  const query = url.searchParams;

  const auth = authenticate(pool, req, query);
  if (auth.status !== undefined) {
    sendPlain(res, auth.status, auth.status === 401 ? 'Unauthorised' : 'Forbidden', {
      ...(auth.status === 401 ? { 'WWW-Authenticate': 'Basic realm="xapi"' } : {}),
    });
    return undefined;
  }
  const session = auth.session!;
  const endSession = (): void => {
    if (auth.temporary) pool.endSession(session.ref, 'transfer');
  };

  let vdi: VdiState;
  try {
    const vdiParam = query.get('vdi');
    if (vdiParam === null || vdiParam === '') {
      if (direction === 'import' && query.get('format') === 'qcow2' && qcow2Supported(pool)) {
        // The qcow2 import path checks its parameters first: a bad request, not an internal error.
        endSession();
        sendPlain(res, 400, 'Bad Request: missing vdi');
        return undefined;
      }
      throw new Error('Missing vdi query parameter');
    }
    vdi = pool.vdiByRefOrUuid(vdiParam);
  } catch (error) {
    endSession();
    sendInternalError(res, error);
    return undefined;
  }

  const owner = pool.hostFor(vdi.sr);
  if (owner !== undefined && owner !== host) {
    endSession();
    res.writeHead(302, {
      Location: `${owner.baseUrl}${req.url ?? '/'}`,
      Connection: 'close',
      'Content-Length': 0,
    });
    res.end();
    return undefined;
  }

  // A fault scoped to a VDI also strikes the exports of its snapshots (a test rarely knows their uuids).
  const parentUuid = pool.vdis.get(vdi.snapshotOf)?.uuid;
  const scope = parentUuid === undefined ? [vdi.uuid] : [vdi.uuid, parentUuid];
  const faults = new ByteFaultPlan(pool.faults.claimTransferFaults(direction, scope), {
    expiries: pool.faults.watchSessionExpiries(direction, scope),
    expireSessions: () => pool.expireSessions(),
  });
  if (faults.refuseStatus !== undefined) {
    endSession();
    sendPlain(res, faults.refuseStatus, `injected refusal of the ${direction}`);
    return undefined;
  }

  const taskParam = query.get('task_id');
  let task: TaskState;
  let ownTask = false;
  if (taskParam !== null) {
    const found = pool.tasks.get(taskParam);
    if (found === undefined) {
      endSession();
      sendInternalError(res, new XapiError('HANDLE_INVALID', ['task', taskParam]));
      return undefined;
    }
    task = found;
  } else {
    task = pool.createTask(session.ref, `VDI.${direction}_raw_vdi`, '');
    pool.hostTasks.add(task.ref);
    ownTask = true;
  }
  const cleanup = (): void => {
    endSession();
    // A task the host made for itself is the host's to remove; one the client passed is the client's.
    if (ownTask) {
      setTimeout(() => {
        pool.tasks.delete(task.ref);
        pool.hostTasks.delete(task.ref);
      }, 1000).unref();
    }
  };

  const format = query.get('format') ?? 'raw';
  if (format !== 'vhd' && format !== 'raw' && !(format === 'qcow2' && qcow2Supported(pool))) {
    failTask(task, ['INTERNAL_ERROR', `Unknown format ${format}`]);
    cleanup();
    // xapi answers an unknown format with its HTTP/1.0 "404 missing" head and closes.
    req.resume();
    req.socket.end(
      'HTTP/1.0 404 Not Found\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\r\n',
    );
    return undefined;
  }

  return { vdi, task, format, query, socket: req.socket, faults, session, cleanup };
}

/** `format=qcow2` on export_raw_vdi and import_raw_vdi came with xapi 25.27.0. */
export function qcow2Supported(pool: PoolState): boolean {
  return xapiAtLeast(pool.xapiVersion, '25.27.0');
}

interface AuthResult {
  session?: SessionState;
  /** Made for this request from Basic credentials: removed when the transfer ends. */
  temporary?: boolean;
  status?: 401 | 403;
}

function authenticate(pool: PoolState, req: IncomingMessage, query: URLSearchParams): AuthResult {
  const sessionRef = query.get('session_id') ?? cookie(req, 'session_id');
  let session: SessionState | undefined;
  let temporary = false;
  if (sessionRef !== undefined && sessionRef !== null) {
    session = pool.sessions.get(sessionRef);
    if (session === undefined) return { status: 401 };
  } else {
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (basic === null) return { status: 401 };
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const username = decoded.slice(0, Math.max(colon, 0));
    const password = decoded.slice(colon + 1);
    const user = pool.users.find((candidate) => candidate.username === username);
    if (colon < 0 || user === undefined || user.password !== password) return { status: 401 };
    session = pool.createSession(user, 'basic-auth');
    temporary = true;
  }
  // RBAC: moving disk data needs the VDI.import / VDI.export_raw permissions a read-only role lacks.
  if (session.readOnly) {
    if (temporary) pool.endSession(session.ref, 'transfer');
    return { status: 403 };
  }
  return { session, temporary };
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

export function sendPlain(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  const body = Buffer.from(`${text}\n`);
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'text/plain',
    'Content-Length': body.length,
    Connection: 'close',
  });
  res.end(body);
}

function sendInternalError(res: ServerResponse, error: unknown): void {
  const detail = error instanceof XapiError ? error.description.join(' ') : String((error as Error).message);
  sendPlain(res, 500, `Internal Server Error: ${detail}`);
}

/** The 200 xapi sends before any data: no length, no chunking, the connection closes at the end. */
export function okHead(task: TaskState, extra: Record<string, string> = {}): string {
  const lines = [
    'HTTP/1.1 200 OK',
    'Connection: close',
    'Cache-Control: no-cache, no-store',
    `task-id: ${task.ref}`,
    ...Object.entries(extra).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/**
 * The whole error response xapi writes into a body whose 200 has already gone. `reason` is the status
 * text: vhd-tool's failures read `Internal Server Error`, the qcow2 tools' `Internal Error`.
 */
export function errorResponseInBody(errorInfo: readonly string[], reason = 'Internal Server Error'): string {
  const body = `<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred. ${errorInfo
    .map((part) => part.replace(/[<>&]/g, ''))
    .join(' ')}</body></html>`;
  return (
    `HTTP/1.1 500 ${reason}\r\nConnection: close\r\nCache-Control: no-cache\r\n` +
    `Content-Type: text/html\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** What a failed qcow2 import leaves on the socket after its 200: a 400 response, then the 500 page. */
export function qcow2ImportFailureResponses(errorInfo: readonly string[]): string {
  const body = '<html><body><h1>HTTP 400 bad request</h1>The HTTP request was malformed.</body></html>';
  return (
    'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nCache-Control: no-cache\r\n' +
    `Content-Type: text/html\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` +
    errorResponseInBody(errorInfo, 'Internal Error')
  );
}

/** Writes with back-pressure; rejects if the socket closes or stays blocked past `stallTimeoutMs`. */
export async function writeToSocket(
  socket: Socket,
  bytes: Uint8Array | string,
  stallTimeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  if (socket.destroyed || !socket.writable) throw new PeerGone();
  if (socket.write(bytes)) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(new ReaderStalled()), stallTimeoutMs);
    const onDrain = (): void => finish();
    const onClose = (): void => finish(new PeerGone());
    const onAbort = (): void => finish(new TransferCancelled());
    function finish(error?: Error): void {
      clearTimeout(timer);
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      socket.off('error', onClose);
      signal.removeEventListener('abort', onAbort);
      if (error === undefined) resolve();
      else reject(error);
    }
    socket.on('drain', onDrain);
    socket.on('close', onClose);
    socket.on('error', onClose);
    signal.addEventListener('abort', onAbort);
  });
}

/** The client closed the connection. */
export class PeerGone extends Error {
  constructor() {
    super('the client closed the connection');
  }
}

/** The client stopped reading for longer than the host tolerates. */
export class ReaderStalled extends Error {
  constructor() {
    super('the client stopped reading');
  }
}

export class TransferCancelled extends Error {
  constructor() {
    super('task cancelled');
  }
}
