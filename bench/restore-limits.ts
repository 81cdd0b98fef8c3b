import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { importIntoVdi } from '../lambdas/restore/import-vdi.ts';
import { VHD_BLOCK_SIZE, writeVhd } from '../lambdas/vhd/index.ts';
import { XapiSession } from '../lambdas/xapi/index.ts';
import type { XapiSimulator } from '../world/xapi-simulator/index.ts';
import type { Measured } from './export-limits.ts';

/**
 * The restore's read limit: each object GET whole from S3, one after the other as a replay reads its
 * layers, and discarded. Timed from the first request to the last byte.
 */
export async function measureS3ReadLimit(
  s3: S3Client,
  bucket: string,
  keys: readonly string[],
): Promise<Measured> {
  const started = performance.now();
  let bytes = 0;
  for (const key of keys) {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    for await (const chunk of object.Body as AsyncIterable<Uint8Array>) bytes += chunk.length;
  }
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

/**
 * The restore's write limit: a VHD of about `bytes` made in memory (every block one random 2 MiB buffer,
 * so producing it costs nothing) PUT into a new VDI of the simulator with our import client, under a
 * task, as an import step does. Timed from the task's creation to its success; the VDI is then removed.
 */
export async function measureHostWriteLimit(sim: XapiSimulator, bytes: number): Promise<Measured> {
  const blocks = Math.max(1, Math.round(bytes / (VHD_BLOCK_SIZE + 512)));
  const vdi = sim.addVdi({
    virtualSize: blocks * VHD_BLOCK_SIZE,
    nameLabel: 'bench write limit',
    srUuid: sim.srs.shared.uuid,
  });
  const block = randomBytes(VHD_BLOCK_SIZE);
  const image = writeVhd(
    {
      virtualSize: blocks * VHD_BLOCK_SIZE,
      blockIndexes: Array.from({ length: blocks }, (_, i) => i),
      readBlock: () => block,
    },
    { diskType: 'dynamic' },
  );
  const session = await XapiSession.login(
    { url: sim.url },
    { username: sim.username, password: sim.password },
  );
  try {
    const vdiRef = await session.getVdiByUuid(vdi.uuid);
    const started = performance.now();
    const taskRef = await session.createTask('vdi-vault bench write limit');
    try {
      await importIntoVdi(session, {
        vdiRef,
        taskRef,
        body: Readable.from(image.stream, { objectMode: false }),
        contentLength: image.byteLength,
      });
      return { bytes: image.byteLength, seconds: (performance.now() - started) / 1000 };
    } finally {
      await session.destroyTask(taskRef);
    }
  } finally {
    await session.logout();
    sim.deleteVdi(vdi.uuid);
  }
}
