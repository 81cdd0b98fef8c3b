import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';

/** A forward-only push parser: fed chunk by chunk, `end()` throws unless the stream was complete. */
export interface PushParser<Summary> {
  write(chunk: Uint8Array): unknown;
  end(): Summary;
}

/**
 * Passes bytes through unchanged once the parser accepted them; errors with the parser's first error (in
 * `_transform`, or in `_flush` when the stream ends short). The disk codecs' validators are this with their
 * parser in validate-only mode.
 */
export class ValidatingTransform<Summary> extends Transform {
  readonly #parser: PushParser<Summary>;
  readonly #what: string;
  #summary: Summary | undefined;

  constructor(parser: PushParser<Summary>, what: string) {
    super();
    this.#parser = parser;
    this.#what = what;
  }

  /** Set once the stream ended with a complete image (before 'finish' and 'end'). */
  get summary(): Summary | undefined {
    return this.#summary;
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!(chunk instanceof Uint8Array)) {
      callback(new TypeError(`the ${this.#what} validator needs bytes, got a string or object`));
      return;
    }
    try {
      this.#parser.write(chunk);
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#summary = this.#parser.end();
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback();
  }
}
