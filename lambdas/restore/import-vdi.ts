import { DEFAULT_IMPORT_TASK_TIMEOUT_MS } from '../runtime/defaults.ts';
import { Readable } from 'node:stream';
import type { ImageFormat } from '../catalog/manifest.ts';
import { putImport, taskFailure, XapiError, type Ref, type XapiSession } from '../xapi/index.ts';

export interface ImportOptions {
  readonly vdiRef: Ref;
  /** A task of ours, created and destroyed by the caller (which can log in again to destroy it). */
  readonly taskRef: Ref;
  readonly body: Readable;
  /** The body's image format. Default vhd. */
  readonly format?: ImageFormat;
  /** Exact byte count of `body`. */
  readonly contentLength: number;
  /** How long the host may take to finish the task once the body is sent. Default 10 minutes. */
  readonly taskTimeoutMs?: number;
}

/** The host answered before it read the whole body: whatever its task says, the VDI may lack data. */
export class ImportIncompleteError extends Error {
  override readonly name = 'ImportIncompleteError';
}

/**
 * `PUT /import_raw_vdi?format=vhd|qcow2` under a task of ours: the HTTP status says nothing, the task does,
 * and only once every byte was sent (the qcow2 importer reports success for a body cut before its L2
 * tables, having written nothing). A failure names the host's code (and, when the stream broke, both).
 */
export async function importIntoVdi(session: XapiSession, options: ImportOptions): Promise<{ host: string }> {
  let sent: { host: string } | undefined;
  let sendError: unknown;
  let sentBytes = 0;
  // Counted as the host pulls it. A generator touches the body only once the PUT reads it, so a PUT refused
  // before its body (an expired session, a redirect probe) leaves the body whole for the retry.
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of options.body as AsyncIterable<Buffer>) {
      sentBytes += chunk.length;
      yield chunk;
    }
  }
  try {
    sent = await putImport(session, {
      vdiRef: options.vdiRef,
      taskRef: options.taskRef,
      format: options.format ?? 'vhd',
      body: Readable.from(counted(), { objectMode: false }),
      contentLength: options.contentLength,
    });
    if (sentBytes !== options.contentLength) {
      throw new ImportIncompleteError(
        `import: the host answered after ${sentBytes} of the image's ${options.contentLength} bytes; ` +
          `its task's outcome is not trusted for a partly sent image`,
      );
    }
  } catch (error) {
    sendError = error;
  }
  const task = await session
    .awaitTask(options.taskRef, sendError ? 5_000 : (options.taskTimeoutMs ?? DEFAULT_IMPORT_TASK_TIMEOUT_MS))
    .catch((error: unknown) => (sendError ? undefined : Promise.reject(error)));
  if (task && task.status !== 'success') {
    const failure = explainImportFailure(taskFailure(task, 'import'));
    if (sendError instanceof Error) failure.message += `; sending the body: ${sendError.message}`;
    throw failure;
  }
  if (sendError) throw sendError;
  return sent!;
}

/** Adds what an operator can do about the host's import failures we know. */
function explainImportFailure(error: XapiError): XapiError {
  if (error.code === 'VDI_IO_ERROR' && error.params.some((p) => /prezeroed/i.test(p))) {
    error.message +=
      ': this SR cannot take VHD imports (thick-provisioned); restore into a thin, VHD-based SR';
  } else if (error.code === 'VDI_TOO_LARGE') {
    error.message += ': the backup is larger than the VDI it is imported into';
  }
  return error;
}
