import { VhdStreamParser } from './parser.ts';
import type { VhdStreamParserOptions } from './parser.ts';
import type { VhdBlock, VhdSummary } from './types.ts';

/** Async-generator convenience over any byte source (Readable, undici body, ...). Returns the summary. */
export async function* parseVhd(
  source: AsyncIterable<Uint8Array>,
  options?: VhdStreamParserOptions,
): AsyncGenerator<VhdBlock, VhdSummary, void> {
  const parser = new VhdStreamParser(options);
  for await (const chunk of source) {
    if (!(chunk instanceof Uint8Array))
      throw new TypeError('parseVhd needs a byte stream, got a string or object');
    yield* parser.write(chunk);
  }
  return parser.end();
}
