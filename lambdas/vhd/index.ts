export {
  SECTOR_SIZE,
  VHD_BLOCK_SIZE,
  MAX_VIRTUAL_SIZE,
  MAX_TABLE_ENTRIES,
  MAX_BLOCK_SIZE,
  MAX_GAP_BYTES,
} from './constants.ts';
export type {
  SparseBlockSource,
  VhdBlock,
  VhdDiskType,
  VhdHeaderInfo,
  VhdSummary,
  VhdWriteOptions,
} from './types.ts';
export {
  HttpErrorInBody,
  VhdBatBoundsError,
  VhdBitmapNotFullError,
  VhdBlockOrderError,
  VhdBlockSizeError,
  VhdFooterChecksumError,
  VhdFooterCookieError,
  VhdFooterMismatchError,
  VhdFormatError,
  VhdHeaderChecksumError,
  VhdHeaderCookieError,
  VhdLimitError,
  VhdTrailingDataError,
  VhdTruncatedError,
  VhdUnsupportedError,
} from './errors.ts';
export { vhdByteLength } from './layout.ts';
export { vhdHead, writeVhd } from './writer.ts';
export { VhdStreamParser, bitmapMarksEverySector, firstUnmarkedBitmapByte } from './parser.ts';
export type { VhdStreamParserOptions } from './parser.ts';
export { parseVhd } from './parse-vhd.ts';
export { createVhdValidator, VhdValidator } from './validator.ts';
export { readVhdBlockMap } from './block-map.ts';
export type { RangeReader, VhdBlockMap } from './block-map.ts';
