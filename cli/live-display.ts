import { formatBytes, formatRate } from './format.ts';
import { describeEvent, isProgress, type ExecutionEvent } from './execution-events.ts';
import type { Output } from './output.ts';

interface Bar {
  readonly startedAt: number;
  bytes: number;
  total?: number;
  updatedAt: number;
}

const BAR_WIDTH = 24;
const REDRAW_MS = 100;

/**
 * Shows an execution as it runs, on stderr: one line per step, and below them one progress bar per
 * transfer with bytes/s. Bars are drawn only on a TTY; with --json nothing is shown at all.
 */
export class LiveDisplay {
  readonly #output: Output;
  readonly #bars = new Map<string, Bar>();
  readonly #now: () => number;
  #drawnLines = 0;
  #lastDraw = 0;

  constructor(output: Output, now: () => number = Date.now) {
    this.#output = output;
    this.#now = now;
  }

  get #live(): boolean {
    return !this.#output.json && this.#output.stderr.isTTY === true;
  }

  event(event: ExecutionEvent): void {
    if (isProgress(event)) {
      this.progress(event.transfer, event.bytes, event.total, Date.parse(event.at));
      return;
    }
    const line = describeEvent(event, this.#output.errColour);
    if (line === undefined || this.#output.json) return;
    this.#erase();
    this.#output.stderr.write(line + '\n');
    this.#draw();
  }

  /** `at` lets `watch` replay recorded progress at the rate it happened. */
  progress(transfer: string, bytes: number, total?: number, at: number = this.#now()): void {
    const bar = this.#bars.get(transfer) ?? { startedAt: at, bytes: 0, updatedAt: at };
    bar.bytes = bytes;
    bar.updatedAt = at;
    if (total !== undefined) bar.total = total;
    this.#bars.set(transfer, bar);
    if (this.#now() - this.#lastDraw >= REDRAW_MS) {
      this.#erase();
      this.#draw();
    }
  }

  /** Removes the bars: the summary that follows carries the final numbers. */
  close(): void {
    this.#erase();
    this.#bars.clear();
  }

  #erase(): void {
    if (!this.#live || this.#drawnLines === 0) return;
    this.#output.stderr.write(`\x1b[${this.#drawnLines}A\r\x1b[J`);
    this.#drawnLines = 0;
  }

  #draw(): void {
    if (!this.#live || this.#bars.size === 0) return;
    const lines = [...this.#bars].map(([transfer, bar]) => barLine(transfer, bar, this.#now()));
    this.#output.stderr.write(lines.map((line) => line + '\x1b[K\n').join(''));
    this.#drawnLines = lines.length;
    this.#lastDraw = this.#now();
  }
}

/** `  export 3f1c…  [######......]  40%  12.0 MiB / 30.0 MiB  35.2 MB/s` */
export function barLine(transfer: string, bar: Bar, now: number): string {
  const seconds = (bar.updatedAt - bar.startedAt) / 1000;
  let gauge: string;
  let amount = formatBytes(bar.bytes);
  if (bar.total) {
    const fraction = Math.min(bar.bytes / bar.total, 1);
    const filled = Math.round(fraction * BAR_WIDTH);
    gauge = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
    amount += ` / ${formatBytes(bar.total)}`;
  } else {
    // An export announces no length: a marker moves to show life, the numbers carry the facts.
    const position = Math.floor(((now - bar.startedAt) / 1000) * 8) % BAR_WIDTH;
    gauge = `[${Array.from({ length: BAR_WIDTH }, (_, i) => (i === position ? '#' : '.')).join('')}]`;
  }
  return `  ${transfer}  ${gauge}  ${amount}  ${formatRate(bar.bytes, seconds)}`;
}
