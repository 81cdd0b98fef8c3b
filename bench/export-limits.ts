import type { S3Client } from '@aws-sdk/client-s3';
import { uploadStream } from '../lambdas/s3/stream-upload.ts';
import { randomBytes } from 'node:crypto';
import { vhdContentDigest } from './content.ts';
import { Readable } from 'node:stream';
import { openExport, XapiSession } from '../lambdas/xapi/index.ts';

export interface Measured {
  readonly bytes: number;
  readonly seconds: number;
}

/**
 * The source's limit: `GET /export_raw_vdi?format=vhd` read with the same client our pipeline uses, and
 * discarded. Timed from the request to the task's outcome, as ours is.
 */
export async function measureSourceLimit(
  xapi: { readonly url: string; readonly username: string; readonly password: string },
  vdiUuid: string,
): Promise<Measured> {
  let started = performance.now();
  const { bytes } = await readSourceExport(
    xapi,
    vdiUuid,
    () => undefined,
    () => (started = performance.now()),
  );
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

/**
 * The host's export stream of `vdiUuid` once, not timed: its length and vhdContentDigest, what every run
 * must store (the footers' identity fields aside, which differ per export).
 */
export async function digestSourceExport(
  xapi: { readonly url: string; readonly username: string; readonly password: string },
  vdiUuid: string,
  length: number,
): Promise<{ readonly bytes: number; readonly digest: string }> {
  const digest = vhdContentDigest(length);
  const { bytes } = await readSourceExport(xapi, vdiUuid, (chunk) => digest.update(chunk));
  return { bytes, digest: digest.digest() };
}

/** Logs in, reads the export of `vdiUuid` to its task's success, logs out; `onOpen` marks the request. */
async function readSourceExport(
  xapi: { readonly url: string; readonly username: string; readonly password: string },
  vdiUuid: string,
  onChunk: (chunk: Buffer) => void,
  onOpen: () => void = () => undefined,
): Promise<{ readonly bytes: number }> {
  const session = await XapiSession.login({ url: xapi.url }, xapi);
  try {
    const vdiRef = await session.getVdiByUuid(vdiUuid);
    const taskRef = await session.createTask('vdi-vault bench source');
    try {
      onOpen();
      const opened = await openExport(session, { vdiRef, taskRef, format: 'vhd' });
      let bytes = 0;
      for await (const chunk of opened.body) {
        bytes += (chunk as Buffer).length;
        onChunk(chunk as Buffer);
      }
      const task = await session.awaitTask(taskRef);
      if (task.status !== 'success') throw new Error(`the source export ended ${task.status}`);
      return { bytes };
    } finally {
      await session.destroyTask(taskRef);
    }
  } finally {
    await session.logout();
  }
}

/**
 * The sink's limit: `bytes` from memory into one multipart upload with our uploader, part size and parts
 * in flight. The body hands out 1 MiB views of one random buffer, so producing it costs nothing.
 */
export async function measureSinkLimit(
  s3: S3Client,
  target: { readonly bucket: string; readonly key: string },
  bytes: number,
  partSize: number,
  partsInFlight: number,
): Promise<Measured> {
  const source = randomBytes(16 * 1024 * 1024);
  const chunk = 1024 * 1024;
  function* body(): Generator<Buffer> {
    for (let sent = 0; sent < bytes; sent += chunk) {
      const offset = sent % source.length;
      yield source.subarray(offset, offset + Math.min(chunk, bytes - sent));
    }
  }
  const started = performance.now();
  await uploadStream({
    s3,
    bucket: target.bucket,
    key: target.key,
    body: Readable.from(body(), { objectMode: false }),
    partSize,
    partsInFlight,
  });
  return { bytes, seconds: (performance.now() - started) / 1000 };
}
