import { DEFAULT_STALL_TIMEOUT_MS } from '../runtime/defaults.ts';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { request } from './undici-parts.ts';
import { XapiHttpError, XapiNetworkError } from './errors.ts';
import { describeNetworkError } from './json-rpc.ts';
import type { Ref } from './records.ts';
import type { XapiSession } from './session.ts';

/** `qcow2` needs xapi 25.27.0 or later on the pool (`format=qcow2` is unknown before). */
export type TransferFormat = 'vhd' | 'qcow2' | 'raw';

export interface ExportRequest {
  readonly vdiRef: Ref;
  /** Export only the blocks that differ from this snapshot. */
  readonly baseRef?: Ref;
  /** Our task: the HTTP status says nothing about the outcome, this task does. */
  readonly taskRef: Ref;
  readonly format: TransferFormat;
  /** Fail when the host sends nothing for this long (it may also kill a stalled reader). Default 60 s. */
  readonly stallTimeoutMs?: number;
}

export interface OpenedTransfer {
  /** The body; it ends when the host closes the connection (no length is announced). */
  readonly body: Readable;
  /** The URL that finally answered (after redirects), without the session. */
  readonly host: string;
}

const MAX_REDIRECTS = 5;

/** `GET /export_raw_vdi`, following 302s to the host that can see the SR (the query travels along). */
export async function openExport(
  session: XapiSession,
  exportRequest: ExportRequest,
): Promise<OpenedTransfer> {
  const url = transferUrl(session, '/export_raw_vdi', {
    vdi: exportRequest.vdiRef,
    format: exportRequest.format,
    task_id: exportRequest.taskRef,
    ...(exportRequest.baseRef ? { base: exportRequest.baseRef } : {}),
  });
  const stall = exportRequest.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  const response = await requestFollowingRedirects(session.agent, url, { method: 'GET' }, stall);
  return { body: response.body, host: new URL(response.url).host };
}

export interface ImportRequest {
  readonly vdiRef: Ref;
  readonly taskRef: Ref;
  readonly format: TransferFormat;
  readonly body: Readable;
  /** Exact byte count: the host locates the trailing footer from it. */
  readonly contentLength: number;
  readonly stallTimeoutMs?: number;
}

/**
 * `PUT /import_raw_vdi`. A streamed body can't be replayed after a redirect, so an empty probe without our
 * task asks where the import must go first (the host answers a 302 before reading any body).
 */
export async function putImport(
  session: XapiSession,
  importRequest: ImportRequest,
): Promise<{ host: string }> {
  const query = { vdi: importRequest.vdiRef, format: importRequest.format };
  const stall = importRequest.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  const target = await resolveImportTarget(session, transferUrl(session, '/import_raw_vdi', query), stall);
  const url = new URL(target);
  url.searchParams.set('task_id', importRequest.taskRef);
  let response: Dispatcher.ResponseData;
  try {
    response = await request(url, {
      method: 'PUT',
      dispatcher: session.agent,
      headers: { 'content-length': String(importRequest.contentLength) },
      body: importRequest.body,
      headersTimeout: stall,
      bodyTimeout: stall,
    });
  } catch (error) {
    throw new XapiNetworkError(`import to ${url.host}: ${describeNetworkError(error)}`, redact(url), {
      cause: error,
    });
  }
  const text = await response.body.text().catch(() => '');
  if (response.statusCode !== 200) {
    throw new XapiHttpError(
      response.statusCode,
      redact(url),
      describeRefusal('import', response.statusCode, text),
    );
  }
  return { host: url.host };
}

async function resolveImportTarget(session: XapiSession, url: URL, stallMs: number): Promise<URL> {
  let current = url;
  for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(current, {
        method: 'PUT',
        dispatcher: session.agent,
        headers: { 'content-length': '0' },
        body: '',
        headersTimeout: stallMs,
        bodyTimeout: stallMs,
      });
    } catch (error) {
      throw new XapiNetworkError(
        `import probe to ${current.host}: ${describeNetworkError(error)}`,
        redact(current),
        {
          cause: error,
        },
      );
    }
    const text = await response.body.text().catch(() => '');
    const location = response.headers.location;
    if (isRedirect(response.statusCode) && typeof location === 'string') {
      current = new URL(location, current);
      continue;
    }
    // A refusal before the 200 (auth, RBAC, unknown VDI) would refuse the real import too: say so now.
    if (response.statusCode >= 400) {
      throw new XapiHttpError(
        response.statusCode,
        redact(current),
        describeRefusal('import', response.statusCode, text),
      );
    }
    return current;
  }
  throw new XapiNetworkError(`import: more than ${MAX_REDIRECTS} redirects`, redact(url));
}

async function requestFollowingRedirects(
  dispatcher: Dispatcher,
  url: URL,
  options: { method: 'GET' },
  stallMs: number,
): Promise<{ body: Readable; url: URL }> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(current, {
        ...options,
        dispatcher,
        headersTimeout: stallMs,
        bodyTimeout: stallMs,
      });
    } catch (error) {
      throw new XapiNetworkError(
        `export from ${current.host}: ${describeNetworkError(error)}`,
        redact(current),
        {
          cause: error,
        },
      );
    }
    const location = response.headers.location;
    if (isRedirect(response.statusCode) && typeof location === 'string') {
      await response.body.dump();
      current = new URL(location, current);
      continue;
    }
    if (response.statusCode !== 200) {
      const text = await response.body.text().catch(() => '');
      throw new XapiHttpError(
        response.statusCode,
        redact(current),
        describeRefusal('export', response.statusCode, text),
      );
    }
    return { body: response.body, url: current };
  }
  throw new XapiNetworkError(`export: more than ${MAX_REDIRECTS} redirects`, redact(url));
}

function transferUrl(session: XapiSession, path: string, query: Record<string, string>): URL {
  const url = new URL(path, session.masterUrl);
  url.searchParams.set('session_id', session.sessionRef);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  return url;
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function describeRefusal(what: string, status: number, body: string): string {
  const reason =
    status === 401
      ? 'the host refused the session (expired or logged out) or the credentials'
      : status === 403
        ? 'the account lacks the permission (RBAC) for this transfer'
        : status === 404
          ? 'the host does not serve this transfer'
          : 'the host refused the transfer';
  const detail = body.trim().split('\n')[0]?.slice(0, 200);
  return `${what}: ${reason}${detail ? `: ${detail}` : ''}`;
}

/** A URL fit for errors and logs: the session id never leaves this module. */
export function redact(url: URL): string {
  const copy = new URL(url);
  if (copy.searchParams.has('session_id')) copy.searchParams.set('session_id', '<redacted>');
  copy.username = '';
  copy.password = '';
  return copy.toString();
}
