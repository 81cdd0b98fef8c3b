import { Qcow2HttpErrorInBody } from './errors.ts';

const STATUS_LINE = /HTTP\/1\.[01] \d{3}[^\r\n]{0,200}/;
const PREFIX = 'HTTP/1.';

/** The first HTTP status line in `bytes` (at stream offset `start`) as an error, or undefined. */
export function statusLineIn(bytes: Uint8Array, start: number): Qcow2HttpErrorInBody | undefined {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const match = STATUS_LINE.exec(text);
  return match === null ? undefined : new Qcow2HttpErrorInBody(match[0], start + match.index);
}

/** Whether `bytes` may still grow into a status line: a prefix of "HTTP/1." or longer and starting so. */
export function mayBeStatusLine(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, PREFIX.length));
  return head.toString('latin1') === PREFIX.slice(0, head.length);
}
