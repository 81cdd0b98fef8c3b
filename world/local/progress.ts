import { formatBytes, formatRate } from '../../cli/format.ts';

// The demo formats its own lines with these too; they are the product's (the CLI's), not the runner's.
export { formatBytes, formatRate };

/** A one-line transfer progress display for people: bytes, rate, elapsed. Silent when not on a TTY. */
export class TransferProgress {
  readonly #stream: NodeJS.WriteStream;
  readonly #label: string;
  readonly #started = Date.now();
  #lastDraw = 0;
  #bytes = 0;

  constructor(label: string, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#stream = stream;
  }

  update(bytes: number): void {
    this.#bytes = bytes;
    const now = Date.now();
    if (!this.#stream.isTTY || now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#stream.write(`\r${this.#line()}\x1b[K`);
  }

  done(): void {
    if (this.#stream.isTTY && this.#lastDraw) this.#stream.write(`\r\x1b[K`);
  }

  #line(): string {
    const seconds = Math.max((Date.now() - this.#started) / 1000, 0.001);
    const width = 24;
    // No length is announced for an export: the bar cycles to show movement, the numbers carry the facts.
    const position = Math.floor(seconds * 8) % width;
    const bar = Array.from({ length: width }, (_, i) => (i === position ? '#' : '.')).join('');
    return `${this.#label} [${bar}] ${formatBytes(this.#bytes)}  ${formatRate(this.#bytes, seconds)}  ${seconds.toFixed(1)} s`;
  }
}
