import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { VhdStreamParser } from './parser.ts';
import type { VhdStreamParserOptions } from './parser.ts';
import type { VhdSummary } from './types.ts';

/**
 * Passes bytes through unchanged once they are validated; errors with the first VhdFormatError. Host exports
 * carry full sector bitmaps, so by default a bitmap lacking a bit fails (VhdBitmapNotFullError).
 */
export class VhdValidator extends Transform {
  readonly #parser: VhdStreamParser;
  #summary: VhdSummary | undefined;

  constructor(options: Pick<VhdStreamParserOptions, 'requireFullBitmap'> = {}) {
    super();
    this.#parser = new VhdStreamParser({ ...options, keepBlockData: false });
  }

  /** Set once the stream ended with a complete VHD (before 'finish' and 'end'). */
  get summary(): VhdSummary | undefined {
    return this.#summary;
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!(chunk instanceof Uint8Array)) {
      callback(new TypeError('the VHD validator needs bytes, got a string or object'));
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

/** Pass-through Transform that validates as bytes pass; `summary` is set after 'finish'/'end'. */
export function createVhdValidator(
  options?: Pick<VhdStreamParserOptions, 'requireFullBitmap'>,
): VhdValidator {
  return new VhdValidator(options);
}
