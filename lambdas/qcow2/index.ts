export { CLUSTER_SIZE, MAX_VIRTUAL_SIZE } from './constants.ts';
export { ClusterBitmap } from './bitmap.ts';
export type { Qcow2Cluster, Qcow2HeaderInfo, Qcow2Summary, SparseClusterSource } from './types.ts';
export {
  Qcow2DataOrderError,
  Qcow2ExtensionError,
  Qcow2FormatError,
  Qcow2HeaderError,
  Qcow2HttpErrorInBody,
  Qcow2L2OrderError,
  Qcow2LimitError,
  Qcow2MagicError,
  Qcow2RefcountError,
  Qcow2SizeMismatchError,
  Qcow2TableEntryError,
  Qcow2TrailingDataError,
  Qcow2TruncatedError,
} from './errors.ts';
export { qcow2ByteLength, qcow2FullyAllocatedByteLength, qcow2Layout, refcountClusters } from './layout.ts';
export type { Qcow2Layout } from './layout.ts';
export { writeQcow2 } from './writer.ts';
export { Qcow2StreamParser } from './parser.ts';
export type { Qcow2StreamParserOptions } from './parser.ts';
export { parseQcow2 } from './parse-qcow2.ts';
export { readQcow2ClusterMap } from './cluster-map.ts';
export type { Qcow2ClusterMap } from './cluster-map.ts';
export { mergeQcow2Layers } from './merge.ts';
export type { MergedClusterSource, Qcow2ChainLayer } from './merge.ts';
export { createQcow2Validator, Qcow2Validator } from './validator.ts';
export { readQcow2VirtualSize } from './image-size.ts';
export { qcow2LengthBound, BYTES_PER_REFCOUNT_BLOCK } from './length-bound.ts';
