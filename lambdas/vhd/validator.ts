import { ValidatingTransform } from '../shared/validating-transform.ts';
import { VhdStreamParser } from './parser.ts';
import type { VhdStreamParserOptions } from './parser.ts';
import type { VhdSummary } from './types.ts';

/**
 * Passes bytes through unchanged once they are validated; errors with the first VhdFormatError. Host exports
 * carry full sector bitmaps, so by default a bitmap lacking a bit fails (VhdBitmapNotFullError).
 */
export class VhdValidator extends ValidatingTransform<VhdSummary> {
  constructor(options: Pick<VhdStreamParserOptions, 'requireFullBitmap'> = {}) {
    super(new VhdStreamParser({ ...options, keepBlockData: false }), 'VHD');
  }
}

/** Pass-through Transform that validates as bytes pass; `summary` is set after 'finish'/'end'. */
export function createVhdValidator(
  options?: Pick<VhdStreamParserOptions, 'requireFullBitmap'>,
): VhdValidator {
  return new VhdValidator(options);
}
