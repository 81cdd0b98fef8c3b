import { VhdStreamParser } from '../../lambdas/vhd/index.ts';
import type { VhdBlock, VhdStreamParserOptions, VhdSummary } from '../../lambdas/vhd/index.ts';

export interface ParseResult {
  readonly blocks: VhdBlock[];
  readonly summary: VhdSummary;
}

/** Runs the push parser over the given chunks and ends it; throws what the parser throws. */
export function parseChunks(chunks: Iterable<Uint8Array>, options?: VhdStreamParserOptions): ParseResult {
  const parser = new VhdStreamParser(options);
  const blocks: VhdBlock[] = [];
  for (const chunk of chunks) blocks.push(...parser.write(chunk));
  return { blocks, summary: parser.end() };
}

/** The error the parser throws on these chunks, or undefined when they parse. */
export function parseError(chunks: Iterable<Uint8Array>): unknown {
  try {
    parseChunks(chunks, { keepBlockData: false });
    return undefined;
  } catch (error) {
    return error;
  }
}
