/**
 * One restore's data path in a fresh process, for peak RSS: `node bench/restore-child.ts`, its input
 * (RestoreChildInput) as JSON in VDI_VAULT_BENCH_RESTORE. A new VDI in the simulator process gets the
 * chain either layer by layer (replay: each object streamed from S3 through sha256 into an import PUT)
 * or as one merged stream (merge: the layers' block maps, ranged reads with read-ahead, the VHD writer,
 * one PUT): the same functions the import steps call, without the workflow around them. The VDI is
 * destroyed at the end. Prints one JSON line: bytes sent, seconds and the sampled resources.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RestoreLayer } from '../lambdas/restore/chain.ts';
import { importIntoVdi } from '../lambdas/restore/import-vdi.ts';
import { mergedBlockSource } from '../lambdas/restore/merged-source.ts';
import { createS3Client, type S3Endpoint } from '../lambdas/s3/client.ts';
import { writeVhd } from '../lambdas/vhd/index.ts';
import { XapiSession } from '../lambdas/xapi/index.ts';
import { startResourceSampler } from './sampler.ts';

export interface RestoreChildInput {
  readonly xapi: { readonly url: string; readonly username: string; readonly password: string };
  readonly srUuid: string;
  readonly s3: S3Endpoint;
  readonly bucket: string;
  /** Oldest first, a full then its deltas (vhd). */
  readonly layers: readonly RestoreLayer[];
  readonly virtualSize: number;
  readonly strategy: 'replay' | 'merge';
}

const sampler = startResourceSampler();
const input = JSON.parse(process.env.VDI_VAULT_BENCH_RESTORE ?? '') as RestoreChildInput;
const s3 = createS3Client(input.s3);
const session = await XapiSession.login({ url: input.xapi.url }, input.xapi);
const started = performance.now();
let bytes = 0;
const vdiRef = await session.createVdi({
  name_label: `bench memory ${input.strategy}`,
  name_description: '',
  SR: await session.getSrByUuid(input.srUuid),
  virtual_size: input.virtualSize,
  type: 'user',
  sharable: false,
  read_only: false,
  other_config: {},
});
try {
  const put = async (body: Readable, contentLength: number) => {
    const taskRef = await session.createTask(`vdi-vault bench ${input.strategy}`);
    try {
      await importIntoVdi(session, { vdiRef, taskRef, body, contentLength });
      bytes += contentLength;
    } finally {
      await session.destroyTask(taskRef);
    }
  };
  if (input.strategy === 'replay') {
    for (const layer of input.layers) {
      const object = await s3.send(new GetObjectCommand({ Bucket: input.bucket, Key: layer.objectKey }));
      const hash = createHash('sha256');
      const hashed = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      const piped = pipeline(object.Body as Readable, hashed);
      await Promise.all([put(hashed, layer.bytes), piped]);
      if (hash.digest('hex') !== layer.sha256)
        throw new Error(`${layer.objectKey}: sha256 differs from its export's`);
    }
  } else {
    const merged = writeVhd(await mergedBlockSource(s3, input.bucket, input.layers), { diskType: 'dynamic' });
    await put(Readable.from(merged.stream, { objectMode: false }), merged.byteLength);
  }
} finally {
  await session.destroyVdi(vdiRef);
}
const seconds = (performance.now() - started) / 1000;
await session.logout();
s3.destroy();
process.stdout.write(`${JSON.stringify({ bytes, seconds, ...sampler.finish() })}\n`);
