import { ValidatingTransform } from '../shared/validating-transform.ts';
import { Qcow2StreamParser } from './parser.ts';
import type { Qcow2Summary } from './types.ts';

/**
 * Passes bytes through unchanged once they are validated; errors with the first Qcow2FormatError (an
 * appended 500 page included). `virtualSize`, the VDI's, is required: qcow2 has no checksum, so only the
 * size the VDI has tells a damaged size field from a disk of another size.
 */
export class Qcow2Validator extends ValidatingTransform<Qcow2Summary> {
  constructor(options: { readonly virtualSize: number }) {
    super(new Qcow2StreamParser({ keepClusterData: false, virtualSize: options.virtualSize }), 'qcow2');
  }
}

/** Pass-through Transform that validates as bytes pass; `summary` is set after 'finish'/'end'. */
export function createQcow2Validator(options: { readonly virtualSize: number }): Qcow2Validator {
  return new Qcow2Validator(options);
}
