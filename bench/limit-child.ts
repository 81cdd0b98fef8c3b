/**
 * One limit measurement in a fresh process, timed by the bench from spawn to exit as ours and the peer
 * are: `node bench/limit-child.ts`, its input (LimitInput) as JSON in VDI_VAULT_BENCH_LIMIT. Prints one
 * JSON line `{"bytes","seconds"}` (seconds: the transfer alone).
 */
import { createS3Client, type S3Endpoint } from '../lambdas/s3/client.ts';
import { measureSinkLimit, measureSourceLimit } from './export-limits.ts';

export type LimitInput =
  | {
      readonly kind: 'source';
      readonly xapi: { readonly url: string; readonly username: string; readonly password: string };
      readonly vdiUuid: string;
    }
  | {
      readonly kind: 'sink';
      readonly s3: S3Endpoint;
      readonly bucket: string;
      readonly key: string;
      readonly bytes: number;
      readonly partSize: number;
      readonly partsInFlight: number;
    };

const input = JSON.parse(process.env.VDI_VAULT_BENCH_LIMIT ?? '') as LimitInput;
if (input.kind === 'source') {
  process.stdout.write(`${JSON.stringify(await measureSourceLimit(input.xapi, input.vdiUuid))}\n`);
} else {
  const s3 = createS3Client(input.s3);
  const measured = await measureSinkLimit(
    s3,
    { bucket: input.bucket, key: input.key },
    input.bytes,
    input.partSize,
    input.partsInFlight,
  );
  s3.destroy();
  process.stdout.write(`${JSON.stringify(measured)}\n`);
}
