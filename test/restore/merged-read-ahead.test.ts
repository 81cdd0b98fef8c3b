/**
 * The merged restore's reads, at the edge where they leave: an S3 client that serves each layer's bytes
 * from memory after a delay, and records every ranged GET and how many were in flight. The end-to-end
 * merges (restore-workflow, long-chain) prove the restored disks bit-exact through Swift and the host.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { RestoreLayer } from '../../lambdas/restore/chain.ts';
import { mergedBlockSource } from '../../lambdas/restore/merged-source.ts';
import { VHD_BLOCK_SIZE, writeVhd } from '../../lambdas/vhd/index.ts';

const BLOCK = VHD_BLOCK_SIZE;
const REGION = BLOCK + 512; // a block's sector bitmap and its data, as they lie in the file

/** A layer as the host exports it: the given blocks, each filled with a tag byte. */
async function layerImage(virtualSize: number, blocks: ReadonlyMap<number, number>): Promise<Buffer> {
  const image = writeVhd(
    {
      virtualSize,
      blockIndexes: [...blocks.keys()],
      readBlock: (index) => Buffer.alloc(BLOCK, blocks.get(index)),
    },
    { diskType: 'dynamic' },
  );
  const chunks: Uint8Array[] = [];
  for await (const chunk of image.stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

interface Get {
  readonly key: string;
  readonly start: number;
  readonly length: number;
}

function recordingS3(objects: ReadonlyMap<string, Buffer>) {
  const gets: Get[] = [];
  let inFlight = 0;
  let inFlightBytes = 0;
  const peak = { requests: 0, bytes: 0 };
  const client = {
    async send(command: { input: { Key: string; Range: string } }) {
      const [, first, last] = /^bytes=(\d+)-(\d+)$/.exec(command.input.Range)!;
      const start = Number(first);
      const length = Number(last) - start + 1;
      gets.push({ key: command.input.Key, start, length });
      inFlight++;
      inFlightBytes += length;
      peak.requests = Math.max(peak.requests, inFlight);
      peak.bytes = Math.max(peak.bytes, inFlightBytes);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      inFlightBytes -= length;
      const bytes = objects.get(command.input.Key)!.subarray(start, start + length);
      return { Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    },
  };
  return { client: client as unknown as S3Client, gets, peak };
}

describe('merged restore reads', () => {
  const virtualSize = 12 * BLOCK;
  // The full holds blocks 0–9 back to back; the delta rewrote 3 and 4 and added 11.
  const full = new Map(Array.from({ length: 10 }, (_, index) => [index, 0x10 + index]));
  const delta = new Map([
    [3, 0xd3],
    [4, 0xd4],
    [11, 0xdb],
  ]);
  const expected = new Map([...full, ...delta]);

  async function chain() {
    const objects = new Map([
      ['full.vhd', await layerImage(virtualSize, full)],
      ['delta.vhd', await layerImage(virtualSize, delta)],
    ]);
    const layers: RestoreLayer[] = [...objects].map(([objectKey, bytes], index) => ({
      backupId: objectKey.replace('.vhd', ''),
      kind: index === 0 ? 'full' : 'delta',
      format: 'vhd',
      objectKey,
      bytes: bytes.length,
      sha256: '',
    }));
    return { objects, layers };
  }

  it('joins a layer’s adjacent blocks into one ranged GET, keeps several in flight within the read-ahead, and hands out each block’s newest data', async () => {
    const { objects, layers } = await chain();
    const s3 = recordingS3(objects);
    const readAhead = { bytes: 5 * REGION, runBytes: 2 * REGION };
    const source = await mergedBlockSource(s3.client, 'bucket', layers, readAhead);
    expect(source.blockIndexes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
    const mapReads = s3.gets.length;
    expect(mapReads).toBe(4); // two per layer: its head and its BAT

    for (const index of source.blockIndexes) {
      const data = await source.readBlock(index);
      expect(data.length).toBe(BLOCK);
      expect(
        data.every((byte) => byte === expected.get(index)),
        `block ${index}`,
      ).toBe(true);
    }
    const blockGets = s3.gets.slice(mapReads);
    // Runs of at most 2 blocks of one layer that lie back to back: full 0–1, 2; delta 3–4; full 5–6, 7–8,
    // 9; delta 11.
    expect(blockGets.map((get) => `${get.key}:${get.length / REGION}`)).toEqual([
      'full.vhd:2',
      'full.vhd:1',
      'delta.vhd:2',
      'full.vhd:2',
      'full.vhd:2',
      'full.vhd:1',
      'delta.vhd:1',
    ]);
    expect(blockGets.reduce((sum, get) => sum + get.length, 0)).toBe(11 * REGION);
    expect(s3.peak.requests).toBeGreaterThanOrEqual(2);
    expect(s3.peak.bytes).toBeLessThanOrEqual(readAhead.bytes);
  });

  it('reads the block maps of many layers several at a time', async () => {
    const { objects, layers } = await chain();
    const many = Array.from({ length: 40 }, (_, index) => layers[index === 0 ? 0 : 1]!);
    const s3 = recordingS3(objects);
    await mergedBlockSource(s3.client, 'bucket', many);
    expect(s3.gets).toHaveLength(80);
    expect(s3.peak.requests).toBeGreaterThan(1);
  });

  it('refuses a block read out of the writer’s order, and a GET that failed ahead fails its block', async () => {
    const { objects, layers } = await chain();
    const source = await mergedBlockSource(recordingS3(objects).client, 'bucket', layers);
    await expect(source.readBlock(5)).rejects.toThrow(/block 5 read out of order/);

    const broken = recordingS3(new Map([...objects].map(([key, bytes]) => [key, Buffer.from(bytes)])));
    const failing = {
      send: async (command: { input: { Key: string; Range: string } }) => {
        const range = /^bytes=(\d+)-/.exec(command.input.Range)!;
        // The full's second run (block 2) fails; the first (blocks 0-1) is fine.
        if (command.input.Key === 'full.vhd' && Number(range[1]) > 2 * REGION) {
          throw new Error('connection reset');
        }
        return broken.client.send(command as never);
      },
    } as unknown as S3Client;
    const merged = await mergedBlockSource(failing, 'bucket', layers, {
      bytes: 4 * REGION,
      runBytes: 2 * REGION,
    });
    await expect(merged.readBlock(0)).resolves.toHaveLength(BLOCK);
    await expect(merged.readBlock(1)).resolves.toHaveLength(BLOCK);
    await expect(merged.readBlock(2)).rejects.toThrow(/connection reset/);
  });
});
