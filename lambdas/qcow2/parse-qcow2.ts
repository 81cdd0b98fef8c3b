import { Qcow2StreamParser } from './parser.ts';
import type { Qcow2StreamParserOptions } from './parser.ts';
import type { Qcow2Cluster, Qcow2Summary } from './types.ts';

/** Async-generator convenience over any byte source (Readable, undici body, ...). Returns the summary. */
export async function* parseQcow2(
  source: AsyncIterable<Uint8Array>,
  options?: Qcow2StreamParserOptions,
): AsyncGenerator<Qcow2Cluster, Qcow2Summary, void> {
  const parser = new Qcow2StreamParser(options);
  for await (const chunk of source) {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError('parseQcow2 needs a byte stream, got a string or object');
    }
    yield* parser.write(chunk);
  }
  return parser.end();
}
