import type { RangeReader } from '../vhd/index.ts';
import { ClusterBitmap } from './bitmap.ts';
import { CLUSTER_SIZE } from './constants.ts';
import type { Qcow2ClusterMap } from './cluster-map.ts';
import type { SparseClusterSource } from './types.ts';

/** One stored layer of a chain: its cluster map and a ranged reader of its object. */
export interface Qcow2ChainLayer {
  readonly map: Qcow2ClusterMap;
  readonly read: RangeReader;
}

export interface MergedClusterSource extends SparseClusterSource {
  readonly presentClusters: ClusterBitmap;
  /** Position in `layers` of the layer that provides a cluster; -1 when none holds it. */
  layerOf(index: number): number;
}

/**
 * One disk made of a chain, oldest (the full) first: each present cluster comes from the newest layer that
 * holds it, whatever its bytes (a cluster a delta carries as zeros was written as zeros). The size is the
 * newest layer's; an older layer may not be larger (a VDI never shrinks). Clusters are fetched on demand,
 * a run of up to `readAhead` clusters contiguous in one layer per ranged read. Memory: one bit per cluster
 * per layer plus one for the merge, and one run.
 */
export function mergeQcow2Layers(
  layers: readonly Qcow2ChainLayer[],
  options: { readonly readAhead?: number } = {},
): MergedClusterSource {
  const newest = layers.at(-1);
  if (newest === undefined) throw new RangeError('a chain needs at least one layer');
  const virtualSize = newest.map.virtualSize;
  const present = new ClusterBitmap(newest.map.clusterCount);
  layers.forEach(({ map }, position) => {
    if (map.virtualSize > virtualSize) {
      throw new RangeError(
        `layer ${position} has ${map.virtualSize} bytes, more than the newest layer's ${virtualSize}`,
      );
    }
    present.or(map.presentClusters);
  });
  present.freeze();
  const readAhead = Math.max(1, options.readAhead ?? 64);

  const layerOf = (index: number): number => {
    for (let position = layers.length - 1; position >= 0; position--) {
      if (layers[position]!.map.presentClusters.has(index)) return position;
    }
    return -1;
  };
  let run: { position: number; first: number; count: number; bytes: Promise<Uint8Array> } | undefined;

  return {
    virtualSize,
    presentClusters: present,
    layerOf,
    async readCluster(index) {
      const position = layerOf(index);
      if (position < 0) throw new RangeError(`no layer holds cluster ${index}`);
      const inRun = run?.position === position && index >= run.first && index < run.first + run.count;
      if (!inRun) {
        const { map, read } = layers[position]!;
        let count = 1;
        while (count < readAhead && layerOf(index + count) === position) count += 1;
        run = { position, first: index, count, bytes: read(map.clusterOffset(index)!, count * CLUSTER_SIZE) };
      }
      const { first, bytes } = run!;
      const offset = (index - first) * CLUSTER_SIZE;
      return (await bytes).subarray(offset, offset + CLUSTER_SIZE);
    },
  };
}
