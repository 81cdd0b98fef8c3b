import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { parseVhd, VHD_BLOCK_SIZE, type VhdSummary } from '../../lambdas/vhd/index.ts';

export interface StoredVhd {
  readonly summary: VhdSummary;
  /** Present block index → its data. */
  readonly blocks: Map<number, Buffer>;
}

/** Streams an object from S3 through our parser (small test disks only: it keeps every block). */
export async function readStoredVhd(s3: S3Client, bucket: string, key: string): Promise<StoredVhd> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const blocks = new Map<number, Buffer>();
  const parser = parseVhd(object.Body as Readable);
  for (;;) {
    const next = await parser.next();
    if (next.done) return { summary: next.value, blocks };
    blocks.set(next.value.index, Buffer.from(next.value.data));
  }
}

export function blockIndexesTouched(offset: number, length: number): number[] {
  const first = Math.floor(offset / VHD_BLOCK_SIZE);
  const last = Math.floor((offset + length - 1) / VHD_BLOCK_SIZE);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
