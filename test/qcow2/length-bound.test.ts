/**
 * The length a qcow2 stream of the host's layout can have, read from its header and refcount table: the
 * export sizes its parts from it, so it must never be below the stream's length, and it stays within
 * one refcount block (2 GiB) of it whatever the disk's size.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BYTES_PER_REFCOUNT_BLOCK,
  CLUSTER_SIZE,
  ClusterBitmap,
  qcow2LengthBound,
  writeQcow2,
} from '../../lambdas/qcow2/index.ts';

const GiB = 1024 ** 3;
const TiB = 1024 * GiB;

/** The first `clusters` clusters of the host's layout for these present clusters, and its length. */
async function prefixOf(virtualSize: number, present: Iterable<number>, clusters: number) {
  const zeros = new Uint8Array(CLUSTER_SIZE);
  const written = writeQcow2({ virtualSize, presentClusters: present, readCluster: () => zeros });
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of written.stream) {
    chunks.push(chunk);
    length += chunk.length;
    if (length >= clusters * CLUSTER_SIZE) break;
  }
  return {
    prefix: Buffer.concat(chunks).subarray(0, clusters * CLUSTER_SIZE),
    byteLength: written.byteLength,
  };
}

describe('qcow2 length bound', () => {
  it('asks for the header, then for the refcount table the header names', async () => {
    const { prefix } = await prefixOf(GiB, [0, 1, 2], 4);
    expect(qcow2LengthBound(prefix.subarray(0, 100))).toEqual({
      kind: 'needMore',
      bytesNeeded: CLUSTER_SIZE,
    });
    expect(qcow2LengthBound(prefix.subarray(0, CLUSTER_SIZE))).toEqual({
      kind: 'needMore',
      bytesNeeded: 2 * CLUSTER_SIZE,
    });
    expect(qcow2LengthBound(prefix.subarray(0, 2 * CLUSTER_SIZE))).toEqual({
      kind: 'bound',
      bound: BYTES_PER_REFCOUNT_BLOCK,
    });
  });

  it('bounds a sparse 3 TiB disk by one refcount block and a fully allocated 200 GiB disk within 2 GiB', async () => {
    const sparse = await prefixOf(3 * TiB, [0, 7, (2 * TiB) / CLUSTER_SIZE], 2);
    expect(qcow2LengthBound(sparse.prefix)).toEqual({ kind: 'bound', bound: 2 * GiB });
    expect(sparse.byteLength).toBeLessThan(2 * GiB);

    const size = 200 * GiB; // 101 refcount blocks
    const all = new ClusterBitmap(size / CLUSTER_SIZE);
    for (let i = 0; i < size / CLUSTER_SIZE; i++) all.set(i);
    const full = await prefixOf(size, all, 3);
    const found = qcow2LengthBound(full.prefix);
    expect(found.kind).toBe('bound');
    const bound = (found as { bound: number }).bound;
    expect(bound).toBeGreaterThanOrEqual(full.byteLength);
    expect(bound - full.byteLength).toBeLessThan(BYTES_PER_REFCOUNT_BLOCK);
    expect(bound).toBe(101 * BYTES_PER_REFCOUNT_BLOCK);
  });

  it('is never below the length and within 2 GiB of it, for any disk and allocation', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: (64 * TiB) / CLUSTER_SIZE / 4 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 20 }), { maxLength: 40 }),
        async (clusters, picks) => {
          const present = [...new Set(picks.map((p) => p % clusters))].sort((a, b) => a - b);
          const { prefix, byteLength } = await prefixOf(clusters * CLUSTER_SIZE, present, 4);
          const found = qcow2LengthBound(prefix);
          expect(found.kind).toBe('bound');
          const bound = (found as { bound: number }).bound;
          expect(bound).toBeGreaterThanOrEqual(byteLength);
          expect(bound - byteLength).toBeLessThan(BYTES_PER_REFCOUNT_BLOCK);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('leaves a prefix the layout does not explain to the parser', async () => {
    const { prefix } = await prefixOf(GiB, [0], 2);
    const badMagic = Buffer.from(prefix);
    badMagic[0] = 0;
    expect(qcow2LengthBound(badMagic)).toEqual({ kind: 'unknown' });
    const noBlocks = Buffer.from(prefix);
    noBlocks.fill(0, CLUSTER_SIZE);
    expect(qcow2LengthBound(noBlocks)).toEqual({ kind: 'unknown' });
    expect(
      qcow2LengthBound(Buffer.from('HTTP/1.1 500 Internal Server Error\r\n\r\n'.padEnd(CLUSTER_SIZE))),
    ).toEqual({
      kind: 'unknown',
    });
  });
});
